"""``bridge aws-setup``'s documents: a ``Setup`` (bridge/aws/iam_setup.py) as JSON, as a CloudFormation
template or as Terraform, for one or more accounts. Pure: the trust and revocation policies come from
bridge/aws/iam_setup.py; this module only writes them out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from bridge.aws.iam_setup import (
    NOBODY,
    NOBODY_USERID,
    POLICY_VERSION,
    REVOCATION_POLICY_NAME,
    REVOKED_BEFORE_DEFAULT,
    Setup,
    revocation_statements,
    trust_policy,
)

# --------------------------------------------------------------------------- JSON


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
