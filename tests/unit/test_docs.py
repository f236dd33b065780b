"""The documentation site cannot drift from the code: every error code has a troubleshooting entry (and
every entry a code), the generated pages equal what scripts/gen_docs.py writes now, and every option of
the settings model is described."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.modules import load_file

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _gen_docs() -> Any:
    return load_file("gen_docs", ROOT / "scripts" / "gen_docs.py", register=True)  # its dataclasses look it up


gen = _gen_docs()


@pytest.fixture(scope="module", autouse=True)
def _forget_the_scans() -> Iterator[None]:
    yield
    gen._bridge_sources.cache_clear()  # a tree of every module: kept for the whole session, it made each
    gen._scan_codes.cache_clear()  # garbage collection slower


def test_every_error_code_has_a_troubleshooting_entry_and_every_entry_a_code() -> None:
    assert gen.catalog_problems() == []


def test_the_scan_finds_codes_of_every_kind() -> None:
    """The scanner sees class codes, literal and f-string ``code=`` arguments, the STS codes the adapter
    maps, and withheld reasons — so the check above is not vacuous."""
    codes = gen.scan_codes()
    assert {"email_unverified", "audit_unavailable", "login_browser_mismatch", "sts_<code>", "sts_AccessDenied",
            "sts_Throttling", "signin_refused", "mfa", "role_value_malformed", "aws_rule_<n>"} <= set(codes)
    assert codes["login_expired"].statuses == {400} and codes["sts_timeout"].classes == {"StsUnavailable"}


def test_a_new_code_without_an_entry_fails_and_so_does_a_stale_entry() -> None:
    uses = gen.scan_codes()
    catalog = gen.load_catalog()
    uses["brand_new_code"] = gen.CodeUse("brand_new_code", where={"bridge/x.py"})
    catalog["code_that_is_gone"] = {"cause": "c", "fix": "f"}
    catalog["login_expired"] = {"cause": "c", "fix": ""}
    problems = gen.catalog_problems(uses, catalog)
    assert any(p.startswith("brand_new_code: used in bridge/x.py but has no entry") for p in problems)
    assert any(p.startswith("code_that_is_gone: docs/errors.yaml has an entry, but no code") for p in problems)
    assert "login_expired: docs/errors.yaml entry needs a non-empty 'fix'" in problems


def test_every_cli_message_has_an_entry_and_every_entry_a_message() -> None:
    """The developer CLI's own messages are on the troubleshooting page too (``cli:`` in docs/errors.yaml):
    the scan finds them (not vacuous), and a new message or a stale entry fails."""
    messages = gen.scan_cli_messages()
    assert {"which bridge? pass --url https://bridge.example.com (or set BRIDGE_URL)", "login abandoned",
            "not signed in to <url> (or the login expired): run `bridge login --url <url>`"} <= set(messages)
    assert messages["login abandoned"].exits == {130} and messages["cannot run <x>: <strerror>"].exits == {126, 127}
    assert gen.cli_problems() == []
    catalog = gen.load_cli_catalog()
    messages["a brand new message"] = gen.CliMessage("a brand new message", where={"bridge/client/core.py"})
    catalog["gone"] = {"says": "a message the CLI stopped printing", "cause": "c", "fix": "f"}
    catalog["login_abandoned"] = {**catalog["login_abandoned"], "fix": ""}
    problems = gen.cli_problems(messages, catalog)
    assert "CLI message 'a brand new message' (bridge/client/core.py) has no cli: entry in docs/errors.yaml" in problems
    assert any(p.startswith("cli.gone: docs/errors.yaml names a CLI message") for p in problems)
    assert "cli.login_abandoned: docs/errors.yaml entry needs a non-empty 'fix'" in problems


@pytest.mark.parametrize("page", sorted(gen.PAGES))
def test_generated_page_is_up_to_date(page: str) -> None:
    assert (DOCS / page).read_text(encoding="utf-8") == gen.PAGES[page](), (
        f"docs/{page} is out of date: run `make docs-gen` (python scripts/gen_docs.py)")


def test_every_option_is_in_the_reference_with_a_description() -> None:
    from bridge.config import Settings
    from bridge.upstream.registry import CONNECTOR_SETTINGS

    text = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)` \|.*\| (.*) \|$", text, re.MULTILINE)
    undescribed = sorted({name for name, what in rows if not what.strip()})
    assert undescribed == [], f"options without a description (add one to config/bridge.example.yaml): {undescribed}"
    documented = {name for name, _ in rows}
    for model in [Settings, *CONNECTOR_SETTINGS.values()]:
        for name, info in model.model_fields.items():
            if not info.exclude and name != "connectors":
                assert name in documented or re.search(rf"^#+ `[^`]*\b{name}\b[^`]*`$", text, re.MULTILINE), name


def test_example_config_defaults_are_the_models() -> None:
    """config/bridge.example.yaml says it shows every option with its default: the scalar values it sets
    in the sections below are the model's defaults (base_url, the connectors and the rules are examples)."""
    from bridge.config import Settings

    example = yaml.safe_load((ROOT / "config" / "bridge.example.yaml").read_text(encoding="utf-8"))
    for section in ("redis", "session", "issuer", "aws", "saml_idp", "credential_cache", "cli", "audit",
                    "rate_limits", "admin"):
        model = Settings.model_fields[section].annotation
        for key, value in example[section].items():
            if isinstance(value, str) and "${" in value:
                continue
            default = model.model_fields[key].get_default(call_default_factory=True)  # type: ignore[union-attr]
            default = getattr(default, "value", default)
            if isinstance(default, Path):
                default = str(default)
            assert value == default, f"{section}.{key}: example says {value!r}, the model's default is {default!r}"


def test_nav_names_every_page_and_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace("!!python", "#"))

    def pages(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in pages(item)]
        if isinstance(node, dict):
            return [p for v in node.values() for p in pages(v)]
        return []

    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert in_nav == on_disk
    assert "aws-rules.md" in in_nav


def test_readme_is_the_front_door() -> None:
    """The README keeps its first screen (the two commands, exactly), and every file it links or shows exists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo    # sets up and runs a working bridge" in text and "make test    # sets up and runs" in text
    visible = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", visible)
    assert targets and all((ROOT / t).exists() for t in targets if "://" not in t), [
        t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert len(text.splitlines()) < 120


def test_the_identity_center_page_has_a_table_of_contents() -> None:
    """docs/identity-center.md is long: its "On this page" list links to each of its sections, in order."""
    text = (DOCS / "identity-center.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## .*\{#([a-z0-9-]+)\}$", text, re.M)
    contents = text.split("**On this page**", 1)[1].split("\n## ", 1)[0]
    assert len(sections) >= 5 and re.findall(r"\]\(#([a-z0-9-]+)\)", contents) == sections
