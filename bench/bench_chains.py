"""A fresh issue through a hub (two STS calls: AssumeRoleWithWebIdentity into the hub, then a signed
sts:AssumeRole into the target) against a fresh direct issue (one call), on the same local STS.

Builds the bridge's own CredentialIssuer (mint + StsGateway + audit to a file, no credential cache: every
issue is fresh) in this process against a moto_server of its own on a free loopback port, and runs the
two kinds in interleaved rounds (so machine noise hits both alike). Target: a two-hop issue costs at
most 2.2 x a one-hop issue (the second call is one more STS round trip and a SigV4 signature; nothing
else may cost).

    .venv/bin/python bench/bench_chains.py [--rounds 7] [--issues 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _peers import free_port, stop_processes, stub, wait  # noqa: E402 - bench/ is on sys.path when run

from bridge.aws.sts import StsGateway
from bridge.config import settings_from_dict
from bridge.core.credcache import NoCache
from bridge.core.issuing import CredentialIssuer, IssuerConfig
from bridge.core.keysource import KeySource
from bridge.domain.identity import Identity
from bridge.keys.signing import generate_key, load_keyring
from bridge.mapping import GrantDefaults, decide
from bridge.telemetry.audit import Auditor, FileSink
from bridge.telemetry.metrics import Metrics

TARGET = 2.2
HUB = "arn:aws:iam::111111111111:role/BridgeHub"


def settings(keys: Path, sts: str, audit: Path) -> object:
    tags = {"Email": "{email}", "Department": "{claims.department}"}
    grant = {"source_identity": "{email}", "tags": tags, "transitive_tags": ["Department"]}
    return settings_from_dict({
        "base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
        "issuer": {"url": "https://bridge.example.com", "keys_dir": str(keys)},
        "aws": {"sts_endpoint_url": sts, "sts_max_attempts": 1},
        "audit": {"sink": "file", "path": str(audit)},
        "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "alice"}]}],
        "mapping": {
            "accounts": {"111111111111": {"alias": "hub", "roles": {"BridgeHub": {}}},
                         "210987654321": {"alias": "workloads", "roles": {"Developer": {"via": "hub/BridgeHub"}}},
                         "123456789012": {"alias": "sandbox", "roles": {"Admin": {}}}},
            "rules": [{"name": "devs", "match": {"group": "dev"}, "grants": [
                {"account": "sandbox", "role": "Admin", **grant}, {"account": "workloads", "role": "Developer",
                                                                   **grant}]}]},
    })


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--issues", type=int, default=40, help="per round and kind")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-chains-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        moto = Path(sys.executable).parent / "moto_server"
        procs.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        sts_url = f"http://127.0.0.1:{port}"
        wait(f"{sts_url}/")
        generate_key(tmp / "keys", "RS256")
        s = settings(tmp / "keys", sts_url, tmp / "audit.jsonl")
        sts = StsGateway(region="us-east-1", endpoint_url=sts_url, timeout=10, max_attempts=1)
        ring, problems = load_keyring(tmp / "keys")
        assert ring is not None, problems
        keys = KeySource(tmp / "keys", ring, interval=3600, clock=time.time)
        issuer = CredentialIssuer(IssuerConfig.from_settings(s), keys, sts, cache=NoCache(), metrics=Metrics(),
                                  auditor=Auditor(FileSink(tmp / "audit.jsonl"), fail_closed=True))
        alice = Identity(connector_id="dev", subject="alice-0001", issuer="dev", email="alice@example.com",
                         groups=("dev",), claims={"department": "Platform"})
        grants = {g.role_arn.rsplit("/", 1)[1]: g for g in decide(s.mapping, alice,  # type: ignore[attr-defined]
                                                                  GrantDefaults("sts.amazonaws.com")).grants}
        one, two = grants["Admin"], grants["Developer"]
        assert not one.chained and [h.role_arn for h in two.hubs] == [HUB]

        def issue_ms(grant: object) -> float:
            t0 = time.perf_counter()
            creds = issuer.issue_credentials(alice, grant, 3600)  # type: ignore[arg-type]
            elapsed = (time.perf_counter() - t0) * 1000
            assert creds.assumed_role_arn.endswith("/alice@example.com"), creds.assumed_role_arn
            return elapsed

        for g in (one, two):  # warm every code path once
            issue_ms(g)
        times: dict[str, list[float]] = {"one_hop": [], "two_hop": []}
        medians: dict[str, list[float]] = {"one_hop": [], "two_hop": []}
        for _ in range(args.rounds):
            for kind, g in (("one_hop", one), ("two_hop", two)):
                batch = [issue_ms(g) for _ in range(args.issues)]
                times[kind] += batch
                medians[kind].append(statistics.median(batch))

        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"{args.rounds} interleaved rounds x {args.issues} fresh issues per kind, in this process")
        stub("sts", "moto_server on loopback instead of AWS STS",
             "no AWS account in a benchmark; both kinds pay the same local round trip per STS call")
        ratio = statistics.median(b / a for a, b in zip(medians["one_hop"], medians["two_hop"], strict=True))
        for kind, lat in times.items():
            q = statistics.quantiles(lat, n=100)
            print(f"{kind:8s} p50 {statistics.median(lat):7.2f} ms  p99 {q[98]:7.2f} ms  issues {len(lat)}")
            print(f"BENCH chain_{kind}_p50 {statistics.median(lat):.2f} ms")
            print(f"BENCH chain_{kind}_p99 {q[98]:.2f} ms")
        print(f"BENCH chain_two_to_one_hop_ratio {ratio:.3f} ratio")
        print(f"BENCH chain_two_to_one_hop_target {TARGET:.1f} ratio")
        return 0 if ratio <= TARGET else 1
    finally:
        stop_processes(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
