"""IAM Identity Center protocol: ``GetRoleCredentials`` for a cached role and ``ListAccounts`` for a user
with 1,000 accounts, beside ``/healthz``, on the real `bridge serve` (rate limits on, never hit).

One `bridge serve` (deploy/gunicorn.conf.py, 2 workers) on its own redis-server and moto; an access token
per user through the sso-oidc device flow (RegisterClient, StartDeviceAuthorization, approval,
CreateToken); then `ab -k` in interleaved rounds (bench/_peers.py: req/s, p50, server CPU and Redis
round trips per request, ratios). Targets: GetRoleCredentials (cached) >= 0.5 x /healthz req/s;
ListAccounts (1,000 accounts, maxResults=100) p50 <= 2 x /healthz p50.

    .venv/bin/python bench/bench_sso.py [--requests 2000] [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import re
import sys

import requests
from _peers import Stack, Target, bench, free_port, interleave, machine_line, parse_load, report, stub, target  # noqa: E402

ACCOUNTS = [f"{100000000000 + i:012d}" for i in range(1000)]
TARGET_RPS, TARGET_P50 = 0.5, 2.0


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
    args = parse_load(requests=2000, rounds=3)
    with Stack("sso") as stack:
        port = free_port()
        server = stack.serve(stack.config(
            port,
            connectors=[{"id": "dev", "type": "dev", "users": [
                {"subject": "alice", "email": "alice@example.com", "groups": ["aws-admins"], "mfa": True},
                {"subject": "bob", "email": "bob@example.com", "groups": ["many"], "mfa": True}]}],
            mapping={"accounts": {a: {"label": f"Account {i:04d}"} for i, a in enumerate(ACCOUNTS)},
                     "rules": [{"name": "admins", "match": {"group": "aws-admins"},
                                "grants": [{"role_arn": "arn:aws:iam::123456789012:role/Admin",
                                            "source_identity": "{email}", "tags": {"Email": "{email}"}}]},
                               {"name": "many", "match": {"group": "many"},
                                "grants": [{"role_arn": f"arn:aws:iam::{a}:role/ReadOnly"} for a in ACCOUNTS]}]}),
            workers=args.workers)
        base = server.base
        alice, bob = token_for(base, "alice"), token_for(base, "bob")
        creds = Target("get_role_credentials_cached",
                       f"{base}/sso/federation/credentials?account_id=123456789012&role_name=Admin",
                       {"x-amz-sso_bearer_token": alice})
        accounts = Target("list_accounts_1000", f"{base}/sso/assignment/accounts?max_result=100",
                          {"x-amz-sso_bearer_token": bob})
        r = requests.get(creds.url, headers=creds.headers, timeout=30)  # fills the cache; checks the answer
        assert r.status_code == 200 and "sessionToken" in r.text, (r.status_code, r.text[:300])
        r = requests.get(accounts.url, headers=accounts.headers, timeout=30)
        assert r.status_code == 200 and len(r.json()["accountList"]) == 100, (r.status_code, r.text[:300])
        runs = interleave(server, [Target("healthz", f"{base}/healthz"), creds, accounts], rounds=args.rounds,
                          requests_per_round=args.requests, concurrency=args.concurrency, rc=stack.redis())
        machine_line(f"gunicorn gthread workers={args.workers}; ab -k -c {args.concurrency}; {args.rounds} "
                     f"interleaved rounds x {args.requests} requests per kind")
        print("rate limits on (counted in Redis on every request, never refused)")
        stub("sts", "moto_server on loopback instead of AWS STS",
             "no AWS account in a benchmark; the cached GetRoleCredentials makes no STS call")
        stub("upstream-idp", "the dev connector for the sign-in before each device approval",
             "sign-in is not measured here")
        ratios = report("sso", runs)
        bench("sso_list_accounts_1000_p50_to_healthz_p50", round(ratios["list_accounts_1000_p50"], 3), "ratio")
        bench("sso_get_role_credentials_target", TARGET_RPS, "ratio")
        bench("sso_list_accounts_p50_target", TARGET_P50, "ratio")
        errors = sum(x.errors for rs in runs.values() for x in rs)
        target("GetRoleCredentials (cached) / healthz req/s", ratios["get_role_credentials_cached"], TARGET_RPS)
        target("ListAccounts (1,000 accounts) p50 / healthz p50", ratios["list_accounts_1000_p50"], TARGET_P50,
               at_most=True)
        return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
