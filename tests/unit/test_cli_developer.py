"""The developer CLI against a stand-in bridge (the JSON API on 127.0.0.1, standard library): roles,
the role picker (driven through a pseudo-terminal), exec, env's failures and region, configure's names.

Each command runs as the console script runs it, in a subprocess with its own HOME and XDG dirs.
tests/integration/test_cli_login.py runs the same commands against the real bridge and STS.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bridge.client import core as client
from bridge.client import picker
from bridge.commands.developer import human_duration, human_time
from tests.waits import read_lines

ROOT = Path(__file__).resolve().parents[2]
RUN = "import sys; from bridge.__main__ import main; sys.argv[0] = 'bridge'; sys.exit(main())"
TOKEN = "cli-token-123"


def grant(account: str, alias: str, role: str, label: str, max_duration: int) -> dict[str, Any]:
    arn = f"arn:aws:iam::{account}:role/{role}"
    return {"id": client.grant_id_for(arn), "role_arn": arn, "account_id": account, "label": label,
            "role_name": role, "max_duration": max_duration, "account_alias": alias, "account_label": alias.title(),
            "default_duration": 3600}


GRANTS = [grant("123456789012", "sandbox", "Admin", "Sandbox admin", 43200),
          grant("123456789012", "sandbox", "ReadOnly", "Read-only", 3600),
          grant("210987654321", "", "Deploy", "Prod deploy", 7200)]


class FakeBridge:
    """/api/v1/grants and /api/v1/credentials/<id>, bearer-checked; keys name the grant's role."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.requestable: list[dict[str, Any]] = []
        self.broken = False
        self.withdrawn: set[str] = set()  # role names the token holder no longer holds
        self.grants_asked = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"error": "not_signed_in", "message": "Your CLI login has expired."})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                if self._authorized() and self.path == "/api/v1/grants":
                    outer.grants_asked += 1
                    held = [g for g in GRANTS if g["role_name"] not in outer.withdrawn]
                    self._send(200, {"grants": held, "requestable": outer.requestable,
                                     "expires_at": int(time.time()) + 3600, "region": "eu-central-1"})

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self._authorized():
                    return
                gid = self.path.rsplit("/", 1)[-1]
                g = next((g for g in GRANTS if g["id"] == gid), None)
                if g is None:
                    self._send(403, {"error": "not_granted", "message": "not granted"})
                    return
                outer.issued.append(g["role_name"])
                if outer.broken:
                    self._send(200, {"Version": 1, "AccessKeyId": "ASIAHALF"})  # a broken answer
                    return
                exp = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._send(200, {"Version": 1, "AccessKeyId": f"ASIA{g['role_name'].upper()}",
                                 "SecretAccessKey": "s3cr3t", "SessionToken": "tok", "Expiration": exp,
                                 "RoleArn": g["role_arn"], "Region": "eu-central-1"})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def fake() -> Iterator[FakeBridge]:
    f = FakeBridge()
    t = threading.Thread(target=f.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f
    f.server.shutdown()
    f.server.server_close()


@pytest.fixture
def home(tmp_path: Path, fake: FakeBridge) -> dict[str, str]:
    """A signed-in user's environment (one bridge in tokens.json), no AWS or bridge settings of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XDG_", "BRIDGE_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), AWS_CONFIG_FILE=str(tmp_path / ".aws" / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / ".aws" / "credentials"), TZ="UTC")
    tokens = tmp_path / "config" / "federation-bridge" / "tokens.json"
    tokens.parent.mkdir(parents=True)
    tokens.write_text(json.dumps({fake.url: {"access_token": TOKEN, "expires_at": int(time.time()) + 43140}}))
    return env


def bridge(env: dict[str, str], *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, **kw)


# ---- human output ----------------------------------------------------------------------------


def test_durations_and_times_read_like_a_person_wrote_them() -> None:
    assert [human_duration(s) for s in (0, 59, 60, 3600, 43140, 43200, 5400)] == \
        ["0 s", "59 s", "1 min", "1 h", "11 h 59 min", "12 h", "1 h 30 min"]
    now = 1_700_000_000.0
    assert human_time(now + 43170, now).endswith("(in 11 h 59 min)")
    assert human_time(now - 120, now).endswith("(2 min ago)")
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d", human_time(now, now))


# ---- roles -----------------------------------------------------------------------------------


def test_roles_table_and_json(home: dict[str, str], fake: FakeBridge) -> None:
    r = bridge(home, "roles")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["ALIAS", "ACCOUNT", "ROLE", "LABEL", "MAX SESSION", "STATE"]
    assert re.split(r"\s{2,}", lines[1]) == ["sandbox", "123456789012", "Admin", "Sandbox admin", "12 h", "granted"]
    assert re.split(r"\s{2,}", lines[3]) == ["-", "210987654321", "Deploy", "Prod deploy", "2 h", "granted"]
    column = lines[0].index("ROLE")  # aligned
    assert [line[column:].split()[0] for line in lines[1:]] == ["Admin", "ReadOnly", "Deploy"]
    assert "bridge exec --role sandbox/Admin" in r.stderr
    doc = json.loads(bridge(home, "roles", "--json").stdout)
    assert doc == GRANTS


def test_roles_marks_roles_given_on_request(home: dict[str, str], fake: FakeBridge) -> None:
    fake.requestable = [{"id": "f" * 16, "role_arn": "arn:aws:iam::210987654321:role/Admin",
                         "account_id": "210987654321", "label": "Prod admin", "role_name": "Admin",
                         "account_alias": "prod", "state": "request", "max_duration": 3600}]
    r = bridge(home, "roles")
    assert r.returncode == 0, r.stderr
    assert re.split(r"\s{2,}", r.stdout.splitlines()[-1]) == ["prod", "210987654321", "Admin", "Prod admin", "1 h",
                                                               "Request"]
    assert "/requests" in r.stderr


def test_roles_without_login(home: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "config" / "federation-bridge" / "tokens.json").unlink()
    r = bridge(home, "roles", "--url", "http://127.0.0.1:9")
    assert r.returncode == 1 and r.stdout == "" and "bridge login --url http://127.0.0.1:9" in r.stderr


# ---- env: loud failures, the region ---------------------------------------------------------


def test_env_prints_exports_with_the_bridges_region(home: dict[str, str]) -> None:
    r = bridge(home, "env", "--role", "sandbox/Admin")
    assert r.returncode == 0, r.stderr
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", r.stdout, re.M))
    assert exports["AWS_ACCESS_KEY_ID"] == "ASIAADMIN" and exports["AWS_REGION"] == "eu-central-1"
    assert exports["AWS_DEFAULT_REGION"] == "eu-central-1" and "AWS_CREDENTIAL_EXPIRATION" in exports
    assert re.search(r"# sandbox/Admin: credentials until .* \(in 5\d min\)", r.stderr), r.stderr
    # $AWS_REGION wins; --region wins over it
    assert "export AWS_REGION=ap-south-1" in bridge({**home, "AWS_REGION": "ap-south-1"}, "env", "--role",
                                                     "sandbox/Admin").stdout
    assert "export AWS_REGION=us-west-2" in bridge({**home, "AWS_REGION": "ap-south-1"}, "env", "--role",
                                                   "sandbox/Admin", "--region", "us-west-2").stdout
    fish = bridge(home, "env", "--role", "sandbox/Admin", "--shell", "fish").stdout
    assert "set -gx AWS_ACCESS_KEY_ID 'ASIAADMIN'\n" in fish


def test_env_honours_the_region_configure_wrote(home: dict[str, str], fake: FakeBridge) -> None:
    assert bridge(home, "configure", "--region", "eu-north-1").returncode == 0
    r = bridge(home, "env", "--role", "sandbox/ReadOnly")
    assert "export AWS_REGION=eu-north-1\n" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("case", ["no-login", "no-role", "unknown-role", "broken-answer"])
def test_env_fails_loudly(home: dict[str, str], fake: FakeBridge, tmp_path: Path, case: str) -> None:
    """eval "$(bridge env …)": on failure nothing on stdout, a message on stderr, a non-zero status."""
    args = ["env", "--role", "sandbox/Admin"]
    if case == "no-login":
        (tmp_path / "config" / "federation-bridge" / "tokens.json").write_text("{}")
        args += ["--url", fake.url]
    elif case == "no-role":
        args = ["env"]  # stdout is a pipe: no picker
    elif case == "unknown-role":
        args = ["env", "--role", "Nope"]
    else:
        fake.broken = True
    r = bridge(home, *args, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and r.stdout == "" and r.stderr.startswith("bridge: "), (r.returncode, r.stdout)
    if case in ("no-role", "unknown-role"):
        assert "your roles: sandbox/Admin, sandbox/ReadOnly, 210987654321/Deploy" in r.stderr
    # and through a real shell, as docs/developer-credentials.md shows it
    shell = subprocess.run(["bash", "-c", f'out=$({sys.executable} -c "{RUN}" {" ".join(args)}) && eval "$out" '
                            '&& echo "$AWS_ACCESS_KEY_ID"'], env=home, cwd=ROOT, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    assert shell.returncode != 0 and shell.stdout == "" and "bridge: " in shell.stderr


# ---- configure ------------------------------------------------------------------------------


def test_configure_names_profiles_by_alias_with_an_absolute_path(home: dict[str, str], fake: FakeBridge,
                                                                 tmp_path: Path) -> None:
    creds = tmp_path / ".aws" / "credentials"
    creds.parent.mkdir()
    # a static-key profile of the name the bridge would use: left alone, and kept apart from the bridge's
    creds.write_text("[sandbox-ReadOnly]\naws_access_key_id = AKIAOLD\naws_secret_access_key = x\n")
    r = bridge(home, "configure", "--region", "eu-west-1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["added profile sandbox-Admin", "added profile sandbox-ReadOnly-bridge",
                                     "added profile 210987654321-Deploy"]
    assert "'sandbox-ReadOnly' holds static keys" in r.stderr
    text = Path(home["AWS_CONFIG_FILE"]).read_text()
    assert "[profile sandbox-ReadOnly]" not in text
    lines = dict(re.findall(r"^\[profile (\S+)\]\ncredential_process = (.*)$", text, re.M))
    assert set(lines) == {"sandbox-Admin", "sandbox-ReadOnly-bridge", "210987654321-Deploy"}
    program = lines["sandbox-Admin"].split(" credential-process ")[0]
    # Run as `python -c`: no console script ran, so the bridge on $PATH or this Python with -m bridge.
    first = program.split()[0]
    assert os.path.isabs(first) and os.access(first, os.X_OK), program
    assert lines["sandbox-Admin"].endswith(f"credential-process --url {fake.url} "
                                           "--role arn:aws:iam::123456789012:role/Admin")
    # the written line works, by itself, as botocore would run it
    import shlex

    out = subprocess.run(shlex.split(lines["sandbox-Admin"]), env={**home, "PATH": "/nonexistent"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["AccessKeyId"] == "ASIAADMIN", out.stderr
    assert creds.read_text().startswith("[sandbox-ReadOnly]\naws_access_key_id = AKIAOLD")


def test_configure_writes_the_running_console_script(home: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "bin" / "bridge"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\n{RUN.replace('sys.argv[0] = ' + repr('bridge') + '; ', '')}\n")
    script.chmod(0o755)
    r = subprocess.run([str(script), "configure"], env=home, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"credential_process = {script} credential-process" in Path(home["AWS_CONFIG_FILE"]).read_text()


def test_configure_sso_writes_sections_in_place_and_refuses_foreign_ones(home: dict[str, str], fake: FakeBridge,
                                                                         tmp_path: Path) -> None:
    from bridge.client import ssoconfig

    cfg = Path(home["AWS_CONFIG_FILE"])
    cfg.parent.mkdir()
    mine = b"# mine\r\n[default]\r\nregion = eu-west-1\r\n\r\n[profile  other ]\r\nregion=x  ; odd\r\n"
    real = tmp_path / "dotfiles" / "aws-config"  # a dotfiles manager's symlink stays a symlink
    real.parent.mkdir()
    real.write_bytes(mine)
    cfg.symlink_to(real)
    r = bridge(home, "configure", "--sso")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["added sso-session bridge", "added profile sandbox-Admin",
                                     "added profile sandbox-ReadOnly", "added profile 210987654321-Deploy",
                                     "added services bridge-endpoints"]
    assert "use: aws sso login --sso-session bridge && aws --profile sandbox-Admin" in r.stderr
    assert cfg.is_symlink()
    written = real.read_bytes()
    expected = ssoconfig.sso_config_text(fake.url, GRANTS, region="eu-central-1")  # the bridge's region
    assert written == mine + b"\r\n" + expected.replace("\n", "\r\n").encode()
    again = bridge(home, "configure", "--sso")
    assert again.returncode == 0 and real.read_bytes() == written, again.stderr
    assert again.stdout.splitlines()[0] == "replaced sso-session bridge"
    # another session name and region: its own sso-session and services sections; the profiles (named by
    # role) are the bridge's, so they move to the new session
    r = bridge(home, "configure", "--sso", "--session-name", "work", "--region", "ap-south-1")
    text = real.read_bytes().decode()
    assert r.returncode == 0 and text.startswith(mine.decode() + "\r\n[sso-session bridge]\r\n"), r.stderr
    assert "[sso-session work]" in text and "[services work-endpoints]" in text
    assert text.count("sso_session = work\r\n") == 3 and "sso_session = bridge" not in text
    # someone else's section of a name the bridge would write: nothing is changed, a clear message
    before = mine + b"\r\n[profile sandbox-ReadOnly]\r\nregion = us-west-1\r\n"
    real.write_bytes(before)
    r = bridge(home, "configure", "--sso")
    assert r.returncode == 1 and real.read_bytes() == before
    assert "already has [profile sandbox-ReadOnly], not written by `bridge configure --sso`; nothing was changed" \
        in r.stderr
    bad = bridge(home, "configure", "--sso", "--session-name", "my session")
    assert bad.returncode == 1 and "session name 'my session'" in bad.stderr


# ---- exec -----------------------------------------------------------------------------------

SHOW = "import os, sys; print(os.environ['AWS_ACCESS_KEY_ID'], os.environ['AWS_REGION'], " \
       "os.environ.get('AWS_PROFILE'), os.environ['AWS_CREDENTIAL_EXPIRATION']); sys.exit(3)"


def test_exec_runs_the_command_with_credentials_and_its_exit_status(home: dict[str, str]) -> None:
    r = bridge({**home, "AWS_PROFILE": "stale", "AWS_ACCESS_KEY_ID": "AKIASTALE"}, "exec", "--role",
               "sandbox/ReadOnly", "--", sys.executable, "-c", SHOW)
    assert r.returncode == 3, r.stderr
    key, region, profile, expiration = r.stdout.split()
    assert (key, region, profile) == ("ASIAREADONLY", "eu-central-1", "None")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expiration)
    missing = bridge(home, "exec", "--role", "sandbox/ReadOnly", "--", "no-such-program-xyz")
    assert missing.returncode == 127 and "cannot run 'no-such-program-xyz'" in missing.stderr
    assert bridge(home, "exec", "--role", "sandbox/ReadOnly").returncode == 2  # no command: usage error


def test_exec_refresh_serves_credentials_and_forwards_signals(home: dict[str, str], fake: FakeBridge) -> None:
    child = ("import json, os, signal, sys, urllib.request\n"
             "assert 'AWS_ACCESS_KEY_ID' not in os.environ\n"
             "req = urllib.request.Request(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'],"
             " headers={'Authorization': os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN']})\n"
             "print(json.load(urllib.request.urlopen(req))['AccessKeyId'], flush=True)\n"
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
             "print('ready', flush=True)\n"
             "signal.alarm(60)\n"  # a bound if the signal never comes: SIGALRM ends it
             "signal.pause()\n")
    p = subprocess.Popen([sys.executable, "-c", RUN, "exec", "--role", "sandbox/Admin", "--refresh", "--",
                          sys.executable, "-c", child], env=home, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    assert [line.strip() for line in read_lines(p.stdout, 2)] == ["ASIAADMIN", "ready"]
    p.send_signal(signal.SIGTERM)  # to bridge, which passes it on
    assert p.wait(30) == 7, p.stderr.read() if p.stderr else ""


# ---- the picker ------------------------------------------------------------------------------


def test_picker_keys_and_filter() -> None:
    assert list(picker.keys("ab\x1b[A\x1bOB\x1b[1;5A\r\x7f\x1b\x03")) == \
        ["a", "b", picker.UP, picker.DOWN, picker.UP, picker.ENTER, picker.BACKSPACE, picker.CANCEL, picker.CANCEL]
    p = picker.Picker(["sandbox/Admin", "sandbox/ReadOnly", "prod/Deploy"])
    assert p.press(picker.UP) is None and p.cursor == 2  # wraps around
    for ch in "SAND read":
        p.press(ch)
    assert p.matches == [1] and p.press(picker.ENTER) == 1
    p.press(picker.CLEAR)
    for ch in "zzz":
        p.press(ch)
    assert p.matches == [] and p.press(picker.ENTER) is None and "nothing matches" in p.lines("Role:")[-1]
    with pytest.raises(picker.Cancelled):
        p.press(picker.CANCEL)


class Pty:
    """A command on a pseudo-terminal: write keys, wait for output."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, env={**env, "TERM": "xterm", "COLUMNS": "100", "LINES": "30"}, cwd=ROOT,
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.output = ""

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            if m := re.search(pattern, self.output, re.S):
                return m
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not in {self.output!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.output += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the other side closed
                    assert re.search(pattern, self.output), f"{pattern!r} not in {self.output!r}"

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self) -> int:
        status = self.proc.wait(30)
        with contextlib.suppress(OSError):
            while select.select([self.master], [], [], 0.2)[0]:
                data = os.read(self.master, 4096)
                if not data:
                    break
                self.output += data.decode(errors="replace")
        os.close(self.master)
        return status


def test_exec_without_role_on_a_terminal_picks_by_typing_and_arrows(home: dict[str, str]) -> None:
    show = "import os; print('KEY=' + os.environ['AWS_ACCESS_KEY_ID'])"
    t = Pty([sys.executable, "-c", RUN, "exec", "--", sys.executable, "-c", show], home)
    t.expect(r"Role:.*> sandbox/Admin +Sandbox admin +\(max 12 h\)")
    t.expect(r"\(3 of 3; type to filter")
    t.send("sand")
    t.expect(r"\(2 of 3")
    t.send("\x1b[B")  # arrow down: the second match
    t.send("\r")
    t.expect(r"KEY=ASIAREADONLY")
    assert t.wait() == 0
    assert "Role: sandbox/ReadOnly (arn:aws:iam::123456789012:role/ReadOnly)" in t.output


def test_picker_filter_then_enter_and_escape(home: dict[str, str]) -> None:
    t = Pty([sys.executable, "-c", RUN, "credential-process"], home)
    t.expect(r"\(3 of 3")
    t.send("deploy")
    t.expect(r"\(1 of 3")
    t.send("\r")
    t.expect(r'"AccessKeyId": "ASIADEPLOY"')
    assert t.wait() == 0
    t = Pty([sys.executable, "-c", RUN, "console", "--print-url"], home)
    t.expect(r"\(3 of 3")
    t.send("\x1b")
    assert t.wait() == 130 and "bridge: no role chosen" in t.output


# ---- credential-process: the local cache and the recheck bound --------------------------------------


def _age_cache(tmp_path: Path, seconds: float) -> Path:
    (cache,) = (tmp_path / "cache" / "federation-bridge").glob("creds-*.json")
    doc = json.loads(cache.read_text())
    doc["CheckedAt"] = doc.get("CheckedAt", time.time()) - seconds
    cache.write_text(json.dumps(doc))
    return cache


def test_credential_process_rechecks_the_role_past_the_bound(home: dict[str, str], fake: FakeBridge,
                                                             tmp_path: Path) -> None:
    """Past the recheck bound the cache is used only once the bridge lists the role for this login; a
    role no longer held ends it (the keys leave the disk); a bridge that does not answer is an error
    too, and the cache stays for when it is back."""
    admin = GRANTS[0]["role_arn"]
    assert bridge(home, "credential-process", "--role", admin).returncode == 0
    assert fake.issued == ["Admin"]
    assert bridge(home, "credential-process", "--role", admin).returncode == 0 and fake.grants_asked == 0
    _age_cache(tmp_path, 301)
    again = bridge(home, "credential-process", "--role", admin)
    assert again.returncode == 0 and json.loads(again.stdout)["AccessKeyId"] == "ASIAADMIN", again.stderr
    assert fake.grants_asked == 1 and fake.issued == ["Admin"]  # asked, nothing new issued
    cache = _age_cache(tmp_path, 301)
    fake.server.shutdown()  # the bridge goes away
    fake.server.server_close()
    gone = bridge(home, "credential-process", "--role", admin)
    assert gone.returncode == 1 and gone.stdout == "" and "cannot reach the bridge" in gone.stderr
    assert cache.exists()


def test_credential_process_stops_when_the_role_is_no_longer_held(home: dict[str, str], fake: FakeBridge,
                                                                  tmp_path: Path) -> None:
    admin = GRANTS[0]["role_arn"]
    assert bridge(home, "credential-process", "--role", admin).returncode == 0
    fake.withdrawn.add("Admin")
    assert bridge(home, "credential-process", "--role", admin).returncode == 0  # within the bound: not asked
    cache = _age_cache(tmp_path, 301)
    r = bridge(home, "credential-process", "--role", admin)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"bridge: {admin} is no longer one of your roles at {fake.url}: "
                        f"see `bridge roles --url {fake.url}`\n")
    assert not cache.exists()
