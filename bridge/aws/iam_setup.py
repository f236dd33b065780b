"""IAM setup from the rules: the OIDC and SAML providers and, for each role, the trust policy that admits
exactly what the bridge sends (docs/aws-rules.md §1.8 and §2.8), plus the revocation deny statement
(docs/aws-rules.md §6). Pure: facts in, policy documents and CloudFormation / Terraform / JSON text out.

``RoleSent`` says what the bridge sends for one role (``bridge.mapping.roles`` works it out from the
rules and the catalog); ``Environment`` says who the bridge is (issuer URL, partition, SAML Recipient).
``trust_policy`` turns both into the policy; ``render_json``/``render_cloudformation``/``render_terraform``
(``bridge.aws.iam_render``) into a document for one or more accounts. ``bridge doctor``
(``bridge.aws.doctor``) checks any trust policy against the same facts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from bridge.aws.limits import MFA_TAG

STS_WEB = "sts:AssumeRoleWithWebIdentity"
STS_SAML = "sts:AssumeRoleWithSAML"
TAG_SESSION = "sts:TagSession"
SET_SOURCE_IDENTITY = "sts:SetSourceIdentity"
POLICY_VERSION = "2012-10-17"
IAM_MIN_SESSION, IAM_MAX_SESSION = 3600, 43200  # a role's MaxSessionDuration (docs/aws-rules.md §1.6)
# ':' never occurs in a source identity or session name, so these match no session: a standing revocation
# statement with nobody revoked yet (IAM refuses an empty list of condition values).
NOBODY = "nobody:"
NOBODY_USERID = "*:nobody:"
REVOKED_BEFORE_DEFAULT = "2000-01-01T00:00:00Z"
REVOCATION_POLICY_NAME = "bridge-revocation"


@dataclass(frozen=True)
class Environment:
    """Who the bridge is to AWS: its issuer URL (the IAM OIDC provider) and the SAML Recipient (``SAML:aud``)."""

    issuer_url: str
    partition: str = "aws"
    saml_recipient: str = "https://signin.aws.amazon.com/saml"
    saml_entity_id: str = ""

    @property
    def oidc_host(self) -> str:
        """The provider's name in IAM: the issuer URL without ``https://`` (host and path)."""
        u = urlsplit(self.issuer_url)
        return (u.netloc + u.path).rstrip("/")

    def oidc_provider_arn(self, account: str, partition: str | None = None) -> str:
        return f"arn:{partition or self.partition}:iam::{account}:oidc-provider/{self.oidc_host}"

    @property
    def aud_key(self) -> str:
        return f"{self.oidc_host}:aud"

    @property
    def sub_key(self) -> str:
        return f"{self.oidc_host}:sub"


@dataclass(frozen=True)
class RoleSent:
    """What the bridge sends when it assumes one role, over every rule that can grant it.

    ``always_tags``: tags every granting rule always sends (constant key; constant or required value):
    key → the constant value, or None when the value comes from the user. ``max_duration``: the longest
    session a rule allows (the role's ``MaxSessionDuration`` must be at least that)."""

    arn: str
    partition: str
    account: str
    path: str
    name: str
    rules: tuple[str, ...]
    label: str = ""
    paths: tuple[str, ...] = ("jwt",)
    audiences: tuple[str, ...] = ()
    saml_providers: tuple[str, ...] = ()
    tag_keys: tuple[str, ...] = ()
    always_tags: Mapping[str, str | None] = field(default_factory=dict)
    all_keys_constant: bool = True
    transitive_keys: tuple[str, ...] = ()
    source_identity: bool = False
    max_duration: int = IAM_MIN_SESSION
    declared_max: int | None = None
    mfa_required: bool = False  # every rule granting it says mfa_required: the trust policy may require bridge:mfa

    @property
    def sends_tags(self) -> bool:
        return bool(self.tag_keys)

    @property
    def max_session_duration(self) -> int:
        """The ``MaxSessionDuration`` to give the role: the catalog's, else the longest a rule allows."""
        return max(IAM_MIN_SESSION, min(IAM_MAX_SESSION, self.declared_max or self.max_duration))

    def actions(self, path: str) -> list[str]:
        """The STS actions one assumption on ``path`` needs the trust policy to allow."""
        out = [STS_SAML if path == "saml" else STS_WEB]
        if self.sends_tags:
            out.append(TAG_SESSION)
        if self.source_identity:
            out.append(SET_SOURCE_IDENTITY)
        return out

    def describe(self) -> str:
        rules = ", ".join(self.rules)
        label = f" (catalog: {self.label})" if self.label else ""
        return f"granted by rule(s) {rules}{label}"


def with_bridge_tag(role: RoleSent) -> RoleSent:
    """``role`` as the issuer sends it: with the reserved transitive tag ``bridge:mfa`` (docs/step-up-mfa.md) —
    ``true`` always for a role every granting rule gives only with MFA, else the user's."""
    if any(k.lower() == MFA_TAG for k in role.tag_keys):
        return role
    return replace(role, tag_keys=(*role.tag_keys, MFA_TAG), transitive_keys=(*role.transitive_keys, MFA_TAG),
                   always_tags={**role.always_tags, MFA_TAG: "true" if role.mfa_required else None})


# --------------------------------------------------------------------------- policies

Ref = Callable[[str, str], Any]  # (kind "oidc"|"saml", provider ARN) -> what to put in Principal.Federated


def literal(kind: str, arn: str) -> Any:
    return arn


def _one(values: Sequence[Any]) -> Any:
    return values[0] if len(values) == 1 else list(values)


def _put(cond: dict[str, dict[str, Any]], op: str, key: str, value: Any) -> None:
    cond.setdefault(op, {})[key] = value


def _hardening(role: RoleSent, cond: dict[str, dict[str, Any]]) -> None:
    """Conditions on what the bridge always sends: tags, tag keys, transitive keys."""
    for key, value in role.always_tags.items():
        if value is None:
            _put(cond, "Null", f"aws:RequestTag/{key}", "false")
        else:
            _put(cond, "StringEquals", f"aws:RequestTag/{key}", value)
    if role.sends_tags and role.all_keys_constant:
        _put(cond, "ForAllValues:StringEquals", "aws:TagKeys", list(role.tag_keys))
    if role.sends_tags:
        _put(cond, "ForAllValues:StringEquals", "sts:TransitiveTagKeys", list(role.transitive_keys) or [NOBODY])


def trust_statement(role: RoleSent, env: Environment, path: str, *, harden: bool = False,
                    ref: Ref = literal) -> dict[str, Any]:
    """The Allow statement for one path (``jwt`` or ``saml``) of ``role``."""
    cond: dict[str, dict[str, Any]] = {}
    if path == "saml":
        principal = _one([ref("saml", p) for p in role.saml_providers])
        _put(cond, "StringEquals", "SAML:aud", env.saml_recipient)
        if harden:
            _put(cond, "StringEquals", "SAML:sub_type", "persistent")
    else:
        principal = ref("oidc", env.oidc_provider_arn(role.account, role.partition))
        _put(cond, "StringEquals", env.aud_key, _one(role.audiences))
        if harden:
            _put(cond, "StringLike", env.sub_key, "u-*")
    if harden:
        _hardening(role, cond)
    return {"Sid": "BridgeSaml" if path == "saml" else "BridgeWebIdentity", "Effect": "Allow",
            "Principal": {"Federated": principal}, "Action": role.actions(path), "Condition": cond}


def trust_policy(role: RoleSent, env: Environment, *, harden: bool = False, ref: Ref = literal) -> dict[str, Any]:
    """The role's trust policy: one statement per path the rules use for it."""
    return {"Version": POLICY_VERSION,
            "Statement": [trust_statement(role, env, p, harden=harden, ref=ref) for p in role.paths]}


def revocation_statements(source_identities: Any, user_ids: Any, before: Any) -> list[dict[str, Any]]:
    """Deny everything to sessions of revoked users issued before ``before`` (docs/aws-rules.md §6):
    by ``aws:SourceIdentity`` (every role the bridge sets it on), and by ``aws:userid`` (``*:<session
    name>``) for roles whose sessions carry none."""
    out = []
    if source_identities:
        out.append({"Sid": "BridgeRevokedSourceIdentities", "Effect": "Deny", "Action": "*", "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceIdentity": source_identities},
                                  "DateLessThan": {"aws:TokenIssueTime": before}}})
    if user_ids:
        out.append({"Sid": "BridgeRevokedSessionNames", "Effect": "Deny", "Action": "*", "Resource": "*",
                    "Condition": {"StringLike": {"aws:userid": user_ids},
                                  "DateLessThan": {"aws:TokenIssueTime": before}}})
    return out


def revocation_policy(source_identities: Sequence[str], session_names: Sequence[str], before: str) -> dict[str, Any]:
    """The deny policy for one revocation (an SCP or an inline role policy: the same document)."""
    return {"Version": POLICY_VERSION,
            "Statement": revocation_statements(sorted(set(source_identities)),
                                               sorted({f"*:{n}" for n in session_names}), before)}


# --------------------------------------------------------------------------- the setup document


@dataclass(frozen=True)
class Setup:
    """Everything ``bridge aws-setup`` prints, for the roles of one or more accounts."""

    env: Environment
    roles: tuple[RoleSent, ...]
    notes: tuple[str, ...] = ()
    harden: bool = False
    revocation: bool = False

    @property
    def accounts(self) -> list[str]:
        return sorted({r.account for r in self.roles})

    @property
    def audiences(self) -> list[str]:
        return sorted({a for r in self.roles if "jwt" in r.paths for a in r.audiences})

    def saml_providers(self) -> list[str]:
        return sorted({p for r in self.roles if "saml" in r.paths for p in r.saml_providers})


# --------------------------------------------------------------------------- one revocation


@dataclass(frozen=True)
class Revocation:
    """The deny policy for one user's issued sessions and the AWS CLI commands that put it in place."""

    policy: dict[str, Any]
    file: str
    commands: tuple[str, ...]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+=,.@-]+", "-", text).strip("-")[:64] or "user"


def revocation_for(user: str, source_identities: Sequence[str], session_names: Sequence[str], before: str,
                   kind: str, roles: Sequence[str]) -> Revocation:
    """``kind`` ``scp`` (an Organizations policy: every account below the target) or ``inline`` (a role
    policy on each of ``roles``): the same deny document (docs/aws-rules.md §6)."""
    policy = revocation_policy(source_identities, session_names, before)
    stamp = re.sub(r"[^0-9TZ]", "", before)
    name = f"bridge-revoke-{_slug(user)}-{stamp}"[:128]
    file = f"{name}.json"
    commands: tuple[str, ...]
    if kind == "scp":
        commands = (
            f"aws organizations create-policy --type SERVICE_CONTROL_POLICY --name {name} "
            f"--description 'bridge sessions revoke {_slug(user)}' --content file://{file}",
            "aws organizations attach-policy --policy-id <PolicySummary.Id printed above> "
            "--target-id <root, OU or account id>")
    else:
        commands = tuple(f"aws iam put-role-policy --role-name {arn.rsplit('/', 1)[-1]} --policy-name {name} "
                         f"--policy-document file://{file}   # {arn}" for arn in roles)
    return Revocation(policy, file, commands)
