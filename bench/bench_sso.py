"""IAM Identity Center protocol: ``GetRoleCredentials`` for a cached role and ``ListAccounts`` for a user
with 1,000 accounts, beside ``/healthz`` on the same server in the same run (alternating rounds).

Starts redis-server, moto_server and `bridge serve` (deploy/gunicorn.conf.py) on free loopback ports,
gets an access token per user through the sso-oidc device flow (RegisterClient, StartDeviceAuthorization,
approval, CreateToken), then measures. Targets: GetRoleCredentials (cached) >= 0.5x /healthz req/s;
ListAccounts (1,000 accounts, maxResults=100) p50 <= 2x /healthz p50.

    .venv/bin/python bench/bench_sso.py [--seconds 5] [--rounds 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
from _peers import free_port, wait  # noqa: E402 - bench/ is on sys.path when run
from bench_credentials import load, pct  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "BRIDGE_ACCESS_LOG": "0", "PYTHONPATH": str(ROOT)}  # this checkout's bridge, whatever the venv has
ACCOUNTS = [f"{100000000000 + i:012d}" for i in range(1000)]


def token_for(base: str, user: str) -> str:
    s = requests.Session()
    r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
    state = re.search(r"state=([\w-]+)", r.headers["location"])
    assert state
    s.post(f"{base}/callback/dev", data={"state": state[1], "user": user}, timeout=10)
    r = requests.post(f"{base}/sso/client/register", json={"clientName": "bench", "clientType": "public"},
                      timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    reg = r.json()
    auth = {"clientId": reg["clientId"], "clientSecret": reg["clientSecret"]}
    d = requests.post(f"{base}/sso/device_authorization", json={**auth, "startUrl": base}, timeout=10).json()
    page = s.get(f"{base}/device", params={"user_code": d["userCode"]}, timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]  # type: ignore[index]
    s.post(f"{base}/device", data={"csrf_token": csrf, "user_code": d["userCode"], "decision": "approve",
                                   "confirm": "yes"}, timeout=10)
    t = requests.post(f"{base}/sso/token", json={**auth, "grantType": "urn:ietf:params:oauth:grant-type:device_code",
                                                  "deviceCode": d["deviceCode"]}, timeout=10).json()
    return str(t["accessToken"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-sso-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        rport, sport, bport = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
                                       "--port", str(rport), "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                      stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                                       str(sport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        subprocess.run([sys.executable, "-m", "bridge", "keys", "generate", "--dir", str(tmp / "keys")],
                       check=True, stdout=subprocess.DEVNULL, env=ENV)
        config = {
            "base_url": f"http://127.0.0.1:{bport}", "listen": f"127.0.0.1:{bport}", "insecure_dev_login": True,
            "log_level": "WARNING", "rate_limits": {"sign_in_per_minute": 0, "credentials_per_minute": 0,
                                                    "device_per_minute": 0, "device_code_per_minute": 0},
            "redis": {"url": f"redis://127.0.0.1:{rport}/0"},
            "issuer": {"url": "https://bridge.example.com", "keys_dir": str(tmp / "keys")},
            "aws": {"sts_endpoint_url": f"http://127.0.0.1:{sport}"},
            "connectors": [{"id": "dev", "type": "dev", "users": [
                {"subject": "alice", "email": "alice@example.com", "groups": ["aws-admins"], "mfa": True},
                {"subject": "bob", "email": "bob@example.com", "groups": ["many"], "mfa": True}]}],
            "mapping": {
                "accounts": {a: {"label": f"Account {i:04d}"} for i, a in enumerate(ACCOUNTS)},
                "rules": [
                    {"name": "admins", "match": {"group": "aws-admins"},
                     "grants": [{"role_arn": "arn:aws:iam::123456789012:role/Admin", "source_identity": "{email}",
                                 "tags": {"Email": "{email}"}}]},
                    {"name": "many", "match": {"group": "many"},
                     "grants": [{"role_arn": f"arn:aws:iam::{a}:role/ReadOnly"} for a in ACCOUNTS]}]},
        }
        path = tmp / "bench-sso.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        procs.append(subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--config", str(path),
                                       "--workers", str(args.workers)], env=ENV,
                                      stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{bport}"
        wait(f"{base}/healthz")
        wait(f"http://127.0.0.1:{sport}/")
        alice, bob = token_for(base, "alice"), token_for(base, "bob")

        def health(s: requests.Session) -> bool:
            return s.get(f"{base}/healthz", timeout=30).status_code == 200

        def role_credentials(s: requests.Session) -> bool:
            r = s.get(f"{base}/sso/federation/credentials", params={"account_id": "123456789012",
                                                                    "role_name": "Admin"},
                      headers={"x-amz-sso_bearer_token": alice}, timeout=30)
            return r.status_code == 200 and "sessionToken" in r.text

        def list_accounts(s: requests.Session) -> bool:
            r = s.get(f"{base}/sso/assignment/accounts", params={"max_result": "100"},
                      headers={"x-amz-sso_bearer_token": bob}, timeout=30)
            return r.status_code == 200 and len(r.json()["accountList"]) == 100

        assert role_credentials(requests.Session()) and list_accounts(requests.Session())  # warm, fill the cache
        results: dict[str, list[tuple[float, list[float], int]]] = {
            "healthz": [], "get_role_credentials_cached": [], "list_accounts_1000": []}
        for _ in range(args.rounds):
            results["healthz"].append(load(health, args.clients, args.seconds))
            results["get_role_credentials_cached"].append(load(role_credentials, args.clients, args.seconds))
            results["list_accounts_1000"].append(load(list_accounts, args.clients, args.seconds))
        print(f"{os.cpu_count()} cores; gunicorn workers={args.workers}; {args.clients} client threads; "
              f"{args.rounds} alternating rounds x {args.seconds}s")
        rps, p50 = {}, {}
        for kind, runs in results.items():
            rps[kind] = statistics.median(r[0] for r in runs)
            lat = [x for r in runs for x in r[1]]
            p50[kind] = pct(lat, 50)
            print(f"{kind:30s} {rps[kind]:8.1f} req/s  p50 {p50[kind]:7.2f} ms  p99 {pct(lat, 99):7.2f} ms  "
                  f"errors {sum(r[2] for r in runs)}")
        ratio = rps["get_role_credentials_cached"] / rps["healthz"]
        lat_ratio = p50["list_accounts_1000"] / p50["healthz"]
        for kind in results:
            print(f"BENCH sso_{kind}_rps {rps[kind]:.1f} req/s")
        print(f"BENCH sso_get_role_credentials_cached_to_healthz {ratio:.2f} ratio (target >= 0.5)")
        print(f"BENCH sso_list_accounts_1000_p50_to_healthz_p50 {lat_ratio:.2f} ratio (target <= 2)")
        return 0 if ratio >= 0.5 and lat_ratio <= 2 else 1
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
