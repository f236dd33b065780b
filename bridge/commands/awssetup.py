"""Registering the bridge in AWS: aws-setup (providers and role trust policies from the rules) and doctor
(would AWS accept the bridge under this trust policy?)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bridge import mapping
from bridge.aws.doctor import RoleDocument, Sample, diagnose, read_role_document
from bridge.aws.iam_render import RENDERERS
from bridge.aws.iam_setup import Environment, RoleSent, Setup, with_bridge_tag
from bridge.commands._common import CONFIG, fail, identity_from, settings_from
from bridge.config import Settings
from bridge.domain.partitions import by_name
from bridge.mapping.roles import requires_mfa, roles_sent


def environment_for(settings: Settings) -> Environment:
    """What AWS sees of this bridge: issuer URL, partition, the SAML Recipient of its assertions."""
    return Environment(settings.issuer_url, settings.aws.partition,
                       by_name(settings.aws.partition).signin_saml_url(settings.aws.signin_region),
                       settings.saml_entity_id)


def defaults_for(settings: Settings) -> mapping.GrantDefaults:
    d = settings.grant_defaults()
    return mapping.GrantDefaults(d["default_audience"], d["default_path"], d["saml_provider"])


def sent_roles(settings: Settings, extra: tuple[str, ...] | list[str] = (),
               account: str | None = None) -> tuple[list[RoleSent], list[str]]:
    """What the bridge sends for each role (``roles_sent``), with the issuer's own ``bridge:mfa`` tag when
    ``aws.mfa_tag`` is on. Raises ValueError for a bad ARN."""
    roles, notes = roles_sent(settings.mapping, defaults_for(settings), extra, account)
    return ([with_bridge_tag(r) for r in roles] if settings.aws.mfa_tag else roles), notes


@click.command("aws-setup")
@CONFIG
@click.option("--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="json", show_default=True)
@click.option("--account", help="only the roles of this account (CloudFormation and Terraform: one account each)")
@click.option("--role", "extra_roles", multiple=True, metavar="ARN",
              help="also set up this role (roles that only claims name, e.g. aws#<account>#<role> groups)")
@click.option("--harden", is_flag=True, help="also require the subject's shape and the tags the rules always send")
@click.option("--revocation", is_flag=True,
              help="a standing deny statement on each role: revoking a user is then one parameter edit")
@click.option("--organization", is_flag=True,
              help="instead: CloudFormation for a service-managed StackSet, the spokes' roles trusting their hub")
@click.option("--via", default=None, help="with --organization: the hub (when the catalog has several)")
@click.option("--managed-policy", "policies", multiple=True, metavar="ROLE=ARN",
              help="with --organization: attach this policy to that spoke role")
def aws_setup(config_path: str, fmt: str, account: str | None, extra_roles: tuple[str, ...], harden: bool,
              revocation: bool, organization: bool, via: str | None, policies: tuple[str, ...]) -> None:
    """The IAM OIDC/SAML providers and each role's trust policy, exactly as the rules need them; or
    (--organization) the StackSet that puts the roles reached through a hub into every spoke account."""
    settings = settings_from(config_path)
    if organization:
        _organization(settings, fmt, via, policies)
        return
    if via is not None or policies:
        fail(["--via and --managed-policy go with --organization"], "bad option:")
    try:
        roles, notes = sent_roles(settings, extra_roles, account)
    except ValueError as e:
        fail([str(e)], "cannot set up:")
    if not roles:
        fail(notes or ["the rules grant no role"], "no role to set up" + (f" in account {account}" if account else ""))
    setup = Setup(environment_for(settings), tuple(roles), tuple(notes), harden=harden, revocation=revocation)
    try:
        text = RENDERERS[fmt](setup)
    except ValueError as e:
        fail([str(e)], "cannot set up:")
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(text, nl=False)


def _organization(settings: Settings, fmt: str, via: str | None, policies: tuple[str, ...]) -> None:
    from bridge.commands.accounts import organization_stackset

    ctx = click.get_current_context()
    given = [f"--{n}" for n in ("format", "account", "role", "harden", "revocation")
             if ctx.get_parameter_source({"format": "fmt", "role": "extra_roles"}.get(n, n))
             is not click.core.ParameterSource.DEFAULT]
    if given and given != ["--format"] or (given and fmt != "cloudformation"):
        fail([f"--organization writes a CloudFormation StackSet template: drop {', '.join(given)}"], "bad option:")
    click.echo(organization_stackset(settings, via, policies), nl=False)


def _doctor_spoke(settings: Settings, doc: RoleDocument, role_arn: str, identity_path: str | None) -> None:
    """A catalog role reached through a hub: its trust policy against the chain's last hop."""
    from bridge.aws.arn import parse_role_arn
    from bridge.aws.doctor_chain import diagnose_spoke

    catalog = settings.mapping.compiled.catalog
    hub = str(catalog.chains[role_arn][-1])
    info = catalog.role(parse_role_arn(role_arn))
    external_id = info.chain.external_id if info else None
    sample = _sample(settings, identity_path, role_arn) if identity_path else None
    result = diagnose_spoke(doc, role_arn, hub, external_id, tags=bool(sample.tags) if sample else None,
                            source_identity=bool(sample.source_identity) if sample else None,
                            mfa=settings.aws.mfa_tag and requires_mfa(settings.mapping, role_arn))
    _report(result, f"{role_arn} (sts:AssumeRole from the hub {hub}"
                    f"{', with an ExternalId' if external_id else ''})")


def _report(result: Any, what: str) -> None:
    for f in result.findings:
        click.echo(f"{f.kind}: {f}")
    for n in result.notes:
        click.echo(f"note: {n}")
    if result.ok:
        click.echo(f"ok: AWS would let the bridge assume {what}")
        return
    refused = any(f.kind == "refused" for f in result.findings)
    click.echo(f"{len(result.findings)} problem(s): " + (f"AWS would refuse the bridge for {what}" if refused else
                                                         f"the trust policy of {what} admits too much"))
    sys.exit(1)


def _sample(settings: Settings, identity_path: str, role_arn: str) -> Sample:
    from bridge.aws.token import subject_for

    ident = identity_from(identity_path)
    decision = mapping.decide(settings.mapping, ident, defaults_for(settings))
    grant = next((g for g in [*decision.grants, *decision.locked] if g.role_arn == role_arn), None)
    if grant is None:
        fail([f"{identity_path} gets no grant of {role_arn}"], "nothing to check:")
    if settings.aws.mfa_tag:
        from bridge.aws.bridge_tags import with_bridge_tags

        grant = with_bridge_tags(grant, ident)
    return Sample(subject_for(ident), dict(grant.tags), tuple(grant.transitive_keys), grant.source_identity)


@click.command()
@CONFIG
@click.option("--role", "role_arn", required=True, metavar="ARN", help="the role the bridge assumes")
@click.option("--trust-policy", "policy_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="`aws iam get-role --role-name R` output (checks MaxSessionDuration too) or the bare policy")
@click.option("--identity", "identity_path", type=click.Path(exists=True, dir_okay=False),
              help="check what this identity's grant sends (its tags, subject, source identity)")
def doctor(config_path: str, role_arn: str, policy_path: str, identity_path: str | None) -> None:
    """Would AWS let the bridge assume ROLE under this trust policy? One line per refusal, with the fix."""
    settings = settings_from(config_path)
    try:
        doc = read_role_document(json.loads(Path(policy_path).read_text(encoding="utf-8")))
        roles, notes = sent_roles(settings, [role_arn])
    except ValueError as e:
        fail([str(e)], f"{policy_path}: cannot read")
    role = next((r for r in roles if r.arn == role_arn), None)
    if role is None:
        if role_arn in settings.mapping.compiled.catalog.chains:
            _doctor_spoke(settings, doc, role_arn, identity_path)
            return
        chained = [n for n in notes if n.startswith(f"{role_arn}: reached through")]
        fail(chained or [f"no rule can grant {role_arn}"], "nothing to check:")
    sample = _sample(settings, identity_path, role_arn) if identity_path else None
    result = diagnose(doc, role, environment_for(settings), sample)
    _report(result, f"{role.arn} ({', '.join(role.actions(p)[0] for p in role.paths)}; {role.describe()})")
