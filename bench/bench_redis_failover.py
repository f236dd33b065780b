"""Failover under load: the bridge on a Sentinel group and on a Redis Cluster, the master killed mid-traffic.

For each topology (tests/redis_topologies.py: a master + replica + three sentinels, down-after 1 s;
3 masters + 3 replicas, node timeout 1 s), on loopback:

  1. a bridge (the real app, werkzeug threaded server) with the dev connector, ``mode: sentinel`` or
     ``mode: cluster``, signed in to Redis as the ACL user of docs/operations.md (created on every node; any ACL
     refusal is reported); ``--users`` users sign in (their sessions replicate before the kill);
  2. ``--clients`` threads load it for ``--seconds``: each signed-in user reads its portal (JSON) in
     a loop and checks the identity is its own; one more thread signs new users in (writes);
  3. ``--kill-at`` seconds in, the master is SIGKILLed (Sentinel: the master; Cluster: the master
     holding the first user's session);
  4. after the load, every user signed in before the kill reads its portal once more.

Figures (``BENCH <name> <value> <unit>``):

  redis_failover_<topo>_error_window   seconds from the kill to the end of the last failed request
  redis_failover_<topo>_errors         failed requests (503 or a lost connection), all inside it
  redis_failover_<topo>_served_wrong   answers naming another user than the one signed in: 0
  redis_failover_<topo>_sessions_lost  sessions signed in before the kill that did not survive: 0

    .venv/bin/python bench/bench_redis_failover.py [--seconds 12] [--kill-at 3] [--clients 6]
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.config import settings_from_dict  # noqa: E402
from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key  # noqa: E402
from tests.redis_topologies import (  # noqa: E402
    Server,
    add_acl_user,
    free_port,
    start_cluster,
    start_sentinel_group,
)


@dataclass
class Tally:
    ok: int = 0
    errors: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each failed request
    wrong: list[str] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)  # of the failed requests (0: no answer)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, start: float, code: int, got: str | None, expected: str) -> None:
        """One answer: right (200 naming ``expected``), wrong (200 naming someone else) or failed."""
        with self.lock:
            if code == 200 and got == expected:
                self.ok += 1
            elif code == 200:
                self.wrong.append(f"{expected} saw {got}")
            else:
                self.errors.append((start, time.monotonic()))
                self.codes[code] += 1


def settings(redis_section: dict[str, Any], keys: Path, users: int) -> Any:
    return settings_from_dict({
        "base_url": "http://127.0.0.1:1", "secret_key": "bench", "insecure_dev_login": True, "log_level": "ERROR",
        "redis": {**redis_section, "key_prefix": "fo:", "socket_timeout": 1.0},
        "issuer": {"url": "https://bridge.example.com", "keys_dir": str(keys)},
        "aws": {"sts_endpoint_url": "http://127.0.0.1:1"},
        "rate_limits": {"sign_in_per_minute": 0, "credentials_per_minute": 0}, "audit": {"sink": "none"},
        "connectors": [{"id": "dev", "type": "dev", "users": [
            {"subject": f"u{i}", "email": f"u{i}@example.com", "groups": ["g"]} for i in range(users + 1000)]}],
        "mapping": {"rules": [{"name": "g", "match": {"group": "g"},
                               "grants": [{"role_arn": "arn:aws:iam::123456789012:role/R"}]}]},
    })


class SignInFailed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"sign-in answered {code}")
        self.code = code


def sign_in(base: str, user: str) -> requests.Session:
    s = requests.Session()
    r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=5)
    state = re.search(r"state=([\w-]+)", r.headers.get("location", ""))
    if r.status_code != 302 or not state:
        raise SignInFailed(r.status_code)
    r = s.post(f"{base}/callback/dev", data={"state": state[1], "user": user}, allow_redirects=False, timeout=5)
    if r.status_code != 303:
        raise SignInFailed(r.status_code)
    return s


def whoami(s: requests.Session, base: str) -> tuple[int, str | None]:
    r = s.get(f"{base}/portal", headers={"Accept": "application/json"}, allow_redirects=False, timeout=5)
    return r.status_code, (r.json()["identity"]["email"] if r.status_code == 200 else None)


def run(topo: str, base_dir: Path, keys: Path, args: argparse.Namespace) -> dict[str, float]:
    from werkzeug.serving import make_server

    from bridge.runtime.app import create_app

    victim: Server
    if topo == "sentinel":
        group = start_sentinel_group(base_dir / topo)
        section: dict[str, Any] = {"mode": "sentinel", "url": "redis://bridge:bridge-pw@127.0.0.1/0",
                                   "sentinels": group.sentinel_addrs, "sentinel_master": group.name}
        stop, servers = group.stop, group.servers
    else:
        cluster = start_cluster(base_dir / topo)
        section = {"mode": "cluster", "url": cluster.url.replace("//", "//bridge:bridge-pw@")}
        stop, servers = cluster.stop, cluster.servers
    for node in servers:  # the bridge runs as the documented ACL user, on every node (ACLs are not replicated)
        add_acl_user(node.client(), "bridge", "bridge-pw", "fo:")
    try:
        app = create_app(settings(section, keys, args.users))
        port = free_port()
        srv = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        sessions = {f"u{i}@example.com": sign_in(base, f"u{i}") for i in range(args.users)}
        store = app.extensions["bridge"].store
        if topo == "sentinel":
            victim = group.master()
            wait_replicated(victim)
        else:
            first = next(iter(sessions.values()))
            shash = store.hash_id(first.cookies.get_dict()[next(iter(first.cookies.get_dict()))])
            victim = cluster.master_for(f"fo:session:{{{shash}}}")
            for m in cluster.masters():
                wait_replicated(m)
        tally = Tally()
        t0 = time.monotonic()
        end = t0 + args.seconds
        killed = [0.0]

        def reader(email: str, s: requests.Session) -> None:
            while time.monotonic() < end:
                start = time.monotonic()
                try:
                    code, got = whoami(s, base)
                except requests.RequestException:
                    code, got = 0, None
                tally.record(start, code, got, email)

        def writer() -> None:
            n = args.users
            while time.monotonic() < end:
                start = time.monotonic()
                user = f"u{n}"
                n += 1
                try:
                    s = sign_in(base, user)
                    code, got = whoami(s, base)
                except SignInFailed as e:
                    code, got = e.code, None
                except requests.RequestException:
                    code, got = 0, None
                tally.record(start, code, got, f"{user}@example.com")

        emails = list(sessions)
        threads = [threading.Thread(target=reader, args=(emails[i % len(emails)], sessions[emails[i % len(emails)]]))
                   for i in range(args.clients)] + [threading.Thread(target=writer)]
        for t in threads:
            t.start()
        time.sleep(max(0.0, t0 + args.kill_at - time.monotonic()))
        killed[0] = time.monotonic()
        victim.kill()
        for t in threads:
            t.join()
        window = max((e for _, e in tally.errors), default=killed[0]) - killed[0]
        before = [e for s, e in tally.errors if e < killed[0]]
        lost = 0
        for email, s in sessions.items():
            try:
                code, got = whoami(s, base)
            except requests.RequestException:
                code, got = 0, None
            if code != 200:
                lost += 1
            elif got != email:
                tally.wrong.append(f"after: {email} saw {got}")
        srv.shutdown()
        srv.server_close()
        refused = [e["object"] for node in servers if node.proc.poll() is None for e in node.client().acl_log()
                   if e["username"] == "bridge" and e["object"] != "client|setinfo"]
        for w in tally.wrong[:5]:
            print(f"  wrong: {w}", file=sys.stderr)
        return {"error_window": max(0.0, window), "errors": len(tally.errors), "errors_before_kill": len(before),
                "served_wrong": len(tally.wrong), "sessions_lost": lost, "ok": tally.ok, "acl_refused": len(refused),
                "codes": ", ".join(f"{n}× {c or 'no answer'}" for c, n in sorted(tally.codes.items()))}
    finally:
        stop()


def wait_replicated(master: Server, seconds: float = 10) -> None:
    """Until every replica of ``master`` has acknowledged its whole replication stream."""
    c = master.client()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = c.info("replication")
        offset = info.get("master_repl_offset", 0)
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        if replicas and all(int(r.get("offset", 0)) >= offset for r in replicas):
            return
        time.sleep(0.05)
    raise RuntimeError("replicas did not catch up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--kill-at", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--topology", choices=["sentinel", "cluster", "both"], default="both")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log
    base_dir = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    keys = base_dir / "keys"
    generate_key(keys, "RS256")
    generate_saml_key(keys)
    generate_cache_key(keys)
    for topo in (["sentinel", "cluster"] if args.topology == "both" else [args.topology]):
        fig = run(topo, base_dir, keys, args)
        print(f"{topo}: {fig['ok']} right answers, {fig['errors']} failed "
              f"({fig['errors_before_kill']} before the kill; {fig['codes']}); "
              f"ACL refusals: {fig['acl_refused']}", flush=True)
        print(f"BENCH redis_failover_{topo}_error_window {fig['error_window']:.2f} s")
        print(f"BENCH redis_failover_{topo}_errors {fig['errors']} requests")
        print(f"BENCH redis_failover_{topo}_served_wrong {fig['served_wrong']} requests")
        print(f"BENCH redis_failover_{topo}_sessions_lost {fig['sessions_lost']} sessions", flush=True)


if __name__ == "__main__":
    main()
