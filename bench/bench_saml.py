"""SAML throughput on one core: assertions minted+signed per second vs the machine's raw RSA-2048
signature rate (`openssl speed rsa2048`, same run), and upstream SAML responses validated per second.

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
from bridge.aws.keys import generate_saml_key  # noqa: E402
from bridge.config import SamlConnectorSettings  # noqa: E402
from bridge.identity import Grant, Identity  # noqa: E402
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
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    tmp = Path(tempfile.mkdtemp(prefix="bridge-bench-saml-"))
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
    connector = SamlConnector(cfg, base_url=base, resolve=lambda p: p, replay_guard=lambda k, t: True)
    forge = Forge(cfg.idp_entity_id or "", connector.sp_entity_id, connector.acs_url, idp_key)
    pending = PendingLogin("s", "corp", "n", "v", "/portal", int(time.time()), request_id="_req1")
    response = base64.b64encode(forge.sign(forge.build(in_response_to="_req1"))).decode()
    assert connector.finish_login(pending, {"SAMLResponse": response}, connector.acs_url).email
    validate = rate(lambda: connector.finish_login(pending, {"SAMLResponse": response}, connector.acs_url),
                    args.seconds)

    print(f"machine: {platform.machine()}, pinned to 1 core, Python {platform.python_version()}; "
          f"{args.rounds} rounds x {args.seconds}s per figure")
    print(f"openssl speed rsa2048 sign:         {openssl:9.1f} /s")
    print(f"cryptography RSA-2048 sign:         {py_sign:9.1f} /s")
    print(f"assertions minted+signed:           {mint:9.1f} /s  ({ratio:.2f} of openssl, median of rounds)")
    print(f"upstream responses validated:       {validate:9.1f} /s")
    print(f"BENCH openssl_rsa2048_sign {openssl:.1f} ops/s")
    print(f"BENCH python_rsa2048_sign {py_sign:.1f} ops/s")
    print(f"BENCH saml_mint {mint:.1f} assertions/s")
    print(f"BENCH saml_mint_to_openssl_ratio {ratio:.3f} ratio")
    print(f"BENCH saml_upstream_validate {validate:.1f} responses/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
