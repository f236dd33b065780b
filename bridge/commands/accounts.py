"""Many accounts from AWS Organizations: accounts sync (the catalog) and accounts stackset (the spokes' roles)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import click

from bridge.commands._common import CONFIG, fail, settings_from


@click.group("accounts")
def accounts_group() -> None:
    """The accounts catalog from AWS Organizations, and the spokes' roles trusting the hub."""


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            fail([f"{what} {v!r}: write KEY=VALUE"], "bad option:")
        out[key] = value
    return out


def _hub(settings: Any, via: str) -> str:
    from bridge.mapping.chains import hub_arn

    arn = hub_arn(via, settings.mapping.compiled.catalog, settings.aws.partition)
    if isinstance(arn, str):
        fail([f"--via {arn}"], "no such hub:")
    return str(arn)


def read_organization(client: Any) -> list[Any]:
    """Every account of the organization with its OUs (root first) and tags (the caller's AWS credentials)."""
    from bridge.aws.organizations import OrgAccount

    names: dict[str, str] = {}
    parent_of: dict[str, tuple[str, str]] = {}

    def parent(child: str) -> tuple[str, str]:
        if child not in parent_of:
            p = client.list_parents(ChildId=child)["Parents"][0]
            parent_of[child] = (p["Id"], p["Type"])
        return parent_of[child]

    def ou_name(ou: str) -> str:
        if ou not in names:
            names[ou] = client.describe_organizational_unit(OrganizationalUnitId=ou)["OrganizationalUnit"]["Name"]
        return names[ou]

    out = []
    for page in client.get_paginator("list_accounts").paginate():
        for a in page["Accounts"]:
            chain: list[tuple[str, str]] = []
            pid, kind = parent(a["Id"])
            while kind != "ROOT":
                chain.insert(0, (pid, ou_name(pid)))
                pid, kind = parent(pid)
            chain.insert(0, (pid, "Root"))
            tags = {t["Key"]: t["Value"] for p in client.get_paginator("list_tags_for_resource").paginate(
                ResourceId=a["Id"]) for t in p["Tags"]}
            out.append(OrgAccount(a["Id"], a.get("Name", ""), a.get("Email", ""), a.get("Status", ""), tuple(chain),
                                  tags))
    return out


def _organization(endpoint_url: str | None) -> list[Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    client = boto3.session.Session().client("organizations", region_name="us-east-1", endpoint_url=endpoint_url)
    try:
        return read_organization(client)
    except NoCredentialsError:
        fail(["no AWS credentials: run it with credentials of the organization's management account or of a "
              "delegated administrator (organizations:ListAccounts, ListParents, DescribeOrganizationalUnit, "
              "ListTagsForResource)"], "cannot read AWS Organizations:")
    except ClientError as e:
        err = e.response.get("Error", {})
        fail([f"{err.get('Code', 'error')}: {str(err.get('Message', ''))[:300]}"], "AWS Organizations refused:")
    except BotoCoreError as e:
        fail([f"{type(e).__name__}: {e}"], "cannot read AWS Organizations:")


@accounts_group.command("sync")
@CONFIG
@click.option("--ou", "ous", multiple=True, help="an OU id (ou-…) or name path from the root (Root/Workloads): "
                                                   "its accounts, and those below")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="only accounts carrying this tag")
@click.option("--role", "roles", multiple=True, required=True, help="a role every picked account gets")
@click.option("--via", default=None, help="the hub these roles are reached through (a catalog role)")
@click.option("--endpoint-url", default=None, help="another AWS Organizations endpoint (a VPC endpoint, a test)")
@click.option("--check", is_flag=True, help="print nothing; exit 1 when the catalog lacks an account or role")
@click.option("--write", "write_to", default=None, metavar="FILE",
              help="write the accounts file mapping.accounts_file names (accounts written by hand in "
                   "mapping.accounts are left there)")
def sync(config_path: str, ous: tuple[str, ...], tags: tuple[str, ...], roles: tuple[str, ...], via: str | None,
         endpoint_url: str | None, check: bool, write_to: str | None) -> None:
    """Catalog entries for the organization's accounts (by OU and tag) and their roles, as YAML to merge
    into mapping.accounts, or (--write) as the accounts file; what the catalog says of them already is kept
    (an ExternalId is never printed)."""
    from bridge.aws.organizations import catalog, catalog_yaml, differences, picked
    from bridge.domain.errors import ConfigError
    from bridge.mapping import load_mapping

    settings = settings_from(config_path)
    if via is not None:
        _hub(settings, via)
    found = picked(_organization(endpoint_url), ous, _pairs(tags, "--tag"))
    # The catalog in force as written, without ExternalIds: a secret is never printed (say where one is kept).
    current = settings.mapping.model_dump(mode="json", exclude_none=True, exclude_defaults=True,
                                          exclude={"accounts": {"__all__": {"roles": {"__all__": {"external_id"}}}}},
                                          ).get("accounts", {})
    doc = catalog(found, {r: ({"via": via} if via else {}) for r in roles}, current)
    for acct in doc:
        entry = settings.mapping.accounts.get(acct)
        for role, spec in (entry.roles.items() if entry else ()):
            if spec.external_id is not None:
                click.echo(f"note: account {acct} role {role} has an ExternalId: not printed; keep it where it is "
                           "configured (external_id_file)", err=True)
    try:
        load_mapping({"accounts": {**current, **doc}}, partition=settings.aws.partition)
    except ConfigError as e:
        fail(e.problems, "the synced catalog would not load:")
    if check:
        diff = differences(doc, current)
        for line in diff:
            click.echo(line)
        click.echo(f"{len(found)} account(s) picked; catalog {'out of date' if diff else 'up to date'}", err=True)
        sys.exit(1 if diff else 0)
    if write_to is None:
        click.echo(catalog_yaml(doc, f"{len(found)} account(s) picked"), nl=False)
        return
    _write(settings, doc, write_to, f"{len(found)} account(s) picked")


def _write(settings: Any, doc: dict[str, Any], write_to: str, source: str) -> None:
    """The accounts file: the synced entries but those written by hand in mapping.accounts (they stay there;
    both would be refused at load). Written whole, then moved into place (a reload never reads half)."""
    import os
    from pathlib import Path

    from bridge.aws.organizations import catalog_yaml

    raw = settings._mapping_raw if isinstance(settings._mapping_raw, dict) else {}
    by_hand = set(raw.get("accounts") or {})
    for acct in sorted(by_hand & set(doc)):
        click.echo(f"note: account {acct} is written in mapping.accounts: left there, not in {write_to}", err=True)
    out = {a: e for a, e in doc.items() if a not in by_hand}
    # An ExternalId is never written, so rewriting an entry holding one would lose it: refuse, nothing written.
    secret = [f"account {a} role {r} has an ExternalId: move the account into mapping.accounts (with its "
              f"external_id_file), then sync again" for a in out
              for r, spec in getattr(settings.mapping.accounts.get(a), "roles", {}).items()
              if spec.external_id is not None]
    if secret:
        fail(secret, f"not writing {write_to}:")
    path = Path(write_to)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(catalog_yaml(out, source, file=True), encoding="utf-8")
    os.replace(tmp, path)
    configured = settings.mapping.accounts_file
    click.echo(f"wrote {len(out)} account(s) to {path}" + ("" if configured else
               " (name it in mapping.accounts_file: to load it)"), err=True)


@accounts_group.command("stackset")
@CONFIG
@click.option("--via", required=True, help="the hub the roles trust (a catalog role)")
@click.option("--role", "roles", multiple=True, required=True, help="a role to create in every spoke")
@click.option("--managed-policy", "policies", multiple=True, metavar="ROLE=ARN", help="attach this policy")
def stackset(config_path: str, via: str, roles: tuple[str, ...], policies: tuple[str, ...]) -> None:
    """CloudFormation for a service-managed StackSet: in each spoke, the roles trusting the hub's role."""
    from bridge.aws.organizations import stackset_template

    settings = settings_from(config_path)
    hub = _hub(settings, via)
    click.echo(stackset_template(hub, attachments(roles, policies),
                                 description=f"Federation Bridge spokes: roles reached through {hub}"), nl=False)


def attachments(roles: Iterable[str], policies: Iterable[str]) -> dict[str, list[str]]:
    """Role name → the managed policy ARNs ``--managed-policy ROLE=ARN`` attach to it (every role listed)."""
    attach: dict[str, list[str]] = {r: [] for r in roles}
    for p in policies:
        role, sep, arn = p.partition("=")
        if not sep or role not in attach:
            fail([f"--managed-policy {p!r}: write ROLE=ARN for one of the --role names"], "bad option:")
        attach[role].append(arn)
    return attach


def organization_stackset(settings: Any, via: str | None, policies: Iterable[str]) -> str:
    """``bridge aws-setup --organization``: the StackSet for the catalog roles reached through one hub
    (``via``, or the only hub the catalog has), each trusting that hub (the last hop of its chain)."""
    from bridge.aws.organizations import stackset_template

    spokes: dict[str, set[str]] = {}
    for target, hubs in settings.mapping.compiled.catalog.chains.items():
        spokes.setdefault(str(hubs[-1]), set()).add(target.rsplit("/", 1)[1])
    if via is not None:
        hub = _hub(settings, via)
        if hub not in spokes:
            fail([f"no catalog role is reached through {hub} (give the spokes' roles `via: {via}` in "
                  "mapping.accounts, or run `bridge accounts sync --via`)"], "no role to set up:")
    elif len(spokes) != 1:
        fail([f"the catalog reaches roles through {len(spokes)} hubs ({', '.join(sorted(spokes))}): pick one "
              "with --via (one StackSet per hub)"] if spokes else
             ["no catalog role is reached through a hub: give the spokes' roles `via:` in mapping.accounts "
              "(docs: Many accounts)"], "no role to set up:")
    else:
        hub = next(iter(spokes))
    return stackset_template(hub, attachments(sorted(spokes[hub]), policies),
                             description=f"Federation Bridge spokes: roles reached through {hub}",
                             mfa_roles=_mfa_spokes(settings, hub))


def _mfa_spokes(settings: Any, hub: str) -> set[str]:
    """Names of the spoke roles through ``hub`` that every rule gives only with MFA, in every account the StackSet
    reaches (one template serves them all), when the issuer sends ``bridge:mfa`` (docs/step-up-mfa.md)."""
    from bridge.mapping.roles import requires_mfa

    if not settings.aws.mfa_tag:
        return set()
    by_name: dict[str, list[bool]] = {}
    for target, hubs in settings.mapping.compiled.catalog.chains.items():
        if str(hubs[-1]) == hub:
            by_name.setdefault(target.rsplit("/", 1)[1], []).append(requires_mfa(settings.mapping, target))
    return {name for name, each in by_name.items() if all(each)}
