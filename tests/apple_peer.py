"""The Sign in with Apple stand-in: npm oidc-provider (tests/peers/op.mjs) with its Apple-shaped client, on
127.0.0.2 — another *site* than the bridge on 127.0.0.1, so its form-POST callback is cross-site in a
browser. A test module takes the fixture with ``apple_op = apple_peer.apple_op``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from tests.conftest import PEERS, free_port, wait_http

APPLE_CONNECTOR = "apple"
SERVICES_ID = "com.example.bridge"
TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"


@dataclass
class AppleOp:
    issuer: str
    p8: str  # the team's private key, as Apple's AuthKey_<key id>.p8

    def seen(self) -> dict[str, Any]:
        """What the stand-in made of the client secrets it was sent: ``verified`` (count), ``refused`` (why)."""
        doc: dict[str, Any] = requests.get(f"{self.issuer}/test-admin/apple-secrets", timeout=10).json()
        return doc

    def new_user(self, **fields: Any) -> dict[str, Any]:
        """A fresh account with a private-relay address (password ``pw``) that has never signed in here."""
        name = f"u{secrets.token_hex(4)}"
        doc = {"password": "pw", "email": f"{secrets.token_hex(5)}@privaterelay.appleid.com", "is_private_email": True,
               "groups": [], **fields}
        r = requests.post(f"{self.issuer}/test-admin/users/{name}", data=json.dumps(doc), timeout=10)
        assert r.status_code == 200, r.text
        return {**doc, "name": name}

    def connector(self, **kw: Any) -> dict[str, Any]:
        return {"id": APPLE_CONNECTOR, "type": "oidc", "preset": "apple", "name": "Apple", "issuer": self.issuer,
                "client_id": SERVICES_ID, "apple": {"team_id": TEAM_ID, "key_id": KEY_ID, "private_key": self.p8},
                **kw}


@pytest.fixture(scope="module")
def apple_op(bridge_port: int) -> Iterator[AppleOp]:
    node = shutil.which("node")
    if not node or not (PEERS / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the oidc-provider peer is not installed: run `make test` (npm ci in tests/peers)")
    key = ec.generate_private_key(ec.SECP256R1())
    p8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()
    port = free_port()
    issuer = f"http://127.0.0.2:{port}"
    env = {"PORT": str(port), "BIND": "127.0.0.2", "ISSUER": issuer, "TEST_ADMIN": "1",
           "REDIRECT_URIS": f"http://127.0.0.1:{bridge_port}/callback/unused",
           "APPLE_CLIENT_ID": SERVICES_ID, "APPLE_TEAM_ID": TEAM_ID, "APPLE_KEY_ID": KEY_ID,
           "APPLE_PUBLIC_JWK": json.dumps(ECKey.import_key(p8).as_dict(private=False)),
           "APPLE_REDIRECT_URIS": f"http://127.0.0.1:{bridge_port}/callback/{APPLE_CONNECTOR}"}
    p = subprocess.Popen([node, "op.mjs"], cwd=PEERS, env={**os.environ, **env},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"{issuer}/.well-known/openid-configuration")
        yield AppleOp(issuer, p8)
    finally:
        p.terminate()
        p.wait(5)
