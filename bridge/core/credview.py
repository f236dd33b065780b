"""The credentials page as a GET-able page: each browser issuance is kept server-side for a while,
sealed to the browser session that asked for it, under an opaque id.

``POST /credentials/<grant>`` issues, keeps the credentials here and answers 303 to
``GET /credentials/view/<view id>``: a reload is a GET, Back works, and the URL opens in a new tab of
the same session. Nothing secret travels in the URL: the view id alone opens nothing. The Redis key is
a hash of the session hash and the view id (another session looks elsewhere: a 404), and the record
is AES-GCM sealed under a key derived from the session cookie itself, which the server never stores
(a copy of Redis alone does not give the credentials away). Records live until the credentials
expire, plus ``GRACE`` so that an expired page can still say what it was and offer Refresh.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.domain.identity import Credentials
from bridge.storage import ViewStore, hash_id

GRACE = 3600  # seconds an expired view stays (it shows no secrets, only what it was and Refresh)
VIEW_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{22}\Z")  # secrets.token_urlsafe(16)


@dataclass(frozen=True)
class View:
    grant_id: str
    duration: int
    creds: Credentials


def now() -> float:
    """The clock the views use (tests move it forward)."""
    return time.time()


def _ident(shash: str, view_id: str) -> str:
    return hashlib.sha256(f"{shash}\0{view_id}".encode()).hexdigest()


def _aead(sid: str, view_id: str) -> AESGCM:
    return AESGCM(hmac.new(sid.encode(), f"credview\0{view_id}".encode(), hashlib.sha256).digest())


def keep(store: ViewStore, sid: str, grant_id: str, duration: int, creds: Credentials, *,
         session_expires_at: float, at: float | None = None) -> str:
    """Seal ``creds`` for this session; returns the new view id."""
    t = now() if at is None else at
    view_id = secrets.token_urlsafe(16)
    ident = _ident(hash_id(sid), view_id)
    doc = {"grant_id": grant_id, "duration": duration, "access_key_id": creds.access_key_id,
           "secret_access_key": creds.secret_access_key, "session_token": creds.session_token,
           "expiration": creds.expiration.astimezone(UTC).isoformat(), "assumed_role_arn": creds.assumed_role_arn,
           "role_arn": creds.role_arn, "session_name": creds.session_name, "region": creds.region}
    nonce = os.urandom(12)
    sealed = nonce + _aead(sid, view_id).encrypt(nonce, json.dumps(doc).encode(), ident.encode())
    ttl = min(creds.expiration.timestamp() - t + GRACE, session_expires_at - t)
    store.put_view(ident, sealed, max(1, int(ttl)))
    return view_id


def load(store: ViewStore, sid: str, view_id: str) -> View | None:
    """The view ``view_id`` of this session, or None (unknown, expired, another session's)."""
    if not VIEW_ID_RE.match(view_id) or not sid:
        return None
    ident = _ident(hash_id(sid), view_id)
    sealed = store.get_view(ident)
    if sealed is None:
        return None
    try:
        doc: dict[str, Any] = json.loads(_aead(sid, view_id).decrypt(sealed[:12], sealed[12:], ident.encode()))
    except (InvalidTag, ValueError):
        return None
    grant_id, duration = str(doc.pop("grant_id")), int(doc.pop("duration"))
    creds = Credentials(**{**doc, "expiration": datetime.fromisoformat(doc["expiration"])})
    return View(grant_id=grant_id, duration=duration, creds=creds)
