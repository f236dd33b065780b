"""The rules: explain, rules-schema."""

from __future__ import annotations

import json

import click

from bridge import mapping
from bridge.commands._common import CONFIG, identity_from, settings_from


@click.command()
@CONFIG
@click.option("--identity", "identity_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--matched-only", is_flag=True, help="list only the rules that matched (large rule sets)")
def explain(config_path: str, identity_path: str, as_json: bool, matched_only: bool) -> None:
    """Show, rule by rule, what an identity matches and why, then the grants it gets."""
    settings = settings_from(config_path)
    ident = identity_from(identity_path)
    results = mapping.explain(settings.mapping, ident, **settings.grant_defaults())
    if as_json:
        shown = [r for r in results if r.matched] if matched_only else results
        doc = mapping.report(results, ident)
        doc["rules"] = [r.to_json() for r in shown]
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    click.echo(mapping.report_text(results, ident, only_matched=matched_only))


@click.command("rules-schema")
def rules_schema() -> None:
    """Print the JSON Schema of the mapping section and of rules files (for editors' YAML validation)."""
    schema = mapping.MappingSettings.model_json_schema()
    schema["title"] = "Federation Bridge rules (mapping: section, or a rules file)"
    click.echo(json.dumps(schema, indent=2))
