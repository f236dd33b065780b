"""CLI login by device code (RFC 8628) and the developer CLI, each route proven with boto3 against the STS."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.conftest import ACCOUNT
from tests.integration.helpers import TestClock, dev_login, portal_json
from tests.waits import read_lines

pytestmark = pytest.mark.integration
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
WANT = f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice@example.com"
BIN = Path(sys.executable).parent


@pytest.fixture
def bridge(live_bridge, make_settings) -> tuple[str, Any]:  # type: ignore[no-untyped-def]
    settings = make_settings(cli={"poll_interval": 1})
    return live_bridge(settings), settings


def start(base: str, client_id: str = "bridge-cli") -> dict[str, Any]:
    r = requests.post(f"{base}/oauth/device_authorization", data={"client_id": client_id}, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def poll(base: str, device_code: str) -> requests.Response:
    return requests.post(f"{base}/oauth/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                                      "client_id": "bridge-cli", "device_code": device_code},
                         timeout=10)


def decide(s: requests.Session, base: str, user_code: str, decision: str = "approve") -> requests.Response:
    page = s.get(f"{base}/device", params={"user_code": user_code}, timeout=10)
    assert 'id="device-client">bridge-cli<' in page.text and user_code in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]  # type: ignore[index]
    return s.post(f"{base}/device", data={"csrf_token": csrf, "user_code": user_code, "decision": decision,
                                          "confirm": "yes"}, timeout=10)


def test_device_flow_states(bridge, live_bridge, strict_sts_peer, moto_url) -> None:
    base, settings = bridge
    clock = TestClock()
    live_bridge.app.extensions["bridge"].device.clock = clock
    d = start(base)
    assert re.fullmatch(r"[B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4}", d["user_code"])
    assert d["verification_uri"] == f"{base}/device" and d["interval"] == 1
    assert poll(base, d["device_code"]).json()["error"] == "authorization_pending"
    r = poll(base, d["device_code"])  # immediately again: too fast
    assert r.status_code == 400 and r.json()["error"] == "slow_down"
    clock.advance(1.1)  # the interval grew by 5 s with slow_down: 1 s is too fast now (and adds 5 more)
    assert poll(base, d["device_code"]).json()["error"] == "slow_down"
    clock.advance(11.1)  # 1 + 5 + 5
    assert poll(base, d["device_code"]).json()["error"] == "authorization_pending"
    s = dev_login(base, "alice")
    assert "Approved" in decide(s, base, d["user_code"]).text
    r = poll(base, d["device_code"])
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer", r.text
    token = r.json()["access_token"]
    assert poll(base, d["device_code"]).json()["error"] == "invalid_grant"  # the code works once
    # The token is the bridge's own, stored only hashed.
    dump = b"".join(v for k in redis.Redis.from_url(settings.redis.url).scan_iter(
        match=f"{settings.redis.key_prefix}*") if (v := redis.Redis.from_url(settings.redis.url).dump(k)))
    assert token.encode() not in dump
    auth = {"Authorization": f"Bearer {token}"}
    grants = requests.get(f"{base}/api/v1/grants", headers=auth, timeout=10).json()["grants"]
    gid = next(g["id"] for g in grants if g["role_arn"] == ADMIN)
    creds = requests.post(f"{base}/api/v1/credentials/{gid}", headers=auth, timeout=30).json()
    from tests.integration.helpers import caller_arn

    assert caller_arn(moto_url, creds) == WANT
    # Signing out in the browser revokes the CLI token it approved.
    csrf = portal_json(s, base)["csrf_token"]
    s.post(f"{base}/logout", data={"csrf_token": csrf}, timeout=10)
    r = requests.get(f"{base}/api/v1/grants", headers=auth, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "not_signed_in"


def test_device_denied_expired_and_unknown(bridge) -> None:
    base, settings = bridge
    s = dev_login(base, "alice")
    d = start(base)
    decide(s, base, d["user_code"], "deny")
    assert poll(base, d["device_code"]).json()["error"] == "access_denied"
    # The user code works once: approving it again is refused with a clear page.
    page = s.get(f"{base}/device", params={"user_code": d["user_code"]}, timeout=10)
    assert 'id="device-unknown"' in page.text
    # An expired code (what Redis' clock does after device_code_ttl).
    d2 = start(base)
    r = redis.Redis.from_url(settings.redis.url)
    (key,) = [k for k in r.scan_iter(match=f"{settings.redis.key_prefix}device:*")]
    doc = json.loads(r.get(key))
    doc["expires_at"] = int(time.time()) - 1
    r.set(key, json.dumps(doc), keepttl=True)
    assert poll(base, d2["device_code"]).json()["error"] == "expired_token"
    assert poll(base, "made-up").json()["error"] == "invalid_grant"
    assert requests.post(f"{base}/oauth/device_authorization", data={"client_id": "evil"},
                         timeout=10).json()["error"] == "invalid_client"
    assert requests.post(f"{base}/oauth/token", data={"grant_type": "password"},
                         timeout=10).json()["error"] == "unsupported_grant_type"


def test_device_page_needs_sign_in(bridge) -> None:
    base, _ = bridge
    r = requests.get(f"{base}/device?user_code=ABCD-EFGH", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "return_to=/device?user_code%3DABCD-EFGH" in r.headers["Location"]
    r = requests.get(f"{base}/api/v1/grants", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 401


# ---- the developer CLI, as a user runs it (subprocesses, a temporary HOME) ----------------


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XDG_", "BRIDGE_"))}
    env.update(HOME=str(tmp_path), PATH=f"{BIN}:{env.get('PATH', '')}", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=str(tmp_path / ".aws" / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / ".aws" / "credentials"))
    return env


def cli_login(base: str, env: dict[str, str]) -> requests.Session:
    """`bridge login`, approved in a dev sign-in; returns that browser session (the CLI login ends with it)."""
    p = subprocess.Popen([str(BIN / "bridge"), "login", "--url", base, "--no-browser"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    lines = read_lines(p.stderr, 2)
    code = re.search(r"code ([A-Z]{4}-[A-Z]{4})", "".join(lines))
    assert code, lines
    browser = dev_login(base, "alice")
    decide(browser, base, code[1])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    tokens = Path(env["HOME"]) / ".config" / "federation-bridge" / "tokens.json"
    assert oct(tokens.stat().st_mode & 0o777) == "0o600"
    return browser


def boto3_arn(env: dict[str, str], moto_url: str, profile: str | None = None) -> str:
    code = (f"import boto3; s = boto3.Session(profile_name={profile!r}); print(s.client('sts', "
            f"endpoint_url={moto_url!r}, region_name='us-east-1').get_caller_identity()['Arn'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_cli_routes_each_give_working_credentials(bridge, home, moto_url, strict_sts_peer, bridge_logs) -> None:
    base, _ = bridge
    cli_login(base, home)
    bridge_bin = str(BIN / "bridge")
    # (1) env lines, evaluated by a real shell
    out = subprocess.run(["bash", "-c", f'eval "$({bridge_bin} env --url {base} --role {ADMIN})" && '
                          f"{sys.executable} -c \"import boto3; print(boto3.client('sts', endpoint_url='{moto_url}')"
                          ".get_caller_identity()['Arn'])\""], env=home, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == WANT, out.stderr[-2000:]
    # (3) configure writes credential_process profiles; unrelated profiles stay byte for byte
    cfg = Path(home["AWS_CONFIG_FILE"])
    cfg.parent.mkdir(parents=True)
    mine = "[default]\nregion = eu-west-1 ; keep me\n\n[profile other]\nrole_arn = x\n"
    cfg.write_text(mine)
    out = subprocess.run([bridge_bin, "configure", "--url", base, "--region", "us-east-1"], env=home,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert cfg.read_text().startswith(mine) and "[profile sandbox-Admin]" in cfg.read_text()
    assert f"credential_process = {bridge_bin} credential-process --url {base} --role {ADMIN}" in cfg.read_text()
    assert boto3_arn(home, moto_url, profile="sandbox-Admin") == WANT
    # asked before overwriting: answering "n" keeps the file as it is
    before = cfg.read_text()
    out = subprocess.run([bridge_bin, "configure", "--url", base], env=home, input="n\nn\n",
                         capture_output=True, text=True, timeout=60)
    assert "exists. Replace it?" in out.stdout and cfg.read_text() == before
    # credential_process output and its local cache: the second run does not reach the bridge
    issued = bridge_logs.text.count("credentials_issued")
    for _ in range(2):
        out = subprocess.run([bridge_bin, "credential-process", "--url", base, "--role", ADMIN], env=home,
                             capture_output=True, text=True, timeout=60)
        doc = json.loads(out.stdout)
        assert doc["Version"] == 1 and set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken",
                                                    "Expiration"}
    assert bridge_logs.text.count("credentials_issued") == issued  # both served from the local cache
    # (4) the local container-credentials endpoint
    p = subprocess.Popen([bridge_bin, "local-server", "--url", base, "--role", ADMIN], env=home,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout is not None
        exports = dict(re.findall(r"export (\w+)=(\S+)", "".join(read_lines(p.stdout, 2))))
        assert requests.get(exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"], timeout=5).status_code == 403
        assert boto3_arn({**home, **exports}, moto_url) == WANT
    finally:
        p.terminate()
        p.wait(10)
    # logout: the token is revoked at the bridge and the local files are gone
    out = subprocess.run([bridge_bin, "logout", "--url", base], env=home, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    out = subprocess.run([bridge_bin, "credential-process", "--url", base, "--role", f"{ACCOUNT}/ReadOnly"],
                         env=home, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "bridge login" in out.stderr and "ASIA" not in out.stderr + out.stdout


def test_credential_process_without_login_is_a_clear_error(bridge, home) -> None:
    base, _ = bridge
    out = subprocess.run([str(BIN / "bridge"), "credential-process", "--url", base, "--role", ADMIN], env=home,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("bridge: not signed in to") and f"bridge login --url {base}" in out.stderr


def test_cli_console_prints_a_working_sign_in_url(bridge, home, federation_stub, bridge_logs) -> None:
    from tests.conftest import ROOT

    base, _ = bridge
    cli_login(base, home)
    run = [sys.executable, "-c", "import sys; from bridge.__main__ import main; sys.argv[0] = 'bridge'; main()",
           "console", "--url", base, "--role", "sandbox/Admin"]
    out = subprocess.run([*run, "--destination", "/s3/home", "--region", "eu-west-1", "--print-url"], env=home,
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    url = out.stdout.strip()
    assert url.startswith(f"{federation_stub.url}/federation?Action=login&")
    landed = requests.get(url, timeout=30)
    assert landed.status_code == 200 and "id='role'>Admin<" in landed.text
    assert federation_stub.signed_in[-1]["destination"] == \
        "https://eu-west-1.console.aws.amazon.com/s3/home?region=eu-west-1"
    assert url.split("SigninToken=")[1] not in bridge_logs.text
    bad = subprocess.run([*run, "--destination", "https://evil.example.com/", "--print-url"], env=home, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "destination is not allowed" in bad.stderr and not bad.stdout


# ---- bridge exec, end to end; the transcript in docs/cli-transcript.txt -------------------


def test_cli_login_roles_exec_against_the_sts(bridge, home, moto_url, strict_sts_peer) -> None:
    """login → roles → exec: a child sees the credentials and reaches the STS with them; exit status kept.

    With BRIDGE_WRITE_TRANSCRIPT=path the session is written there as a user would see it (commands,
    stdout and stderr), secrets masked: that is how docs/cli-transcript.txt is made.
    """
    base, _ = bridge
    bridge_bin = str(BIN / "bridge")
    transcript: list[str] = []

    def run(*args: str, show: str | None = None) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([bridge_bin, *args], env=home, capture_output=True, text=True, timeout=60)
        transcript.append(f"$ {show or 'bridge ' + ' '.join(args)}\n{out.stdout}{out.stderr}")
        return out

    # login, approved in "the browser" (a dev sign-in that ticks the confirmation)
    p = subprocess.Popen([bridge_bin, "login", "--url", base], env={**home, "DISPLAY": "", "BROWSER": ""},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    lines = read_lines(p.stderr, 4)
    code = re.search(r"code ([A-Z]{4}-[A-Z]{4})", "".join(lines))
    assert code, lines
    assert "No browser could be opened here" in lines[2] and f"Waiting for approval of {code[1]}" in lines[3]
    decide(dev_login(base, "alice"), base, code[1])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert re.search(r"Signed in to .* until \d{4}-\d\d-\d\d \d\d:\d\d .*\(in 1\d h \d+ min\)\.", err), err
    transcript.append(f"$ bridge login --url {base}\n{''.join(lines)}{err}")

    roles = run("roles")
    assert roles.returncode == 0 and re.search(r"^sandbox +\d{12} +Admin ", roles.stdout, re.M), roles.stdout
    sts = (f"import boto3; print(boto3.client('sts', endpoint_url={moto_url!r}).get_caller_identity()['Arn'])")
    got = run("exec", "--role", "sandbox/Admin", "--", sys.executable, "-c", sts,
              show=f'bridge exec --role sandbox/Admin -- python -c "{sts}"')
    assert got.returncode == 0 and got.stdout.strip() == WANT, got.stderr[-2000:]
    show_key = "import os; print(os.environ['AWS_ACCESS_KEY_ID'])"
    key = run("exec", "--role", "sandbox/Admin", "--", sys.executable, "-c", show_key,
              show=f'bridge exec --role sandbox/Admin -- python -c "{show_key}"')
    assert key.returncode == 0 and re.fullmatch(r"(ASIA|AKIA)[A-Z0-9]{12,}\n", key.stdout), key.stdout
    three = run("exec", "--role", "sandbox/Admin", "--", sys.executable, "-c", "raise SystemExit(3)",
                show='bridge exec --role sandbox/Admin -- python -c "raise SystemExit(3)"; echo "exit status $?"')
    assert three.returncode == 3
    transcript[-1] += "exit status 3\n"
    # --refresh: boto3 in the child asks the container-credentials endpoint
    refreshed = run("exec", "--role", "sandbox/Admin", "--refresh", "--", sys.executable, "-c", sts,
                    show=f'bridge exec --role sandbox/Admin --refresh -- python -c "{sts}"')
    assert refreshed.returncode == 0 and refreshed.stdout.strip() == WANT, refreshed.stderr[-2000:]
    if target := os.environ.get("BRIDGE_WRITE_TRANSCRIPT"):
        text = "\n".join(transcript)
        text = re.sub(r"\b(ASIA|AKIA)[A-Z0-9]{12,}", r"\1XXXXXXXXXXXXXXXX", text)
        Path(target).write_text(text.replace(sys.executable, "python").replace(str(BIN / "bridge"), "bridge"))


# ---- what a newcomer types first: the hints the CLI prints, run as printed ------------------------


def run_printed_aws(hint: str, env: dict[str, str]) -> str:
    """A printed ``aws --profile P sts get-caller-identity [--endpoint-url U]`` run as the AWS CLI runs it
    (botocore, the profile's own region and credential_process: nothing added), its caller ARN."""
    words = shlex.split(hint)
    assert words[:2] == ["aws", "--profile"] and words[3:5] == ["sts", "get-caller-identity"], words
    assert words[5:6] == ["--endpoint-url"] and len(words) == 7, f"the hint would call real AWS: {hint!r}"
    code = (f"import boto3; print(boto3.Session(profile_name={words[2]!r}).client('sts', endpoint_url={words[6]!r})"
            ".get_caller_identity()['Arn'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_configure_without_region_writes_the_bridges_region_and_the_printed_command_works(
        live_bridge, make_settings, home, strict_sts_peer) -> None:
    """Issue 23 #1: `bridge configure` without --region wrote profiles without one, and the command it
    printed failed with "You must specify a region"; with a stand-in STS the hint also went to real AWS."""
    base = live_bridge(make_settings(cli={"poll_interval": 1}, aws={"region": "eu-west-2"}))
    cli_login(base, home)
    out = subprocess.run([str(BIN / "bridge"), "configure", "--url", base], env=home, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    section = Path(home["AWS_CONFIG_FILE"]).read_text().split("[profile sandbox-Admin]\n")[1].split("\n[")[0]
    assert "region = eu-west-2" in section.splitlines(), section
    hint = out.stderr.strip().splitlines()[-1].removeprefix("use: ")
    assert hint == f"aws --profile sandbox-Admin sts get-caller-identity --endpoint-url {strict_sts_peer.url}"
    assert run_printed_aws(hint, home) == WANT


def test_roles_hint_and_exec_name_the_stand_in_sts(bridge, home, strict_sts_peer) -> None:
    """With a stand-in STS (the demo's moto), `bridge roles` prints a command that reaches it, and
    `bridge exec` and `bridge env` give AWS_ENDPOINT_URL_STS: the SDK in the child finds it unaided."""
    base, _ = bridge
    cli_login(base, home)
    bridge_bin = str(BIN / "bridge")
    roles = subprocess.run([bridge_bin, "roles", "--url", base], env=home, capture_output=True, text=True, timeout=60)
    assert roles.returncode == 0, roles.stderr
    assert roles.stderr.strip().splitlines()[-1] == ("use: bridge exec --role sandbox/Admin -- aws sts "
                                                     f"get-caller-identity --endpoint-url {strict_sts_peer.url}")
    sts = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"  # no endpoint_url of its own
    got = subprocess.run([bridge_bin, "exec", "--url", base, "--role", "sandbox/Admin", "--", sys.executable, "-c",
                          sts], env=home, capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and got.stdout.strip() == WANT, got.stderr[-2000:]
    exports = subprocess.run([bridge_bin, "env", "--url", base, "--role", "sandbox/Admin"], env=home,
                             capture_output=True, text=True, timeout=60)
    assert f"export AWS_ENDPOINT_URL_STS={strict_sts_peer.url}\n" in exports.stdout


def test_credential_process_stops_using_its_cache_once_the_login_is_revoked(bridge, home, strict_sts_peer,
                                                                            bridge_logs) -> None:
    """Issue 23 (friction): `credential-process` served its on-disk cache after the CLI login was revoked,
    until 15 minutes before the credentials expired. Past the recheck bound (5 min; the cache's last word
    from the bridge is aged here by editing it, as time passing would) it asks the bridge again."""
    base, _ = bridge
    browser = cli_login(base, home)

    def credential_process() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "bridge"), "credential-process", "--url", base, "--role", ADMIN], env=home,
                              capture_output=True, text=True, timeout=60)

    def age(seconds: float) -> None:
        doc = json.loads(cache.read_text())
        doc["CheckedAt"] = doc.get("CheckedAt", time.time()) - seconds
        cache.write_text(json.dumps(doc))

    first = credential_process()
    assert first.returncode == 0, first.stderr
    keys = json.loads(first.stdout)["AccessKeyId"]
    (cache,) = (Path(home["HOME"]) / ".cache" / "federation-bridge").glob("creds-*.json")
    issued = bridge_logs.text.count("credentials_issued")
    age(301)  # past the bound, the login still alive: the bridge says so, nothing new is issued
    again = credential_process()
    assert again.returncode == 0 and json.loads(again.stdout)["AccessKeyId"] == keys, again.stderr
    assert bridge_logs.text.count("credentials_issued") == issued
    assert time.time() - json.loads(cache.read_text())["CheckedAt"] < 60
    # The browser sign-in that approved the CLI login ends: so does the CLI login, at the bridge.
    browser.post(f"{base}/logout", data={"csrf_token": portal_json(browser, base)["csrf_token"]}, timeout=10)
    within = credential_process()  # within the bound the cache is still used (docs/security.md says so)
    assert within.returncode == 0 and json.loads(within.stdout)["AccessKeyId"] == keys
    age(301)
    late = credential_process()
    assert late.returncode == 1 and late.stdout == "", "credentials served after the revocation"
    assert "the bridge refused the CLI login" in late.stderr and f"bridge login --url {base}" in late.stderr
    assert not cache.exists()  # the keys are gone from disk too
    assert "ASIA" not in late.stderr
