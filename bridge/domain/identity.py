"""Value types that flow one way: Upstream → Identity → Mapping → Grant → AWS → Credentials.

All are frozen and JSON-round-trippable (``to_json`` / ``from_json``) because sessions are
stored as JSON in Redis — never pickle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any

from bridge.domain.stepup import StepUpRequest


@dataclass(frozen=True)
class Identity:
    """The one shape every upstream connector returns after a verified login.

    ``claims`` holds the upstream claims we keep for rules (never raw tokens).
    ``mfa`` is the connector's judgement; ``amr``/``acr`` are kept for later rules.
    ``passthrough`` is the upstream artifact itself (base64 SAMLResponse or ID token) for
    ``aws_passthrough`` connectors: never serialized with the identity, kept apart with a TTL.
    ``upstream`` is the connector's "upstream grant" (OIDC: refresh/access token, nonce; see
    ``OidcConnector.reverify``): secret, JSON-serialisable, never serialized with the identity nor
    shown in its repr; whoever keeps it stores it apart.
    ``warnings`` are the connector's notes on what the IdP sent that looks misconfigured (an attribute
    under another name than configured, a transient NameID, a claim missing): attribute and claim
    names only, never values. Logged at sign-in and shown on the Why page.
    """

    connector_id: str
    subject: str
    issuer: str
    email: str | None = None
    name: str | None = None
    groups: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)
    authn_time: int | None = None
    mfa: bool = False
    amr: tuple[str, ...] = ()
    acr: str | None = None
    passthrough: str | None = field(default=None, repr=False, compare=False)
    upstream: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        # Every connector, stored session and sample comes through here: rules, tags and session
        # names see one spelling of the e-mail, whatever case the IdP used for the domain.
        object.__setattr__(self, "email", normalize_email(self.email))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("passthrough")
        d.pop("upstream")
        d["groups"] = list(self.groups)
        d["amr"] = list(self.amr)
        d["claims"] = dict(self.claims)
        if self.warnings:
            d["warnings"] = list(self.warnings)
        else:  # the JSON of an identity without warnings is unchanged (stored sessions, the rules memo)
            del d["warnings"]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Identity:
        return cls(
            connector_id=str(d["connector_id"]), subject=str(d["subject"]), issuer=str(d.get("issuer", "")),
            email=d.get("email"), name=d.get("name"), groups=tuple(d.get("groups") or ()),
            claims=dict(d.get("claims") or {}), authn_time=d.get("authn_time"), mfa=bool(d.get("mfa")),
            amr=tuple(d.get("amr") or ()), acr=d.get("acr"),
            warnings=tuple(str(w) for w in d.get("warnings") or ()),
        )


def normalize_email(email: str | None) -> str | None:
    """Trimmed, with the domain (after the last ``@``) lower-cased; the local part is kept as-is
    (RFC 5321 leaves its case to the mailbox's owner). Empty becomes None."""
    if email is None:
        return None
    email = email.strip()
    local, at, domain = email.rpartition("@")
    return (local + at + domain.lower() if at else email) or None


SAMPLE_SHAPE = '{"connector", "subject", "email", "name", "groups": [...], "claims": {...}, "mfa": true|false}'


def identity_from_sample(d: Any) -> Identity:
    """An identity from a sample document (``bridge explain --identity``, the admin explain page).

    Raises ValueError saying what is wrong; ``connector`` (or ``connector_id``) defaults to "sample".
    """
    if not isinstance(d, Mapping) or not isinstance(d.get("subject"), str) or not d["subject"]:
        raise ValueError(f"expected {SAMPLE_SHAPE} with a non-empty subject")
    groups = _sample_strings(d, "groups")
    claims = d.get("claims") or {}
    if not isinstance(claims, Mapping):
        raise ValueError("claims must be an object")
    amr = _sample_strings(d, "amr")
    _check_sample_scalars(d)
    return Identity(connector_id=str(d.get("connector") or d.get("connector_id") or "sample"),
                    subject=d["subject"], issuer=str(d.get("issuer") or "sample"), email=d.get("email"),
                    name=d.get("name"), groups=tuple(groups), claims=dict(claims), mfa=bool(d.get("mfa", False)),
                    amr=tuple(amr), acr=d.get("acr"))


def _sample_strings(d: Mapping[str, Any], key: str) -> list[str] | tuple[str, ...]:
    """A sample's list of strings at ``key`` (empty when absent); ValueError when it is something else."""
    value = d.get(key) or []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return value


def _check_sample_scalars(d: Mapping[str, Any]) -> None:
    """A sample's optional string fields are strings, and ``mfa`` is a boolean."""
    for key in ("email", "name", "acr", "issuer", "connector", "connector_id"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise ValueError(f"{key} must be a string")
    if not isinstance(d.get("mfa", False), bool):
        raise ValueError("mfa must be true or false")


@lru_cache(maxsize=65_536)  # each decision's grants are new objects of the same few roles: hash each role once
def grant_id_for(role_arn: str) -> str:
    """Stable, URL-safe grant id: the same role always gets the same id in every session."""
    return hashlib.sha256(role_arn.encode()).hexdigest()[:16]


def _with_policies(d: dict[str, Any], policy: str | None, policy_arns: tuple[str, ...]) -> dict[str, Any]:
    """``d`` with a session policy and policy ARNs, each only when set (the JSON is unchanged without)."""
    if policy is not None:
        d["policy"] = policy
    if policy_arns:
        d["policy_arns"] = list(policy_arns)
    return d


@dataclass(frozen=True)
class Hop:
    """One role of a chain (role chaining, docs/aws-rules.md §7): a hub, or the target of a chained grant.

    ``external_id`` is a secret shared with the account that trusts the hub (a vendor's): never in a
    repr, a JSON document, a log line, an audit record or a page (``to_json`` says only whether one is
    set). ``label`` is how pages name it (``<account alias or id>/<role name>``)."""

    role_arn: str
    label: str = ""
    external_id: str | None = field(default=None, repr=False)
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role_arn": self.role_arn, "label": self.label,
                             "external_id": self.external_id is not None}
        return _with_policies(d, self.policy, self.policy_arns)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Hop:
        # The ExternalId never went into the JSON, so it does not come back: grants are decided anew at each use.
        return cls(role_arn=str(d["role_arn"]), label=str(d.get("label") or ""), policy=d.get("policy"),
                   policy_arns=tuple(d.get("policy_arns") or ()))


@dataclass(frozen=True)
class Grant:
    """What mapping decided a user may assume. ``via`` names the rule that produced it.

    A chained grant (``hubs`` not empty) is reached through hub roles: the first hub by
    AssumeRoleWithWebIdentity/SAML, each next role (the last is ``role_arn``) by sts:AssumeRole with the
    previous credentials. ``external_id``, ``policy`` and ``policy_arns`` go with the call into
    ``role_arn`` itself (the ExternalId only with sts:AssumeRole, so only when chained)."""

    role_arn: str
    account_id: str
    label: str
    session_name: str
    via: str
    audience: str | None = None
    provider_arn: str | None = None
    source_identity: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    transitive_keys: tuple[str, ...] = ()
    default_duration: int = 3600
    max_duration: int = 3600
    mfa_required: bool = False
    path: str = "jwt"
    account_alias: str = ""  # from the accounts catalog, for the portal
    account_label: str = ""
    console: str = ""  # console sign-in method ("federation" | "saml_post"); "" = aws.console_method
    # Set by the decision point when an approved access request activates this grant (its id, which is
    # also the correlation id of every audit record under it); never stored: decided at each use.
    request_id: str = ""
    hubs: tuple[Hop, ...] = ()  # roles assumed before role_arn, first to last (role chaining); () = direct
    external_id: str | None = field(default=None, repr=False)  # secret: see Hop
    policy: str | None = None  # inline session policy (compact JSON), rendered for this identity
    policy_arns: tuple[str, ...] = ()  # managed session policies

    @cached_property  # a portal with 5,000 grants asks often (frozen: cached_property writes __dict__)
    def id(self) -> str:
        return grant_id_for(self.role_arn)

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def chained(self) -> bool:
        return bool(self.hubs)

    @property
    def sends_external_id(self) -> bool:
        """Whether an ExternalId goes with a call of this grant's chain (pages say so; never its value)."""
        return any(h.external_id is not None for h in self.hops) if self.hubs else False

    @property
    def hops(self) -> tuple[Hop, ...]:
        """Every role the issuance assumes, in order: the hubs, then this grant's role."""
        return (*self.hubs, Hop(self.role_arn, f"{self.account_alias or self.account_id}/{self.role_name}",
                                self.external_id, self.policy, self.policy_arns))

    def allowed_durations(self) -> list[int]:
        """Durations the portal offers: common steps up to the grant's maximum (AWS min is 900 s)."""
        steps = [900, 1800, 3600, 7200, 14400, 28800, 43200]
        out = [s for s in steps if s <= self.max_duration]
        if self.max_duration not in out:
            out.append(self.max_duration)
        return sorted(set(out))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = dict(self.tags)
        d["transitive_keys"] = list(self.transitive_keys)
        if not self.request_id:
            del d["request_id"]  # the JSON of grants outside requests is unchanged
        # Chains and session policies likewise only when set; the ExternalId never (whether one is set).
        del d["hubs"], d["external_id"], d["policy"], d["policy_arns"]
        if self.hubs:
            d["hubs"] = [h.to_json() for h in self.hubs]
            d["external_id"] = self.external_id is not None
        return _with_policies(d, self.policy, self.policy_arns)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Grant:
        # Unknown keys are ignored: during a rolling upgrade a newer worker may have stored fields this
        # one does not know yet.
        # Built without __init__ (a frozen dataclass's __init__ is slow, and sessions hold thousands):
        # known fields over the defaults, as __init__ would.
        obj = cls.__new__(cls)
        vals = {**_GRANT_DEFAULTS, **{k: v for k, v in d.items() if k in _GRANT_FIELDS}}
        vals["tags"] = dict(vals.get("tags") or {})
        vals["transitive_keys"] = tuple(vals.get("transitive_keys") or ())
        vals["hubs"] = tuple(Hop.from_json(h) for h in vals.get("hubs") or ())
        vals["policy_arns"] = tuple(vals.get("policy_arns") or ())
        vals["external_id"] = None  # never stored (to_json writes only whether it was set)
        missing = _GRANT_REQUIRED - vals.keys()
        if missing:
            raise TypeError(f"Grant.from_json: missing {sorted(missing)}")
        obj.__dict__.update(vals)
        return obj


_GRANT_FIELDS = frozenset(f.name for f in fields(Grant))
_GRANT_REQUIRED = frozenset(f.name for f in fields(Grant) if f.default is MISSING and f.default_factory is MISSING)

_GRANT_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Grant) if f.default is not MISSING}


@dataclass(frozen=True)
class Credentials:
    """Temporary AWS credentials from STS. Secret: never log, never put in a URL."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime
    assumed_role_arn: str
    role_arn: str
    session_name: str
    region: str
    sts_request_id: str = ""  # the STS answer's RequestId (CloudTrail's requestID), for the audit trail

    @property
    def account_id(self) -> str:
        return self.assumed_role_arn.split(":")[4] if self.assumed_role_arn.count(":") >= 5 else ""

    def expiration_iso(self) -> str:
        """RFC 3339 UTC with a ``Z`` and no fractional seconds (the strictest consumer's format)."""
        return self._expiration_z

    @cached_property  # cached credentials are one object per entry (credcache): formatted once
    def _expiration_z(self) -> str:
        return self.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def __repr__(self) -> str:  # keep secrets out of tracebacks and debug logs
        return f"Credentials(access_key_id={self.access_key_id!r}, role_arn={self.role_arn!r}, secret=***)"


@dataclass(frozen=True)
class PendingLogin:
    """A sign-in in progress. Owned by the server (store, TTL, single use), not by a cookie; the
    connector reads it to start and finish the sign-in (here, so neither side imports the other)."""

    state: str
    connector_id: str
    nonce: str
    code_verifier: str
    return_to: str
    created_at: int
    request_id: str | None = None
    correlation_id: str | None = None  # ties this sign-in to every audit record it leads to
    # SHA-256 of the pre-sign-in cookie of the browser that started it (login CSRF, RFC 6749 §10.12):
    # only that browser may complete it. The hash, so the store never holds a usable cookie value.
    browser_hash: str | None = None
    # A step-up (bridge/domain/stepup.py): what the callback must verify the IdP's answer against.
    step_up: StepUpRequest | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("step_up")
        if self.step_up is not None:  # the JSON of a plain sign-in is unchanged
            d["step_up"] = self.step_up.to_json()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PendingLogin:
        step_up = StepUpRequest.from_json(d["step_up"]) if d.get("step_up") else None
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "step_up"}, step_up=step_up)
