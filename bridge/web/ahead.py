"""One Redis round trip for a hot request: its session read, sliding expiry, rate-limit count,
credential-cache entry (and CLI token, portal preferences) in one ``Store.read_ahead``.

The keys a request reads depend on who it is (the user's bucket, the cache entry of the grant and
duration it asks for), and only the session says who that is. So they are named from the session as
this process last loaded it (``Sessions.last_seen``; a CLI token: ``DeviceFlow.last_seen``), and
read in the same round trip as the session itself. What was read is used only for the very key the
request then asks for, decided from the session as stored now: a session that ended meanwhile gets
nothing (not even a cached credential), a changed identity reads its own keys the usual way. A
session this process has not loaded yet is loaded as before, and read ahead from its next request.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import g

from bridge.core.credcache import Sealed
from bridge.domain.errors import BridgeError
from bridge.domain.identity import Grant, Identity
from bridge.storage import Ahead, AheadRead, CliToken, SessionRecord, hash_id
from bridge.web.common import rate_bucket, services, session_hash, use_session, user_key

Pick = Callable[[SessionRecord], tuple[Grant, int]]  # the grant and duration a request asks for, for a session
BearerPick = Callable[[CliToken, SessionRecord], tuple[Grant, int]]  # the same, for a token holder


def browser(*, kind: str | None = None, pick: Pick | None = None, prefs: bool = False) -> None:
    """Load this browser's session with what the request will read (``kind``: its rate limit, ``pick``:
    its cached credentials, ``prefs``: the portal preferences); then ``current_session`` answers."""
    shash = session_hash()
    last = None if shash is None or "bridge_session" in g else services().sessions.last_seen(shash)
    if shash is not None and last is not None:
        use_session(_read(shash, last, None, kind, pick, prefs).session)


def bearer(token: str, *, kind: str | None = None, pick: BearerPick | None = None) -> AheadRead | None:
    """The CLI or Identity Center token ``token``, its session and what the request will read, in one
    round trip; None when this process has not seen the token live yet (then read them as before)."""
    svc = services()
    doc = svc.device.last_seen(token) if svc.device is not None else None
    last = None if doc is None else svc.sessions.last_seen(doc.session)
    if doc is None or last is None:
        return None
    got = _read(doc.session, last, hash_id(token), kind, None if pick is None else lambda s: pick(doc, s), False)
    return got if got.token is None or got.token.session == doc.session else None


def _read(shash: str, last: SessionRecord, token: str | None, kind: str | None, pick: Pick | None,
          prefs: bool) -> AheadRead:
    svc = services()
    identity = last.identity
    bucket = None if kind is None else rate_bucket(kind, f"{identity.issuer}\0{identity.subject}")
    creds = None
    if pick is not None:
        try:
            grant, duration = pick(last)
        except BridgeError:  # refused as last seen: decided again from the session as stored
            grant, duration = None, 0
        if grant is not None and grant.path != "passthrough":  # its entry names the artifact: read after
            # the entry the issuer will look up: of the grant as it is sent, with the bridge's own tags
            creds = svc.cache.key(identity, svc.issuer.tagged(grant, identity), duration)
    ahead = Ahead(shash, idle=svc.sessions.idle, expires_at=last.expires_at, token=token,
                  bucket=None if bucket is None else bucket[0], limit=0 if bucket is None else bucket[1],
                  creds=creds, prefs=user_key(identity) if prefs else None,
                  recent=user_key(identity) if pick is not None and token is None else None)  # browsers: remember_use
    got = svc.sessions.load_ahead(ahead)
    if got.complete:
        g.ahead = (ahead, got)
        if ahead.bucket is not None:
            g.ahead_counted = (ahead.bucket, got.wait)
    return got


def sealed() -> Sealed | None:
    """The credential-cache entry read ahead for this request, if any (``issue_credentials(sealed=)``)."""
    ahead, got = g.get("ahead", (None, None))
    return None if ahead is None or ahead.creds is None else Sealed(ahead.creds, got.blob)


def preferences(identity: Identity) -> tuple[list[str], set[str]]:
    """``Store.preferences`` of ``identity``: as read ahead with the session when they were."""
    ahead, got = g.get("ahead", (None, None))
    if ahead is not None and got.prefs is not None and ahead.prefs == user_key(identity):
        prefs: tuple[list[str], set[str]] = got.prefs
        return prefs
    return services().store.preferences(user_key(identity))
