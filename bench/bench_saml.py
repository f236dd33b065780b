"""SAML throughput on one core: assertions minted+signed per second vs the machine's raw RSA-2048
signature rate (`openssl speed rsa2048`, same run), and upstream SAML responses validated per second.

Validation runs the production path: each response is new (forged before the clock starts) and its
assertion ID goes through the Redis replay cache (``Store.remember_once`` on a local redis-server,
started before this process pins itself to one core), as every sign-in does.

    .venv/bin/python bench/bench_saml.py [--seconds 3]

Target: minting within 2x of the raw signature rate, i.e. mint_to_openssl_ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: E402

from bridge.aws.assertion import SamlIssuer, mint_saml_response, signin_saml_endpoint  # noqa: E402
from bridge.config import SamlConnectorSettings  # noqa: E402
from bridge.domain.errors import LoginError  # noqa: E402
from bridge.domain.identity import Grant, Identity  # noqa: E402
from bridge.keys.signing import generate_saml_key  # noqa: E402
from bridge.runtime.localredis import LocalRedis  # noqa: E402
from bridge.storage.redis import RedisStore as Store  # noqa: E402
from bridge.upstream.base import PendingLogin  # noqa: E402
from bridge.upstream.saml import SamlConnector  # noqa: E402
from tests.peers.saml_forge import Forge  # noqa: E402


def rate(fn, seconds: float) -> float:  # type: ignore[no-untyped-def]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def openssl_rsa2048_signs(seconds: int) -> float:
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "rsa2048"], capture_output=True,
                         text=True, timeout=120).stdout
    m = re.search(r"rsa\s+2048 bits\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"could not read openssl speed output:\n{out[-500:]}")
    return float(m[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--responses", type=int, default=1500,
                    help="distinct upstream responses forged for the validation figure (each is used once)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-saml-"))
    with LocalRedis(tmp / "redis") as rd:  # started before pinning, so Redis does not share our core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
        return run(args, tmp, Store.from_url(rd.url, "bench-saml:"))


def run(args: argparse.Namespace, tmp: Path, store: Store) -> int:
    key = generate_saml_key(tmp / "ours", bits=2048)
    grant = Grant(role_arn="arn:aws:iam::123456789012:role/Admin", account_id="123456789012", label="Admin",
                  session_name="alice@example.com", via="bench",
                  provider_arn="arn:aws:iam::123456789012:saml-provider/FederationBridge",
                  tags={"Email": "alice@example.com", "Department": "Platform"}, transitive_keys=("Department",),
                  source_identity="alice@example.com")
    identity = Identity(connector_id="bench", subject="alice", issuer="https://idp.example.com")
    recipient, audience = signin_saml_endpoint("aws")
    issuer = SamlIssuer("https://bridge.example.com/idp/metadata.xml", recipient, audience)

    pkey = load_pem_private_key(key.key_pem, None)
    rounds: list[tuple[float, float, float]] = []
    for _ in range(args.rounds):  # alternate, so machine noise hits every figure alike
        rounds.append((
            openssl_rsa2048_signs(max(1, int(args.seconds))),
            rate(lambda: pkey.sign(b"x" * 64, padding.PKCS1v15(), hashes.SHA256()),  # type: ignore[union-attr]
                 args.seconds),
            rate(lambda: mint_saml_response(grant, identity, key, issuer, now=int(time.time()), duration=3600),
                 args.seconds)))
    openssl, py_sign, mint = (statistics.median(r[i] for r in rounds) for i in range(3))
    ratio = statistics.median(r[2] / r[0] for r in rounds)

    # Upstream: a signed response from a test IdP, validated by the SAML connector (python3-saml strict + ours).
    idp_key = generate_saml_key(tmp / "idp", bits=2048)
    base = "https://bridge.example.com"
    cfg = SamlConnectorSettings(id="corp", type="saml", idp_entity_id="https://idp.example.com/metadata",
                                sso_url="https://idp.example.com/sso",
                                idp_cert_files=[idp_key.path.with_suffix(".crt")])
    connector = SamlConnector(cfg, base_url=base, resolve=lambda p: p, replay_guard=store.remember_once)
    forge = Forge(cfg.idp_entity_id or "", connector.sp_entity_id, connector.acs_url, idp_key)
    pending = PendingLogin("s", "corp", "n", "v", "/portal", int(time.time()), request_id="_req1")
    responses = [{"SAMLResponse": base64.b64encode(forge.sign(forge.build(in_response_to="_req1"))).decode()}
                 for _ in range(args.responses)]
    assert connector.finish_login(pending, responses[0], connector.acs_url).email
    try:  # the replay cache is live: the same response a second time is refused
        connector.finish_login(pending, responses[0], connector.acs_url)
        raise SystemExit("a replayed SAML response was accepted: the benchmark is not on the production path")
    except LoginError as e:
        if e.code != "saml_replayed":
            raise
    fresh = iter(responses[1:])
    n, start = 0, time.perf_counter()
    for form in fresh:
        connector.finish_login(pending, form, connector.acs_url)
        n += 1
        if time.perf_counter() - start >= args.seconds:
            break
    validate = n / (time.perf_counter() - start)
    if next(fresh, None) is None:
        print(f"note: all {args.responses} forged responses used in {time.perf_counter() - start:.2f}s "
              f"(< {args.seconds}s): raise --responses for a longer run")

    print(f"machine: {platform.machine()}, pinned to 1 core, Python {platform.python_version()}; "
          f"{args.rounds} rounds x {args.seconds}s per figure")
    print(f"openssl speed rsa2048 sign:         {openssl:9.1f} /s")
    print(f"cryptography RSA-2048 sign:         {py_sign:9.1f} /s")
    print(f"assertions minted+signed:           {mint:9.1f} /s  ({ratio:.2f} of openssl, median of rounds)")
    print(f"upstream responses validated:       {validate:9.1f} /s  (replay cache in Redis, as in production)")
    print(f"BENCH openssl_rsa2048_sign {openssl:.1f} ops/s")
    print(f"BENCH python_rsa2048_sign {py_sign:.1f} ops/s")
    print(f"BENCH saml_mint {mint:.1f} assertions/s")
    print(f"BENCH saml_mint_to_openssl_ratio {ratio:.3f} ratio")
    print(f"BENCH saml_upstream_validate {validate:.1f} responses/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
