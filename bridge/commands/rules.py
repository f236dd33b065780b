"""The rules: explain, rules-schema."""

from __future__ import annotations

import json
from typing import Any

import click

from bridge import mapping
from bridge.client import ssoconfig
from bridge.commands._common import CONFIG, fail, identity_from, settings_from, token_claims_identity


@click.command()
@CONFIG
@click.option("--identity", "identity_path", type=click.Path(exists=True, dir_okay=False),
              help="an identity document (subject, email, groups, claims, mfa)")
@click.option("--token-claims", "claims_path", type=click.Path(exists=True, dir_okay=False),
              help="a workload token's claims (its JSON payload), read as --connector reads them")
@click.option("--connector", "connector_id", help="the workload connector whose token --token-claims is")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--matched-only", is_flag=True, help="list only the rules that matched (large rule sets)")
def explain(config_path: str, identity_path: str | None, claims_path: str | None, connector_id: str | None,
            as_json: bool, matched_only: bool) -> None:
    """Show, rule by rule, what an identity (or a workload token's claims) matches and why, then the grants."""
    if (identity_path is None) == (claims_path is None):
        fail(["give exactly one of --identity FILE, --token-claims FILE (with --connector)"], "explain:")
    if connector_id is not None and claims_path is None:
        fail(["--connector goes with --token-claims (an identity document names its own connector)"], "explain:")
    settings = settings_from(config_path)
    ident = (identity_from(identity_path) if identity_path is not None
             else token_claims_identity(settings, connector_id, str(claims_path)))
    results = mapping.explain(settings.mapping, ident, **settings.grant_defaults())
    roles = identity_center_roles(results)
    if as_json:
        shown = [r for r in results if r.matched] if matched_only else results
        doc = mapping.report(results, ident)
        doc["rules"] = [r.to_json() for r in shown]
        doc["identity_center"] = roles
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    click.echo(mapping.report_text(results, ident, only_matched=matched_only))
    click.echo("\n".join(ssoconfig.role_list_lines(roles)))


def identity_center_roles(results: list[mapping.RuleResult]) -> list[dict[str, Any]]:
    """Each grant's name in the Identity Center role list (docs/identity-center.md "Roles by name"), with the rules
    whose grant of the same role merged into it."""
    grants = [g for r in results for g in r.grants]
    merged: dict[str, list[str]] = {}
    for g in grants:
        note = f"{g.role_name}: merged into the grant from rule {g.via!r}"
        merged[g.role_arn] = [r.rule for r in results if r.rule != g.via and note in r.notes]
    return ssoconfig.role_list(grants, merged)


@click.command("rules-schema")
def rules_schema() -> None:
    """Print the JSON Schema of the mapping section and of rules files (for editors' YAML validation)."""
    schema = mapping.MappingSettings.model_json_schema()
    schema["title"] = "Federation Bridge rules (mapping: section, or a rules file)"
    click.echo(json.dumps(schema, indent=2))
