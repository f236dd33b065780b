"""Rules as tested code: rules test (expectation cases), rules diff (who gains and loses what)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from bridge import mapping
from bridge.commands._common import CONFIG, claims_identity, fail, identity_from, settings_from
from bridge.config import Settings, load_settings
from bridge.domain.errors import ConfigError
from bridge.domain.identity import Identity
from bridge.mapping.cases import Change, audit_subjects, describe, diff, load_cases, run_cases
from bridge.upstream.workload_settings import workload_ids


def _defaults(settings: Settings) -> mapping.GrantDefaults:
    d = settings.grant_defaults()
    return mapping.GrantDefaults(d["default_audience"], d["default_path"], d["saml_provider"])


@click.group("rules")
def rules_group() -> None:
    """Rules as tested code: expectation cases, and the difference a change of rules makes."""


@rules_group.command("test")
@CONFIG
@click.argument("cases_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def rules_test(config_path: str, cases_files: tuple[str, ...]) -> None:
    """Run expectation cases (CASES.yaml…) against the rules; exit 1 if any fails."""
    settings = settings_from(config_path)
    cases = []
    for path in cases_files:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            cases += load_cases(doc, path, Path(path).parent,
                                from_claims=lambda cid, claims: claims_identity(settings, cid, claims))
        except yaml.YAMLError as e:
            fail([str(e)], f"{path}: not YAML")
        except ConfigError as e:
            fail(e.problems, f"{path}: {len(e.problems)} problem(s):")
    results = run_cases(settings.mapping, cases, _defaults(settings))
    for r in results:
        if r.passed:
            continue
        click.echo(f"FAIL {r.case.name} ({r.case.where}; {describe(r.case.identity)})")
        for d in r.differences:
            click.echo(f"  {d}")
        click.echo(f"  granted: {', '.join(r.granted) or 'nothing'}")
    failed = sum(not r.passed for r in results)
    click.echo(f"rules cases: {len(results) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


def _old_mapping(path: str, settings: Settings) -> mapping.MappingSettings:
    """``OLD.yaml``: a whole bridge config, or a rules file (a list of rules, or ``{rules:, accounts:}``)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        fail([str(e)], f"{path}: cannot read")
    try:
        if isinstance(doc, dict) and "connectors" in doc:
            return load_settings(path).mapping
        raw = dict(doc) if isinstance(doc, dict) else {"rules": doc}
        if "accounts" not in raw:  # the catalog of the config in force, for aliases
            raw["accounts"] = settings.mapping.model_dump(mode="json").get("accounts") or {}
        return mapping.load_mapping(raw, partition=settings.aws.partition,
                                    connectors=[c.id for c in settings.connectors],
                                    workloads=workload_ids(settings.connectors))
    except ConfigError as e:
        fail(e.problems, f"{path}: {len(e.problems)} problem(s):")


def _sample_identities(path: str) -> Iterator[Identity]:
    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    for f in files:
        yield identity_from(str(f))


def _audit_identities(path: str, config_path: str) -> Iterator[Identity | str]:
    """The identities of the audit trail's users that still have a live session (the trail keeps no claims)."""
    from bridge.commands._common import services_from

    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    subjects = audit_subjects(text.splitlines())
    if not subjects:
        return
    svc = services_from(config_path)
    for who in subjects:
        found: dict[str, Identity] = {}
        for key in filter(None, (who.get("email"), who.get("subject"))):
            for _, rec in svc.sessions.of_user(key):
                ident = rec.identity
                if ident.subject == who.get("subject") and ident.connector_id == who.get("connector"):
                    found.setdefault("x", ident)
        yield found["x"] if found else f"{who.get('email') or who.get('subject')} ({who.get('connector')}:" \
                                       f"{who.get('subject')}): no live session, so no claims to evaluate; skipped"


@rules_group.command("diff")
@CONFIG
@click.option("--against", "old_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="the rules before the change: a bridge config or a rules file")
@click.option("--identities", "identities_path", type=click.Path(exists=True),
              help="a folder of identity JSON files (the format explain --identity reads), or one file")
@click.option("--audit", "audit_path", type=click.Path(allow_dash=True),
              help="an audit trail (JSON lines, - for stdin): its users that still have a session")
@click.option("--json", "as_json", is_flag=True)
@click.option("--exit-code", is_flag=True, help="exit 1 when anyone gains or loses anything (like git diff)")
def rules_diff(config_path: str, old_path: str, identities_path: str | None, audit_path: str | None,
               as_json: bool, exit_code: bool) -> None:
    """Who gains and who loses which role (and tag values) going from --against to --config."""
    if (identities_path is None) == (audit_path is None):
        fail(["give exactly one of --identities DIR, --audit FILE"], "rules diff:")
    settings = settings_from(config_path)
    old = _old_mapping(old_path, settings)
    source: Iterator[Identity | str] = (_sample_identities(identities_path) if identities_path
                                        else _audit_identities(str(audit_path), config_path))
    identities: list[Identity] = []
    for item in source:
        if isinstance(item, str):
            click.echo(f"note: {item}", err=True)
        else:
            identities.append(item)
    report: list[dict[str, Any]] = []

    def show(ident: Identity, changes: list[Change]) -> None:
        report.append({"who": describe(ident), "changes": [c.__dict__ for c in changes]})
        if changes and not as_json:
            click.echo(describe(ident))
            for c in changes:
                click.echo(f"  {c}")

    changes = diff(old, settings.mapping, identities, _defaults(settings), on_each=show)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        counts = {k: sum(c.kind == k for c in changes) for k in ("gain", "lose", "tags")}
        who = len({c.who for c in changes})
        click.echo(f"{len(identities)} identities, {who} changed: {counts['gain']} role(s) gained, "
                   f"{counts['lose']} lost, {counts['tags']} with other tag values")
    if exit_code and changes:
        sys.exit(1)
