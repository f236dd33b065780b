"""The rules schema (``mapping:`` in the config, or a rules file). Rules are data: every mapping
here forbids unknown keys. This module checks *shape*; ``compiler`` checks meaning (regexes,
templates, captures, durations, tag keys, conflicts) and reports every problem with its path.
It imports nothing else from ``bridge.mapping``: compiler and settings build on it, never the reverse.

    mapping:
      rules_file: rules.yaml          # optional: rules/accounts live there instead (reloaded on change)
      reload_interval: 5              # seconds between checks of the files for changes
      max_shrink: 0.5                 # a reload that drops more than this fraction of the rules is refused
      accounts:                       # the accounts catalog
        "123456789012": {alias: sandbox, label: Sandbox, roles: {Admin: {max_session_duration: 43200}}}
      rules:
        - name: admins
          description: Platform admins administer the sandbox.
          connectors: [corp]
          match: {all: [{group: aws-admins}, {not: {claim: email, ends_with: "@contractor.example.com",
                                                    ignore_case: true}}]}
          grants:
            - account: sandbox
              role: Admin
              session_name: "{email}"
              tags: {Team: "{claims.team|default(none)}", Project: {value: "{claims.project}", required: true}}
              transitive_tags: [Team]
              duration: {default: 3600, max: 43200}
              mfa_required: true
        - name: no-contractors-in-prod
          match: {claim: email, ends_with: "@contractor.example.com", ignore_case: true}
          deny: {accounts: [prod]}

The issue-2 flat form (``group``/``claim``+``equals``, ``role_arn``, ``tags`` as claim paths …
at the top of a rule) is still accepted and converted (see ``upgrade_legacy_rule``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
    model_validator,
)
from typing_extensions import TypeAliasType

OPERATORS = ("equals", "in", "contains", "starts_with", "ends_with", "regex", "glob", "exists")
TEXT_OPERATORS = OPERATORS[:-1]  # the ones ``ignore_case`` applies to
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat
StrOrList = StrictStr | list[StrictStr]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- conditions


def _cond_kind(v: Any) -> str | None:
    if isinstance(v, list):
        return "cond:list"
    if isinstance(v, BaseModel):
        return {AllCond: "cond:all", AnyCond: "cond:any", NotCond: "cond:not", MfaCond: "cond:mfa",
                GroupCond: "cond:group", ClaimCond: "cond:claim"}.get(type(v))
    if not isinstance(v, dict):
        return None
    for key in ("all", "any", "not", "mfa", "group"):
        if key in v:
            return f"cond:{key}"
    return "cond:claim"


if TYPE_CHECKING:  # mypy cannot follow the recursive alias below; the models are what matter to it
    Condition: TypeAlias = "AllCond | AnyCond | NotCond | MfaCond | GroupCond | ClaimCond | list[Any]"
else:
    # A named recursive type (pydantic resolves the self-reference of the list form through it).
    Condition = TypeAliasType("Condition", Annotated[
        Union[  # noqa: UP007 - Tag/Discriminator need the explicit Union
            Annotated["AllCond", Tag("cond:all")],
            Annotated["AnyCond", Tag("cond:any")],
            Annotated["NotCond", Tag("cond:not")],
            Annotated["MfaCond", Tag("cond:mfa")],
            Annotated["GroupCond", Tag("cond:group")],
            Annotated["ClaimCond", Tag("cond:claim")],
            Annotated[list["Condition"], Tag("cond:list")],
        ],
        Discriminator(_cond_kind, custom_error_type="condition",
                      custom_error_message="a condition is a mapping: {group: NAME}, {claim: PATH, <operator>: VALUE}, "
                                           "{mfa: true}, {all: [...]}, {any: [...]} or {not: {...}}"),
    ])


class ClaimCond(_M):
    """``{claim: PATH, <operator>: operand}`` — exactly one operator; ``ignore_case: true`` compares
    case-insensitively (Unicode case folding)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    claim: StrictStr
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    contains: StrOrList | None = None
    starts_with: StrOrList | None = None
    ends_with: StrOrList | None = None
    regex: StrictStr | None = None
    glob: StrOrList | None = None
    exists: StrictBool | None = None
    ignore_case: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in ("claim", "ignore_case", *OPERATORS)]
            if unknown:
                raise ValueError(f"unknown operator {', '.join(map(repr, unknown))}; use one of "
                                 f"{', '.join(OPERATORS)} (or all/any/not/group/mfa as a condition of its own)")
        return data

    @model_validator(mode="after")
    def _one_operator(self) -> ClaimCond:
        given = [op for op in OPERATORS if getattr(self, "in_" if op == "in" else op) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one operator with 'claim' ({', '.join(OPERATORS)}); "
                             f"got {', '.join(given) or 'none'}")
        if self.ignore_case and given[0] not in TEXT_OPERATORS:
            raise ValueError(f"ignore_case goes with {', '.join(TEXT_OPERATORS[:-1])} or {TEXT_OPERATORS[-1]}, "
                             f"not {given[0]}")
        return self

    @property
    def operator(self) -> str:
        return next(op for op in OPERATORS if getattr(self, "in_" if op == "in" else op) is not None)

    @property
    def operand(self) -> Any:
        return getattr(self, "in_" if self.operator == "in" else self.operator)


class GroupCond(_M):
    """``{group: NAME}``: shorthand for ``{claim: groups, equals: NAME}``."""

    group: StrictStr


class MfaCond(_M):
    """``{mfa: true}``: the sign-in used multi-factor authentication (the connector decides)."""

    mfa: StrictBool


class AllCond(_M):
    all: list[Condition] = Field(min_length=1)


class AnyCond(_M):
    any: list[Condition] = Field(min_length=1)


class NotCond(_M):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    not_: Condition = Field(alias="not")


AllCond.model_rebuild()
AnyCond.model_rebuild()
NotCond.model_rebuild()


# --------------------------------------------------------------------------- grants and denies


class TagSpec(_M):
    """A tag value with options: ``{value: TEMPLATE, required: true}``."""

    value: StrictStr
    required: bool = False


class DurationSpec(_M):
    """``duration: {default: 3600, max: 43200}`` (seconds). Unset max: the role's max_session_duration."""

    default: int | None = None
    max: int | None = None


class RequestSpec(_M):
    """``request:`` on a grant: the role is not given, it can be *requested* (README "Access requests").

    ``approvers`` is a condition over the approver's identity (``{group: sre-leads}``), tested when
    they approve; ``max_duration`` bounds the access window a requester may ask for (seconds);
    ``break_glass: true`` lets the requester activate it alone, with a reason, alerting the approvers."""

    approvers: Condition
    max_duration: int = Field(3600, ge=900, le=43200, description="longest access window (seconds)")
    reason_required: bool = False
    break_glass: bool = False


# A session policy as written: a YAML mapping (whose string values are templates), or the JSON text of one.
PolicySpec = dict[str, Any] | StrictStr


class ChainFields(_M):
    """What a grant and a catalog role share for role chaining and session policies (docs/rules.md)."""

    via: StrictStr | None = Field(None, description="reach the role through this hub (role chaining): "
                                  "`<account id or alias>/<role name>` or the ARN of a role in the catalog")
    external_id: StrictStr | None = Field(None, repr=False, description="the ExternalId the role's trust policy "
                                          "asks for (secret: give external_id_file); sent with sts:AssumeRole")
    policy: PolicySpec | None = Field(None, description="inline session policy (string values are templates)")
    policy_arns: list[StrictStr] = Field(default_factory=list, description="managed session policies (ARNs)")


class GrantSpec(ChainFields):
    """One role a matching rule grants. Every string but ``path``/``audience``/``via`` is a template."""

    role_arn: StrictStr | None = None
    account: StrictStr | None = Field(None, description="account id or alias from the catalog (template)")
    role: StrictStr | None = Field(None, description="role name, optionally path/name (template)")
    where: dict[StrictStr, StrictStr | list[StrictStr]] | None = Field(
        None, description="instead of account: this role in every catalog account matching all of these "
        "(`account.ou`: that OU or below; `account.tags.<key>`: that value; a list: any of them)")
    provider: StrictStr | None = Field(None, description="IAM SAML provider name or ARN (template)")
    label: StrictStr | None = None
    session_name: StrictStr | None = None
    source_identity: StrictStr | None = None
    tags: dict[str, StrictStr | TagSpec] = Field(default_factory=dict)
    transitive_tags: list[StrictStr] = Field(default_factory=list)
    duration: int | DurationSpec | None = None
    mfa_required: bool = False
    path: Literal["jwt", "saml", "passthrough"] | None = None
    audience: str | None = Field(None, min_length=1, max_length=255)
    console: Literal["federation", "saml_post"] | None = Field(
        None, description="console sign-in method for this role (default: aws.console_method)")
    request: RequestSpec | None = Field(None, description="granted on request, with approval (not at once)")

    @field_validator("account", mode="before")
    @classmethod
    def _account_text(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError("quote account ids (YAML reads 012345678901 as a number and drops the 0)")
        return v

    @field_validator("where")
    @classmethod
    def _where_keys(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            if not v:
                raise ValueError("where needs account.ou and/or account.tags.<key>")
            bad = [k for k in v if k != "account.ou" and not re.fullmatch(r"account\.tags\.[^.\s]+", k)]
            if bad:
                raise ValueError(f"unknown key(s) {', '.join(map(repr, bad))} (write account.ou or "
                                 "account.tags.<key>)")
        return v

    @model_validator(mode="after")
    def _one_role(self) -> GrantSpec:
        if self.where is not None:
            if self.account is not None or self.role_arn is not None or self.role is None:
                raise ValueError("where picks the accounts: give role, not account or role_arn")
            return self
        if (self.role_arn is None) == (self.account is None and self.role is None):
            raise ValueError("give either role_arn, or account and role")
        if self.role_arn is None and (self.account is None or self.role is None):
            raise ValueError("account and role go together")
        return self

    @property
    def duration_default(self) -> int | None:
        return self.duration.default if isinstance(self.duration, DurationSpec) else self.duration

    @property
    def duration_max(self) -> int | None:
        return self.duration.max if isinstance(self.duration, DurationSpec) else None


class DenySpec(_M):
    """What a deny rule takes away: every role (``deny: all``), or accounts (ids or aliases) and/or
    roles (globs over the ARN when they start with ``arn:``, else over the role name)."""

    all: bool = False
    accounts: list[StrictStr] = Field(default_factory=list)
    roles: list[StrictStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> DenySpec:
        if not self.all and not self.accounts and not self.roles:
            raise ValueError("deny needs accounts and/or roles (or write deny: all)")
        return self


class Rule(_M):
    """A named rule: when ``match`` holds (for an identity from one of ``connectors``), ``grants`` or ``deny``."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")
    description: str = ""
    connectors: list[str] | None = None
    match: Condition
    grants: list[GrantSpec] | None = Field(None, min_length=1)
    deny: DenySpec | None = None

    @field_validator("deny", mode="before")
    @classmethod
    def _deny_all(cls, v: Any) -> Any:
        if v == "all" or v is True:
            return {"all": True}
        if v is not None and not isinstance(v, dict | DenySpec):
            raise ValueError("write deny: all, or deny: {accounts: [...], roles: [...]}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        if is_legacy_rule(data):
            data, problems = upgrade_legacy_rule(data)
            if problems:
                raise ValueError("; ".join(problems))
        return data

    @model_validator(mode="after")
    def _grants_or_deny(self) -> Rule:
        if (self.grants is None) == (self.deny is None):
            raise ValueError("a rule has either grants or deny")
        return self


# --------------------------------------------------------------------------- accounts catalog


class RoleEntry(ChainFields):
    label: str | None = Field(None, description="shown on the portal (default: the role name)")
    max_session_duration: int = Field(3600, ge=3600, le=43200,
                                      description="the role's MaxSessionDuration in IAM (seconds)")


class AccountEntry(_M):
    alias: str | None = Field(None, pattern=r"^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])?$")
    label: str | None = None
    email: str | None = Field(None, max_length=254, description="shown as emailAddress by the sso ListAccounts")
    partition: Literal["aws", "aws-us-gov", "aws-cn"] | None = None
    ou: StrictStr | None = Field(None, description="its OU path from the root (Root/Workloads/Prod), from "
                                 "`bridge accounts sync`; grants' `where: {account.ou: …}` match on it")
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict, description="its AWS Organizations tags; grants' "
                                             "`where: {account.tags.<key>: …}` match on them")
    roles: dict[str, RoleEntry] = Field(default_factory=dict)

    @field_validator("roles", mode="before")
    @classmethod
    def _empty_entries(cls, v: Any) -> Any:
        # `roles: {Admin: }` in YAML is {Admin: None}: a declared role with defaults.
        return {k: ({} if e is None else e) for k, e in v.items()} if isinstance(v, dict) else v


class MappingSpec(_M):
    """``mapping:`` as written — rules in file order, the accounts catalog, where rules live and reload.

    The schema only: ``settings.MappingSettings`` adds the compiled rule set (and what the loader
    learned: file stamps, flat-form rules)."""

    rules: list[Rule] = Field(default_factory=list)
    accounts: dict[str, AccountEntry] = Field(default_factory=dict)
    rules_file: str | None = None
    accounts_file: str | None = Field(None, description="more catalog accounts (`accounts:`), as written by "
                                      "`bridge accounts sync --write`; read and reloaded with the rules")
    reload_interval: float = Field(5.0, ge=0, le=3600)
    # Reload guard (bridge/core/rulebook.py): a reload may drop at most this fraction of the rules in force.
    max_shrink: float = Field(0.5, ge=0, le=1)
    # "This file holds exactly N rules": checked on every load (a truncated file fails it), and a reload
    # that matches it may shrink as far as it says, down to zero (the operator's way to force a shrink).
    expected_rules: int | None = Field(None, ge=0)
    # Role chaining: at most this many sts:AssumeRole calls after the first assumption (hub → … → role).
    max_hops: int = Field(2, ge=1, le=5,
                          description="longest role chain: the sts:AssumeRole calls of one issuance (hub → … → role)")

    @field_validator("accounts", mode="before")
    @classmethod
    def _account_keys(cls, v: Any) -> Any:
        if isinstance(v, dict):
            numbers = [str(k) for k in v if not isinstance(k, str)]
            if numbers:
                raise ValueError(f"quote account ids ({', '.join(numbers)}): YAML reads them as numbers "
                                 "and drops leading zeros")
        return v


# --------------------------------------------------------------------------- the old flat form

LEGACY_KEYS = {"group", "claim", "equals", "role_arn", "label", "session_name_from", "source_identity_from",
               "tags", "transitive_tags", "duration", "max_duration", "mfa_required", "audience", "path",
               "saml_provider"}


def is_legacy_rule(raw: Any) -> bool:
    return isinstance(raw, dict) and "role_arn" in raw and "grants" not in raw and "match" not in raw


def upgrade_legacy_rule(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The issue-2 flat rule → the full form, and problems only the flat form can have."""
    rule: dict[str, Any] = {k: raw[k] for k in ("name", "description", "connectors") if k in raw}
    problems = [f"{k}: Extra inputs are not permitted" for k in raw if k not in LEGACY_KEYS and k not in rule]
    problems += _legacy_match_problems(raw)
    group, claim = raw.get("group"), raw.get("claim")
    if problems:
        rule["match"] = {"mfa": True}  # a stand-in, so the rest of the rule is still checked
    else:
        rule["match"] = {"group": group} if group is not None else {"claim": claim, "equals": raw.get("equals")}
    rule["grants"] = [_legacy_grant(raw)]
    return rule, problems


def _legacy_match_problems(raw: dict[str, Any]) -> list[str]:
    """The flat form matches on exactly one of ``group`` or ``claim`` + ``equals``."""
    problems: list[str] = []
    group, claim = raw.get("group"), raw.get("claim")
    if (group is None) == (claim is None):
        problems.append("set exactly one of 'group' or 'claim' (with 'equals')")
    elif claim is not None and raw.get("equals") is None:
        problems.append("'claim' needs 'equals'")
    if claim is None and raw.get("equals") is not None:
        problems.append("'equals' goes with 'claim', not with 'group'")
    return problems


def _legacy_grant(raw: dict[str, Any]) -> dict[str, Any]:
    """The one grant of a flat rule: claim paths become templates, durations a ``duration`` spec."""
    grant: dict[str, Any] = {"role_arn": raw["role_arn"]}
    for old, new in (("label", "label"), ("mfa_required", "mfa_required"), ("audience", "audience"),
                     ("path", "path"), ("saml_provider", "provider"), ("transitive_tags", "transitive_tags")):
        if raw.get(old) is not None:
            grant[new] = raw[old]
    grant["session_name"] = f"{{{raw.get('session_name_from', 'email')}}}"
    if raw.get("source_identity_from"):
        grant["source_identity"] = f"{{{raw['source_identity_from']}}}"
    tags = raw.get("tags") or {}
    if isinstance(tags, dict):
        grant["tags"] = {k: f"{{{v}}}" if isinstance(v, str) else v for k, v in tags.items()}
    else:
        grant["tags"] = tags
    grant["duration"] = {"default": raw.get("duration", 3600), "max": raw.get("max_duration", 3600)}
    return grant
