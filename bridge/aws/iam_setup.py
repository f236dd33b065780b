"""IAM setup from the rules: the OIDC and SAML providers and, for each role, the trust policy that admits
exactly what the bridge sends (docs/aws-rules.md §1.8 and §2.8), plus the revocation deny statement
(docs/aws-rules.md §6). Pure: facts in, policy documents and CloudFormation / Terraform / JSON text out.

``RoleSent`` says what the bridge sends for one role (``bridge.mapping.roles`` works it out from the
rules and the catalog); ``Environment`` says who the bridge is (issuer URL, partition, SAML Recipient).
``trust_policy`` turns both into the policy; ``render_json``/``render_cloudformation``/``render_terraform``
into a document for one or more accounts. ``bridge doctor`` (``bridge.aws.doctor``) checks any trust
policy against the same facts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

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


def _provider_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _own_saml(setup: Setup, account: str) -> list[str]:
    """SAML providers in ``account`` (the setup creates those; others are referenced by ARN)."""
    return [p for p in setup.saml_providers() if p.split(":")[4] == account]


def render_json(setup: Setup) -> str:
    doc: dict[str, Any] = {"issuer": setup.env.issuer_url, "accounts": {}}
    for account in setup.accounts:
        roles = [r for r in setup.roles if r.account == account]
        entry: dict[str, Any] = {}
        if any("jwt" in r.paths for r in roles):
            entry["oidc_provider"] = {"arn": setup.env.oidc_provider_arn(account, roles[0].partition),
                                      "url": setup.env.issuer_url, "client_id_list": setup.audiences}
        if own := _own_saml(setup, account):
            entry["saml_providers"] = [{"arn": p, "name": _provider_name(p),
                                        "metadata": "bridge metadata --config <config>"} for p in own]
        entry["roles"] = []
        for r in roles:
            role: dict[str, Any] = {"arn": r.arn, "name": r.name, "path": r.path, "rules": list(r.rules),
                                    "label": r.label, "max_session_duration": r.max_session_duration,
                                    "trust_policy": trust_policy(r, setup.env, harden=setup.harden)}
            if setup.revocation:
                role["inline_policies"] = {REVOCATION_POLICY_NAME: {
                    "Version": POLICY_VERSION,
                    "Statement": revocation_statements([NOBODY], [NOBODY_USERID], REVOKED_BEFORE_DEFAULT)}}
            entry["roles"].append(role)
        doc["accounts"][account] = entry
    if setup.notes:
        doc["notes"] = list(setup.notes)
    return json.dumps(doc, indent=2) + "\n"


# --------------------------------------------------------------------------- CloudFormation


def _logical(prefix: str, name: str, taken: set[str]) -> str:
    base = prefix + "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)
    out, n = base[:240], 2
    while out in taken:
        out, n = f"{base[:236]}{n}", n + 1
    taken.add(out)
    return out


def _description(text: str) -> str:
    """IAM role descriptions: at most 1,000 characters of printable Latin-1."""
    return re.sub(r"[^\t\n\r\x20-\x7e\xa1-\xff]", "?", text)[:1000]


def _one_account(setup: Setup, what: str) -> str:
    if len(setup.accounts) != 1:
        found = ", ".join(setup.accounts) or "none"
        raise ValueError(f"{what} sets up one account at a time; the rules name roles in: {found} (pass --account)")
    return setup.accounts[0]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _yaml(doc: Any, indent: int) -> list[str]:
    text = yaml.dump(doc, Dumper=_NoAliases, sort_keys=False, default_flow_style=False, width=120,
                     allow_unicode=True)
    return [" " * indent + line for line in text.splitlines()]


def render_cloudformation(setup: Setup) -> str:
    """A CloudFormation template (YAML) for the one account of ``setup``."""
    account = _one_account(setup, "CloudFormation")
    taken: set[str] = set()
    params: dict[str, Any] = {}
    resources: list[tuple[list[str], str, dict[str, Any]]] = []
    refs: dict[str, str] = {}
    if setup.audiences:
        oidc = _logical("Bridge", "OidcProvider", taken)
        refs[setup.env.oidc_provider_arn(account, setup.roles[0].partition)] = oidc
        resources.append(([f"The bridge as an OIDC provider: tokens with iss = {setup.env.issuer_url}"], oidc,
                          {"Type": "AWS::IAM::OIDCProvider",
                           "Properties": {"Url": setup.env.issuer_url, "ClientIdList": setup.audiences}}))
    for arn in _own_saml(setup, account):
        logical = _logical("SamlProvider", _provider_name(arn), taken)
        refs[arn] = logical
        param = logical + "Metadata"
        params[param] = {"Type": "String", "Description": "The bridge's SAML IdP metadata: bridge metadata --config C"}
        resources.append(([f"The bridge as SAML IdP {_provider_name(arn)}"], logical,
                          {"Type": "AWS::IAM::SAMLProvider",
                           "Properties": {"Name": _provider_name(arn), "SamlMetadataDocument": {"Ref": param}}}))
    if setup.revocation:
        params["RevokedSourceIdentities"] = {
            "Type": "CommaDelimitedList", "Default": NOBODY,
            "Description": "aws:SourceIdentity of revoked users (bridge sessions revoke --aws-policy inline)"}
        params["RevokedSessionNames"] = {
            "Type": "CommaDelimitedList", "Default": NOBODY_USERID,
            "Description": "aws:userid patterns (*:<session name>) of revoked users, for sessions without one"}
        params["RevokedBefore"] = {"Type": "String", "Default": REVOKED_BEFORE_DEFAULT,
                                   "Description": "sessions of those users issued before this time are denied"}

    def ref(kind: str, arn: str) -> Any:
        return {"Ref": refs[arn]} if arn in refs else arn

    for r in (r for r in setup.roles if r.account == account):
        props: dict[str, Any] = {"RoleName": r.name, "Path": r.path, "Description": _description(r.describe()),
                                 "MaxSessionDuration": r.max_session_duration,
                                 "AssumeRolePolicyDocument": trust_policy(r, setup.env, harden=setup.harden, ref=ref)}
        if setup.revocation:
            props["Policies"] = [{"PolicyName": REVOCATION_POLICY_NAME, "PolicyDocument": {
                "Version": POLICY_VERSION,
                "Statement": revocation_statements({"Ref": "RevokedSourceIdentities"},
                                                   {"Ref": "RevokedSessionNames"}, {"Ref": "RevokedBefore"})}}]
        comment = [f"{r.arn}: {r.describe()}",
                   "sends: " + "; ".join(f"{', '.join(r.actions(p))} ({p})" for p in r.paths)]
        resources.append((comment, _logical("Role", r.name, taken), {"Type": "AWS::IAM::Role", "Properties": props}))

    out = ["# Generated by `bridge aws-setup --format cloudformation` from the bridge's rules: do not edit by hand,",
           "# regenerate. Deploy: aws cloudformation deploy --template-file <this file> \\",
           "#   --stack-name federation-bridge --capabilities CAPABILITY_NAMED_IAM"
           + (" --parameter-overrides ..." if params else "")]
    out += [f"# note: {n}" for n in setup.notes]
    out += ["AWSTemplateFormatVersion: '2010-09-09'",
            f"Description: IAM setup for the Federation Bridge {setup.env.issuer_url} (account {account})"]
    if params:
        out += ["Parameters:", *_yaml(params, 2)]
    out.append("Resources:")
    for comment, logical, body in resources:
        out += [f"  # {c}" for c in comment]
        out += _yaml({logical: body}, 2)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- Terraform


class Expr(str):
    """A Terraform expression written as is (a reference), not as a string."""


_IDENT = re.compile(r"\A[A-Za-z_][A-Za-z0-9_-]*\Z")


def _hcl_str(s: str) -> str:
    s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("${", "$${").replace("%{", "%%{")
    return f'"{s}"'


def _hcl_key(k: str) -> str:
    return k if _IDENT.match(k) else _hcl_str(k)


def _hcl_scalar(v: Any) -> str | None:
    if isinstance(v, Expr):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _hcl_str(v)
    if isinstance(v, list) and all(_hcl_scalar(x) is not None and not isinstance(x, list | dict) for x in v):
        return "[" + ", ".join(str(_hcl_scalar(x)) for x in v) + "]"
    return None


def _hcl_value(v: Any, indent: int) -> list[str]:
    """``v`` as HCL lines: the first continues a ``key = `` line, the others are indented."""
    if isinstance(v, Expr):
        return str(v).split("\n")
    one = _hcl_scalar(v)
    if one is not None:
        return [one]
    pad = " " * indent
    if isinstance(v, list):
        lines = ["["]
        for item in v:
            body = _hcl_value(item, indent + 2)
            lines += [pad + "  " + body[0], *body[1:-1], body[-1] + ","] if len(body) > 1 else [
                pad + "  " + body[0] + ","]
        return [*lines, pad + "]"]
    return ["{", *_hcl_items(v, indent + 2), pad + "}"]


def _hcl_items(d: Mapping[str, Any], indent: int) -> list[str]:
    """``key = value`` lines with the ``=`` of adjacent one-line items aligned, as ``terraform fmt`` does."""
    pad = " " * indent
    rendered = [(_hcl_key(k), _hcl_value(v, indent)) for k, v in d.items()]
    lines: list[str] = []
    i = 0
    while i < len(rendered):
        if len(rendered[i][1]) > 1:  # a multi-line item stands alone and ends a group
            key, body = rendered[i]
            lines += [f"{pad}{key} = {body[0]}", *body[1:]]
            i += 1
            continue
        j = i
        while j < len(rendered) and len(rendered[j][1]) == 1:
            j += 1
        width = max(len(k) for k, _ in rendered[i:j])
        lines += [f"{pad}{k.ljust(width)} = {body[0]}" for k, body in rendered[i:j]]
        i = j
    return lines


def _tf_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "role"
    if not re.match(r"[a-z_]", base):
        base = "r_" + base
    out, n = base, 2
    while out in taken:
        out, n = f"{base}_{n}", n + 1
    taken.add(out)
    return out


def _tf_block(head: str, body: Mapping[str, Any]) -> list[str]:
    return [head + " {", *_hcl_items(body, 2), "}", ""]


def render_terraform(setup: Setup) -> str:
    """Terraform (HCL) for the one account of ``setup``; ``terraform fmt -check`` clean."""
    account = _one_account(setup, "Terraform")
    out = ["# Generated by `bridge aws-setup --format terraform` from the bridge's rules: do not edit by hand,",
           "# regenerate."]
    out += [f"# note: {n}" for n in setup.notes]
    out.append("")
    refs: dict[str, str] = {}
    taken: set[str] = set()
    if setup.audiences:
        oidc_arn = setup.env.oidc_provider_arn(account, setup.roles[0].partition)
        refs[oidc_arn] = "aws_iam_openid_connect_provider.bridge.arn"
        out += _tf_block('resource "aws_iam_openid_connect_provider" "bridge"',
                         {"url": setup.env.issuer_url, "client_id_list": setup.audiences})
    for arn in _own_saml(setup, account):
        name = _tf_name("saml_" + _provider_name(arn), taken)
        refs[arn] = f"aws_iam_saml_provider.{name}.arn"
        out += _tf_block(f'variable "{name}_metadata"', {
            "description": f"SAML IdP metadata of the bridge for {_provider_name(arn)}: bridge metadata --config C",
            "type": Expr("string")})
        out += _tf_block(f'resource "aws_iam_saml_provider" "{name}"',
                         {"name": _provider_name(arn), "saml_metadata_document": Expr(f"var.{name}_metadata")})
    if setup.revocation:
        out += _tf_block('variable "revoked_source_identities"', {
            "description": "aws:SourceIdentity of revoked users (bridge sessions revoke --aws-policy inline)",
            "type": Expr("list(string)"), "default": []})
        out += _tf_block('variable "revoked_session_names"', {
            "description": "aws:userid patterns (*:<session name>) of revoked users, for sessions without one",
            "type": Expr("list(string)"), "default": []})
        out += _tf_block('variable "revoked_before"', {
            "description": "sessions of those users issued before this time are denied",
            "type": Expr("string"), "default": REVOKED_BEFORE_DEFAULT})

    def ref(kind: str, arn: str) -> Any:
        return Expr(refs[arn]) if arn in refs else arn

    for r in (r for r in setup.roles if r.account == account):
        name = _tf_name(r.name, taken)
        out += [f"# {r.arn}: {r.describe()}"]
        out += _tf_block(f'resource "aws_iam_role" "{name}"', {
            "name": r.name, "path": r.path, "description": _description(r.describe()),
            "max_session_duration": r.max_session_duration,
            "assume_role_policy": Expr("jsonencode(" + "\n".join(_hcl_value(
                trust_policy(r, setup.env, harden=setup.harden, ref=ref), 2)) + ")")})
        if setup.revocation:
            doc = {"Version": POLICY_VERSION, "Statement": revocation_statements(
                Expr(f'concat(["{NOBODY}"], var.revoked_source_identities)'),
                Expr(f'concat(["{NOBODY_USERID}"], var.revoked_session_names)'), Expr("var.revoked_before"))}
            out += _tf_block(f'resource "aws_iam_role_policy" "{name}_revocation"', {
                "name": REVOCATION_POLICY_NAME, "role": Expr(f"aws_iam_role.{name}.id"),
                "policy": Expr("jsonencode(" + "\n".join(_hcl_value(doc, 2)) + ")")})
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


RENDERERS: dict[str, Callable[[Setup], str]] = {
    "json": render_json, "cloudformation": render_cloudformation, "terraform": render_terraform}


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
