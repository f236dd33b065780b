"""Sealing cached credentials: AES-256-GCM under a key derived from the session cookie.

Redis only ever holds the SHA-256 of the cookie (store.py), so whoever reads Redis or its
backups can neither find the key nor open a cached credential. The cache field (grant id and
duration) is the associated data, so a blob cannot be moved to another role's slot.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge.identity import Credentials

_INFO = b"federation-bridge credential cache v1"


def _key(session_id: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(session_id.encode())


def seal(session_id: str, field: str, creds: Credentials, *, reuse_until: int) -> bytes:
    doc: dict[str, Any] = {"reuse_until": reuse_until, "c": {
        "access_key_id": creds.access_key_id, "secret_access_key": creds.secret_access_key,
        "session_token": creds.session_token, "expiration": creds.expiration.isoformat(),
        "assumed_role_arn": creds.assumed_role_arn, "role_arn": creds.role_arn,
        "session_name": creds.session_name, "region": creds.region}}
    nonce = os.urandom(12)
    return nonce + AESGCM(_key(session_id)).encrypt(nonce, json.dumps(doc).encode(), field.encode())


def unseal(session_id: str, field: str, blob: bytes, *, now: float) -> Credentials | None:
    """The cached credentials, or None if the blob does not open, is not for this field, or is stale."""
    if len(blob) < 13:
        return None
    try:
        doc = json.loads(AESGCM(_key(session_id)).decrypt(blob[:12], blob[12:], field.encode()))
    except (InvalidTag, ValueError):
        return None
    if now >= int(doc.get("reuse_until", 0)):
        return None
    c = doc["c"]
    return Credentials(access_key_id=c["access_key_id"], secret_access_key=c["secret_access_key"],
                       session_token=c["session_token"], expiration=datetime.fromisoformat(c["expiration"]),
                       assumed_role_arn=c["assumed_role_arn"], role_arn=c["role_arn"],
                       session_name=c["session_name"], region=c["region"])
