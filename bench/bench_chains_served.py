"""A cached chained credential against a cached direct one and /healthz, on the real `bridge serve`.

One `bridge serve` (deploy/gunicorn.conf.py, 2 workers, credential cache on, rate limits on and never
hit) on its own redis-server and moto; signs in once through the dev connector, fills the cache for a
direct grant (sandbox/Admin) and a chained one (workloads/Developer through hub/BridgeHub), then drives
the server with `ab -k` in interleaved rounds of the three (bench/_peers.py: req/s, p50, server CPU per
request, Redis round trips per request, ratios). Target: a cached chained credential costs the same as
a cached direct one, both >= 0.5 x /healthz throughput in the same run.

    .venv/bin/python bench/bench_chains_served.py [--requests 3000] [--rounds 5] [--concurrency 8]
"""

from __future__ import annotations

import statistics
import sys

from _peers import (  # noqa: E402 - bench/ is on sys.path when run
    Stack,
    Target,
    bench,
    free_port,
    interleave,
    machine_line,
    parse_load,
    report,
    sign_in,
    stub,
    target,
)

TARGET = 0.5
GRANT = {"tags": {"Email": "{email}", "Department": "{claims.department}"}, "transitive_tags": ["Department"],
         "source_identity": "{email}"}


SETTINGS = {  # one user; a direct grant and a chained one (bench/profile_credentials.py --path chained too)
    "connectors": [{"id": "dev", "type": "dev", "users": [
        {"subject": "alice", "email": "alice@example.com", "name": "Alice Example", "groups": ["dev"],
         "claims": {"department": "Platform"}, "mfa": True}]}],
    "mapping": {"accounts": {"111111111111": {"alias": "hub", "roles": {"BridgeHub": {}}},
                             "210987654321": {"alias": "workloads", "roles": {"Developer": {"via": "hub/BridgeHub"}}},
                             "123456789012": {"alias": "sandbox", "roles": {"Admin": {}}}},
                "rules": [{"name": "devs", "match": {"group": "dev"},
                           "grants": [{"account": "sandbox", "role": "Admin", **GRANT},
                                      {"account": "workloads", "role": "Developer", **GRANT}]}]}}


def main() -> int:
    args = parse_load()
    with Stack("chains-served") as stack:
        port = free_port()
        server = stack.serve(stack.config(port, **SETTINGS), workers=args.workers)
        s, portal = sign_in(server.base, "alice")
        by_role = {g["role_arn"].rsplit("/", 1)[1]: g for g in portal["grants"]}
        direct, chained = by_role["Admin"], by_role["Developer"]
        assert not direct.get("hubs") and chained.get("hubs"), portal["grants"]
        headers = {"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"],
                   "Cookie": f"bridge_session={s.cookies.get('bridge_session')}"}
        body = stack.tmp / "empty"
        body.write_bytes(b"")
        targets = [Target("healthz", f"{server.base}/healthz"),
                   Target("cached_direct", f"{server.base}/credentials/{direct['id']}", headers, body),
                   Target("cached_chained", f"{server.base}/credentials/{chained['id']}", headers, body)]
        for t in targets[1:]:  # fill the cache; check the answer is credentials
            resp = s.post(t.url, headers=headers, timeout=30)
            assert resp.status_code == 200 and "SessionToken" in resp.text, (t.name, resp.status_code, resp.text[:200])
        runs = interleave(server, targets, rounds=args.rounds, requests_per_round=args.requests,
                          concurrency=args.concurrency, rc=stack.redis())
        machine_line(f"gunicorn gthread workers={args.workers}; ab -k -c {args.concurrency}; {args.rounds} "
                     f"interleaved rounds x {args.requests} requests per kind")
        print("rate limits on (counted in Redis on every request, never refused); credential cache on, filled "
              "before the measured rounds")
        stub("sts", "moto_server on loopback instead of AWS STS",
             "no AWS account in a benchmark; the cached figures make no STS call")
        stub("upstream-idp", "the dev connector for the one sign-in", "sign-in is not measured here")
        ratios = report("served", runs)
        chained_d = statistics.median(x.rps / y.rps for x, y in zip(runs["cached_chained"], runs["cached_direct"],
                                                                    strict=True))
        bench("served_cached_chained_to_direct_ratio", round(chained_d, 3), "ratio")
        bench("served_cached_to_healthz_target", TARGET, "ratio")
        errors = sum(r.errors for rs in runs.values() for r in rs)
        target("cached direct / healthz req/s", ratios["cached_direct"], TARGET)
        target("cached chained / healthz req/s", ratios["cached_chained"], TARGET)
        return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
