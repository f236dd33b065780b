"""What `bridge check-config` and `bridge serve` refuse before anything runs: placeholder secrets,
an issuer with a port, a listen address without a usable port, an empty rules file, missing keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.config import settings_from_dict
from bridge.domain.errors import ConfigError
from bridge.keys.signing import generate_cache_key, generate_key

ROOT = Path(__file__).resolve().parents[2]
RULES = [{"name": "r", "match": {"group": "g"}, "grants": [{"role_arn": "arn:aws:iam::123456789012:role/R"}]}]


def config(tmp_path: Path, **top: Any) -> Path:
    keys = tmp_path / "keys"
    if not keys.is_dir():
        generate_key(keys, "ES256")
        generate_cache_key(keys)
    doc: dict[str, Any] = {
        "base_url": "https://bridge.example.com", "secret_key": "a-real-random-secret",
        "issuer": {"keys_dir": "keys"}, "metrics": {"enabled": False},
        "connectors": [{"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c",
                        "client_secret": "s3cr3t"}],
        "mapping": {"rules": RULES}}
    doc.update(top)
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def check(path: Path) -> Any:
    return CliRunner().invoke(main, ["check-config", "--config", str(path)])


def test_a_finished_config_passes(tmp_path: Path) -> None:
    r = check(config(tmp_path))
    assert r.exit_code == 0 and r.stdout == "ok\n", r.output


def test_the_example_config_as_shipped_is_refused_for_its_placeholder_secrets(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("BRIDGE_", "CORP_", "ADFS_"))]:
        monkeypatch.delenv(name)
    r = check(ROOT / "config" / "bridge.example.yaml")
    assert r.exit_code == 1
    for where in ("secret_key", "connectors[0].client_secret"):
        assert f"  - {where}: still the example's placeholder 'change-me': set a real secret" in r.stderr, r.stderr


def test_placeholder_anywhere_a_secret_goes(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("CHANGE-ME\n")
    r = check(config(tmp_path, secret_key="change-me-please", metrics={"bearer_token_file": "token"},
                     redis={"url": "rediss://r.example.com:6380/0", "password": "change-me"}))
    assert r.exit_code == 1
    assert [x.split(":")[0] for x in r.stderr.splitlines()[1:]] == [
        "  - secret_key", "  - redis.password", "  - metrics.bearer_token"]


@pytest.mark.parametrize("top,where", [
    ({"issuer": {"keys_dir": "keys", "url": "https://bridge.example.com:8443"}}, "issuer.url"),
    ({"base_url": "https://bridge.example.com:8443"}, "issuer.url (unset: base_url)"),
])
def test_an_issuer_with_a_port_is_refused(tmp_path: Path, top: dict[str, Any], where: str) -> None:
    r = check(config(tmp_path, **top))
    assert r.exit_code == 1
    assert (f"  - {where}: https://bridge.example.com:8443 has a port; AWS IAM registers OIDC issuers by https URL "
            "without a port") in r.stderr


@pytest.mark.parametrize("listen,why", [
    ("127.0.0.1", "'127.0.0.1' has no port"),
    ("0.0.0.0:70000", "'0.0.0.0:70000' port '70000' is not a number from 1 to 65535"),
    ("0.0.0.0:0", "'0.0.0.0:0' port '0' is not a number from 1 to 65535"),
    (":8000", "':8000' has no host (0.0.0.0: every interface)"),
])
def test_listen_needs_a_host_and_a_port_in_range(tmp_path: Path, listen: str, why: str) -> None:
    r = check(config(tmp_path, listen=listen))
    assert r.exit_code == 1
    assert f"  - listen: {why}: write host:port, e.g. 127.0.0.1:8000" in r.stderr, r.stderr
    with pytest.raises(ConfigError):  # at startup too: it is the schema's
        settings_from_dict({"base_url": "https://b.example.com", "listen": listen, "connectors": [
            {"id": "x", "type": "oidc", "issuer": "https://i.example.com", "client_id": "c", "client_secret": "s"}]})


@pytest.mark.parametrize("text", ["", "\n  \n", "# rules go here\n# (none yet)\n"])
def test_an_empty_rules_file_is_an_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    r = check(config(tmp_path, mapping={"rules_file": "rules.yaml"}))
    assert r.exit_code == 1
    assert (f"  - mapping.rules_file: {tmp_path / 'rules.yaml'} is empty (no rules, no accounts): a truncated or "
            "half-written file?") in r.stderr


def test_no_rules_written_on_purpose_or_no_mapping_at_all_still_pass(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("expected_rules: 0\nrules: []\n", encoding="utf-8")
    assert check(config(tmp_path, mapping={"rules_file": "rules.yaml"})).exit_code == 0
    r = check(config(tmp_path, mapping={}))  # a fresh install: warned, not refused
    assert r.exit_code == 0 and "warning: mapping: no rules" in r.stderr


def test_serve_checks_keys_and_the_rest_before_starting_gunicorn(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    execs: list[Any] = []
    monkeypatch.setattr(os, "execvpe", lambda *a: execs.append(a))
    cfg = config(tmp_path, issuer={"keys_dir": "no-keys-here"}, secret_key="change-me")
    r = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert r.exit_code == 1 and execs == []
    assert f"{cfg}: cannot serve, 2 problem(s):" in r.stderr
    assert "key directory does not exist" in r.stderr and "secret_key: still the example's placeholder" in r.stderr


def test_serve_warns_when_the_sts_cap_leaves_no_thread_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    execs: list[Any] = []
    monkeypatch.setattr(os, "execvpe", lambda *a: execs.append(a))
    monkeypatch.setenv("BRIDGE_THREADS", "8")
    cfg = config(tmp_path, aws={"sts_max_concurrency": 7})
    r = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert r.exit_code == 0 and len(execs) == 1
    assert ("warning: aws.sts_max_concurrency 7 leaves fewer than 2 of the 8 threads per worker (BRIDGE_THREADS) "
            "free") in r.stderr
    execs.clear()
    cfg = config(tmp_path, aws={"sts_max_concurrency": 6})
    r = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert r.exit_code == 0 and len(execs) == 1 and "warning" not in r.stderr
