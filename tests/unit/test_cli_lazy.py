"""The ``bridge`` command is one lazy click group: every command listed in help, each loaded only when
used, and `bridge credential-process` (run by AWS SDKs on every refresh) never loads the server's stack.

The import checks run the console-script entry in a fresh interpreter and read its ``sys.modules``
at exit: they assert on module names, never on times (bench/bench_cli_startup.py measures those).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bridge.commands.cli import ADMIN_COMMANDS, COMMANDS, DEVELOPER_COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("flask", "werkzeug", "jinja2", "pydantic", "pydantic_core", "yaml", "boto3", "botocore", "authlib",
         "joserfc", "cryptography", "lxml", "xmlsec", "redis", "requests", "gunicorn")
DEVELOPER_MODULES = {"bridge", "bridge.__main__", "bridge.commands.cli", "bridge.client", "bridge.client.core",
                     "bridge.commands", "bridge.commands.developer"}
# credential-process from the cache
HOT_PATH_MODULES = {"bridge", "bridge.__main__", "bridge.client", "bridge.client.core"}
# What the hot path must not load: each costs start-up the SDK waits for (bench/bench_cli_startup.py).
NOT_ON_HOT_PATH = {"click", "typing", "pathlib", "datetime", "_strptime", "hashlib", "urllib.parse", "secrets",
                   "urllib.request", "http.client", "http.server", "ssl", "webbrowser", "subprocess", "termios"}
# Runs `bridge ARGS...` as the console script does, then writes the loaded modules to $MODULES_OUT.
RUN = ("import atexit, json, os, sys\n"
       "atexit.register(lambda: json.dump(sorted(sys.modules), open(os.environ['MODULES_OUT'], 'w')))\n"
       "from bridge.__main__ import main\n"
       "sys.argv[0] = 'bridge'\n"
       "sys.exit(main())\n")


def bridge(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MODULES_OUT": str(out), "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("BRIDGE_URL", None)
    run = subprocess.run([sys.executable, "-c", RUN, *args], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=False)
    return run, set(json.loads(out.read_text()))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_credential_process_help_loads_no_server_module(tmp_path: Path) -> None:
    run, modules = bridge(tmp_path, "credential-process", "--help")
    assert run.returncode == 0 and "Usage: bridge credential-process" in run.stdout, run.stderr
    assert heavy(modules) == []
    assert {m for m in modules if m.split(".")[0] == "bridge"} == DEVELOPER_MODULES


URL, ROLE = "https://bridge.example.com", "arn:aws:iam::123456789012:role/Admin"


def seed_cache(tmp_path: Path, duration: int | None = None, hours: float = 1, checked_ago: float | None = 0,
               **extra: str) -> dict[str, object]:
    """A cache file as credential-process leaves it; ``checked_ago``: seconds since the bridge last said
    the login holds the role (None: a file without that stamp, as older versions wrote)."""
    stamp = {} if checked_ago is None else {"CheckedAt": time.time() - checked_ago}
    doc: dict[str, object] = {
        "Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret", "SessionToken": "token",
        "Expiration": (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    key = hashlib.sha256(f"{URL}\x00{ROLE}\x00{duration}".encode()).hexdigest()[:32]  # bridge.client.core._cache_path
    cache = tmp_path / "cache" / "federation-bridge"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"creds-{key}.json").write_text(json.dumps({**doc, **stamp, **extra}))
    return doc


def test_credential_process_from_the_cache_loads_neither_click_nor_http(tmp_path: Path) -> None:
    """The SDK's everyday call: credentials still fresh in ~/.cache, printed by bridge.__main__ before click
    or anything else the command line needs is imported; exactly the credential_process fields."""
    doc = seed_cache(tmp_path, RoleArn=ROLE, Region="eu-west-1")
    run, modules = bridge(tmp_path, "credential-process", "--url", URL, "--role", ROLE)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == doc and list(json.loads(run.stdout)) == list(doc)
    assert heavy(modules) == []
    assert {m for m in modules if m.split(".")[0] == "bridge"} == HOT_PATH_MODULES
    assert not NOT_ON_HOT_PATH & modules, sorted(NOT_ON_HOT_PATH & modules)


@pytest.mark.parametrize("args", [("--url", URL, "--role", ROLE, "--duration", "7200"),
                                  (f"--url={URL}", f"--role={ROLE}", "--duration=7200"),
                                  ("--role", ROLE, "--duration", "7200")])  # the only bridge logged in to
def test_hot_path_takes_every_plain_spelling(tmp_path: Path, args: tuple[str, ...]) -> None:
    doc = seed_cache(tmp_path, duration=7200)
    (tmp_path / "config" / "federation-bridge").mkdir(parents=True)
    (tmp_path / "config" / "federation-bridge" / "tokens.json").write_text(json.dumps({URL: {"expires_at": 0}}))
    run, modules = bridge(tmp_path, "credential-process", *args)
    assert run.returncode == 0 and json.loads(run.stdout) == doc, run.stderr
    assert "click" not in modules


@pytest.mark.parametrize(("args", "status", "out"), [
    (("--url", URL, "--role", ROLE, "--help"), 0, "Usage: bridge credential-process"),
    (("--url", URL, "--role", ROLE, "--duration", "x"), 2, ""),
    (("--url", URL, "--role", ROLE, "--role", ROLE), 0, '{"Version": 1'),  # click's rule: the last one wins
    (("--url", URL, "--role"), 2, ""),
])
def test_anything_unusual_goes_to_click(tmp_path: Path, args: tuple[str, ...], status: int, out: str) -> None:
    seed_cache(tmp_path)
    run, modules = bridge(tmp_path, "credential-process", *args)
    assert "click" in modules
    assert run.returncode == status and run.stdout.startswith(out), run.stdout + run.stderr


@pytest.mark.parametrize(("checked_ago", "extra", "env", "hot"), [
    (299, (), {}, True), (301, (), {}, False), (None, (), {}, False),  # the default bound: 300 s
    (301, ("--recheck", "600"), {}, True), (5, ("--recheck=0",), {}, False),
    (301, (), {"BRIDGE_CREDENTIAL_RECHECK": "600"}, True), (5, (), {"BRIDGE_CREDENTIAL_RECHECK": "0"}, False)])
def test_the_cache_is_used_without_asking_only_within_the_recheck_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checked_ago: float | None, extra: tuple[str, ...],
        env: dict[str, str], hot: bool) -> None:
    """Past the bound since the bridge last said the login holds the role, the cache is not answered
    from: click's path asks the bridge (here: no login, so the user is told to log in)."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    doc = seed_cache(tmp_path, checked_ago=checked_ago)
    run, modules = bridge(tmp_path, "credential-process", "--url", URL, "--role", ROLE, *extra)
    if hot:
        assert run.returncode == 0 and json.loads(run.stdout) == doc and "click" not in modules, run.stderr
    else:
        assert run.returncode == 1 and run.stderr.startswith(f"bridge: not signed in to {URL}") and not run.stdout
        assert "click" in modules


def test_a_bad_recheck_bound_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_cache(tmp_path)
    monkeypatch.setenv("BRIDGE_CREDENTIAL_RECHECK", "5m")
    run, _ = bridge(tmp_path, "credential-process", "--url", URL, "--role", ROLE)
    assert run.returncode == 1 and not run.stdout
    assert run.stderr == "bridge: BRIDGE_CREDENTIAL_RECHECK / --recheck must be a whole number of seconds, not '5m'\n"


def test_stale_cache_goes_to_click_and_the_network(tmp_path: Path) -> None:
    """Within 15 minutes of expiry the cache does not count: click's path asks the bridge (here: no login)."""
    seed_cache(tmp_path, hours=0.2)
    run, modules = bridge(tmp_path, "credential-process", "--url", URL, "--role", ROLE)
    assert run.returncode == 1 and run.stderr.startswith(f"bridge: not signed in to {URL}") and not run.stdout
    assert "click" in modules and heavy(modules) == []


def test_credential_process_without_login_still_loads_no_server_module(tmp_path: Path) -> None:
    run, modules = bridge(tmp_path, "credential-process", "--url", "http://127.0.0.1:9", "--role", "Admin")
    assert run.returncode == 1 and run.stderr.startswith("bridge: not signed in to http://127.0.0.1:9")
    assert heavy(modules) == []


def test_full_help_does_load_the_admin_commands(tmp_path: Path) -> None:
    """The other side of the checks above: listing every command imports them, server stack included."""
    run, modules = bridge(tmp_path, "--help")
    assert run.returncode == 0, run.stderr
    assert {"pydantic", "bridge.commands.admin", "bridge.commands.tokens"} <= modules


def test_help_lists_developer_commands_first_then_admin_commands() -> None:
    r = CliRunner().invoke(main, ["--help"], prog_name="bridge")
    assert r.exit_code == 0, r.output
    assert "\nCommands:" not in r.output
    dev_part, admin_part = r.output.split("Developer commands:\n")[1].split("Admin commands:\n")
    developer = re.findall(r"^  ([a-z-]+) +(\S.*)$", dev_part, re.M)
    admin = re.findall(r"^  ([a-z-]+) +(\S.*)$", admin_part, re.M)
    assert [n for n, _ in developer] == list(DEVELOPER_COMMANDS)
    assert [n for n, _ in admin] == list(ADMIN_COMMANDS)
    assert sorted(DEVELOPER_COMMANDS.keys() | ADMIN_COMMANDS.keys()) == sorted(COMMANDS)
    assert all(help_ and not help_.endswith("...") for _, help_ in developer), developer
    assert all(help_ for _, help_ in admin)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_loads_under_its_name(name: str) -> None:
    ctx = click.Context(main)
    command = main.get_command(ctx, name)
    assert isinstance(command, click.Command) and command.name == name
    r = CliRunner().invoke(main, [name, "--help"], prog_name="bridge")
    assert r.exit_code == 0 and r.output.startswith(f"Usage: bridge {name} "), r.output


def test_unknown_command_is_a_usage_error() -> None:
    r = CliRunner().invoke(main, ["nosuch"], prog_name="bridge")
    assert r.exit_code == 2 and "No such command 'nosuch'" in r.output


def _docs_block(page: str) -> str:
    """The ``sh`` blocks of a documentation page (docs/admin-cli.md, docs/developer-credentials.md)."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return "\n".join(re.findall(r"```sh\n(.*?)```", text, re.S))


def test_docs_command_lists_name_every_command() -> None:
    """The docs pages "Admin CLI" and "Developer credentials" show every command and subcommand, and no other."""
    ctx = click.Context(main)
    expected = set()
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            expected |= {f"{name} {sub}" for sub in command.list_commands(ctx)}
        else:
            expected.add(name)
    shown = set()
    for block in (_docs_block("admin-cli.md"), _docs_block("developer-credentials.md")):
        for line in block.splitlines():
            if m := re.search(r"(?:^|[\s(])bridge ([a-z-]+)(?: ([a-z-]+))?", line.split("#")[0]):
                group = main.get_command(ctx, m[1])
                shown.add(f"{m[1]} {m[2]}" if isinstance(group, click.Group) else m[1])
    assert shown == expected
