"""DPoP proofs (RFC 9449 §4.2) as a client makes them, and the bad ones the tests need: ``proof(key, htu)`` is a
good one; keyword arguments override (or, ``None``, remove) header fields and claims; ``alg="none"`` gives an
unsigned proof, ``alg="HS256"`` one signed with a shared secret, ``private=True`` puts the private key in ``jwk``."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

Key = ECKey | RSAKey | OKPKey


def b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def ath(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


def ec_key() -> ECKey:
    return ECKey.generate_key("P-256")


def proof(key: Key, htu: str, *, htm: str = "POST", iat: float | None = None, alg: str | None = None,
          private: bool = False, header: dict[str, Any] | None = None, **claims: Any) -> str:
    alg = alg or ("ES256" if isinstance(key, ECKey) else "EdDSA" if isinstance(key, OKPKey) else "RS256")
    head = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=private), **(header or {})}
    body = {"htm": htm, "htu": htu, "iat": int(time.time() if iat is None else iat), "jti": secrets.token_urlsafe(16),
            **claims}
    head = {k: v for k, v in head.items() if v is not None}
    body = {k: v for k, v in body.items() if v is not None}
    if alg == "none":
        return f"{b64(head)}.{b64(body)}."
    if alg.startswith("HS"):
        return jws.serialize_compact(head, json.dumps(body), OctKey.generate_key(256), algorithms=[alg])
    return jws.serialize_compact(head, json.dumps(body), key, algorithms=[alg])
