"""A cached token exchange (RFC 8693, docs/apps-and-workloads.md) against /healthz, on the real `bridge serve`.

One `bridge serve` (2 gunicorn workers, credential cache on, rate limits on and never hit) on its own
redis-server and moto, an OIDC connector whose discovery and JWKS a stand-in IdP in this process serves, and
one registered app; an ID token signed here is exchanged once (filling the credential cache: the app's
credentials live 1 h, beyond the cache's refresh window), then `ab -k` drives interleaved rounds of
/healthz and the same exchange (bench/_peers.py). The subject token is verified with the cached JWKS: no
call to the IdP on the hot path (the stand-in counts them). Target: a cached exchange >= 0.5 x /healthz
req/s in the same run.

One gunicorn worker by default: with two, gunicorn's workers race to accept ab's 8 keep-alive connections
when a run starts, and in some runs one worker wins all of them — that run's req/s is then one process's,
half of a balanced run's, whichever kind it measures (the per-worker CPU shows it: ``--workers 2`` prints
how many runs went so). One worker has no such lottery: the ratio is what one process spends per request.
Each exchange round is compared with the /healthz rounds just before and after it (``_peers._bracketed``).

    .venv/bin/python bench/bench_exchange_served.py [--requests 2000] [--rounds 9] [--concurrency 8] [--workers 1]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import requests
from _peers import Stack, Target, bench, free_port, interleave, machine_line, parse_load, report, stub, target  # noqa: E402
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

TARGET = 0.5
KEY = RSAKey.generate_key(2048, parameters={"kid": "bench"})
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/{subject}/*"}]}


class Idp:
    """Discovery and JWKS only (the app's sign-in is not measured); counts what the bridge fetches."""

    def __init__(self) -> None:
        self.fetches = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                idp.fetches += 1
                doc: dict[str, Any] = KeySet([KEY]).as_dict() if self.path == "/jwks" else {
                    "issuer": idp.issuer, "jwks_uri": f"{idp.issuer}/jwks", "authorization_endpoint": f"{idp.issuer}/a",
                    "token_endpoint": f"{idp.issuer}/t"}
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def exchange_settings(idp: Idp) -> dict[str, Any]:
    """The bridge's settings: one OIDC connector (``idp``), one rule, one app (bench/profile_credentials.py too)."""
    return {
        "connectors": [{"id": "corp", "type": "oidc", "issuer": idp.issuer, "client_id": "bridge",
                        "client_secret": "bench"}],
        "mapping": {"accounts": {"123456789012": {"alias": "sandbox", "roles": {"Photos": {}}}},
                    "rules": [{"name": "photos", "match": {"group": "photo-users"},
                               "grants": [{"account": "sandbox", "role": "Photos", "session_name": "{email}"}]}]},
        "apps": [{"client_id": "photos", "idp_audiences": {"corp": ["photos-spa"]}, "grants": ["sandbox/Photos"],
                  "max_duration": 3600, "session_policy": POLICY,
                  # ab replays one request, and a DPoP proof is single use: this measures the bearer exchange
                  # (a proof's check adds one ES256 verification and one Redis SET NX per exchange)
                  "dpop": "insecure_off",
                  "rate_limits": {"per_app_per_minute": 10_000_000, "per_user_per_minute": 10_000_000}}]}


def exchange_form(idp: Idp) -> dict[str, str]:
    """The token exchange's form: alice's ID token from ``idp`` (valid 3 h) for the app's one grant."""
    now = int(time.time())
    token = jwt.encode({"alg": "RS256", "kid": "bench"}, {
        "iss": idp.issuer, "sub": "00ualice", "aud": "photos-spa", "iat": now, "exp": now + 3 * 3600,
        "email": "alice@example.com", "email_verified": True, "groups": ["photo-users"]}, KEY)
    return {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "client_id": "photos",
            "subject_token": token, "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "audience": "sandbox/Photos"}


def main() -> int:
    args = parse_load(requests=2000, rounds=9, workers=1)
    idp = Idp()
    with Stack("exchange-served") as stack:
        port = free_port()
        server = stack.serve(stack.config(port, **exchange_settings(idp)), workers=args.workers)
        form = exchange_form(idp)
        body = stack.tmp / "exchange.form"
        body.write_text(urlencode(form))
        first = requests.post(f"{server.base}/oauth/token", data=form, timeout=30)
        assert first.status_code == 200 and first.json()["credentials"]["SessionToken"], first.text[:300]
        targets = [Target("healthz", f"{server.base}/healthz"),
                   Target("cached_exchange", f"{server.base}/oauth/token", {}, body)]
        for _ in range(4 * args.workers):  # each worker reads discovery and keys once, before the rounds
            assert requests.post(f"{server.base}/oauth/token", data=form, timeout=30).status_code == 200
        fetched = idp.fetches
        runs = interleave(server, targets, rounds=args.rounds, requests_per_round=args.requests,
                          concurrency=args.concurrency, rc=stack.redis())
        machine_line(f"gunicorn gthread workers={args.workers}; ab -k -c {args.concurrency}; {args.rounds} "
                     f"interleaved rounds x {args.requests} requests per kind")
        print("rate limits on (counted in Redis on every request, never refused); credential cache on, filled "
              "by the first exchange")
        stub("sts", "moto_server on loopback instead of AWS STS", "no AWS account in a benchmark; cached: no STS call")
        stub("upstream-idp", "discovery and JWKS served by this process", "only key fetches are needed; counted")
        ratios = report("served", runs)
        # Each worker fetched discovery and keys once, before the rounds: nothing more while measured.
        bench("served_exchange_idp_fetches_after_warmup", idp.fetches - fetched, "requests")
        bench("served_exchange_to_healthz_target", TARGET, "ratio")
        errors = sum(r.errors for rs in runs.values() for r in rs)
        target("cached exchange / healthz req/s", ratios["cached_exchange"], TARGET)
        return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
