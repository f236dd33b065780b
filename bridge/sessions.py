"""Browser sessions and what hangs off them: the one place a session starts, is looked up, is
re-checked with the IdP, and ends.

Rules this module keeps (the security model, docs/security.md):
- A session stores the *identity*, never a list of grants to trust later: every issuance asks the
  rules in force (``AccessPoint.access_for``, bridge/access.py) at the moment of use. (Only ``aws_passthrough`` SAML
  sessions keep the roles the IdP asserted: those come from the upstream assertion, not from rules.)
- Everything of a session is keyed by the hash of its cookie (``bridge.storage.hash_id``): its record,
  its passthrough artifact, its upstream grant (refresh token), its CLI tokens. A CLI token names
  that hash and is good only while the session lives, so ending a session by any means (idle or
  absolute timeout, sign-out, ``bridge sessions revoke``, the IdP disabling the user) ends its
  tokens.
- The upstream grant (refresh token) and the pass-through artifact are sealed with the cache keys
  (bridge/sealing.py) before they reach the store, bound to their session's hash.
- Each session is indexed under the user's e-mail and subject, so an operator can list and
  revoke everything of a user at once (offboarding).
- OIDC connectors with ``reverify_interval`` re-check the user with the IdP (refresh token or
  userinfo) while the session or its tokens are used: a user disabled at the IdP loses access
  within that interval, a changed group list changes the roles. When the IdP cannot be reached,
  the connector's ``reverify_unreachable`` policy applies once the last good check is older than
  ``reverify_grace``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from bridge.config import Settings
from bridge.credcache import CredentialCache
from bridge.device import DeviceFlow
from bridge.errors import NotSignedIn, UpstreamUnavailable
from bridge.identity import Grant, Identity
from bridge.logs import event
from bridge.scim.directory import Directory
from bridge.scim.directory import ended as scim_ended
from bridge.sealing import SEALED, Sealer
from bridge.storage import PassthroughInfo, SessionRecord, Store, hash_id
from bridge.upstream import Connector
from bridge.upstream.base import ReverifyExpired, ReverifyOk, ReverifyRevoked

REVERIFY_LOCK_SECONDS = 30  # one re-check with the IdP per session at a time, on every instance


def user_handles(identity: Identity) -> list[str]:
    """The names a session is indexed under: ``user:`` (this exact account: connector, issuer, subject —
    what the user's own *Your sign-ins* page reads), and for operators ``sub:<subject>`` and
    ``email:<e-mail, lower-cased>``."""
    out = [exact_handle(identity), f"sub:{identity.subject}"]
    if identity.email:
        out.append(f"email:{identity.email.lower()}")
    return out


def exact_handle(identity: Identity) -> str:
    return f"user:{identity.connector_id}\0{identity.issuer}\0{identity.subject}"


def handles_for(user: str) -> list[str]:
    """What ``bridge sessions --user X`` looks under: X as an e-mail (when it has an @) and as a subject."""
    out = [f"sub:{user}"]
    if "@" in user:
        out.append(f"email:{user.lower()}")
    return out


@dataclass(frozen=True)
class Revoked:
    sessions: int
    tokens: int


class Sessions:
    """Session lifecycle over the store; no Flask here (the web layer reads and sets cookies)."""

    def __init__(self, store: Store, settings: Settings, connectors: Mapping[str, Connector],
                 device: DeviceFlow | None, cache: CredentialCache | None,
                 clock: Callable[[], float] = time.time, sealer: Sealer | None = None) -> None:
        self.store = store
        self.settings = settings
        self.connectors = connectors
        self.device = device
        self.cache = cache
        self.clock = clock
        # None only without any cache key (credential_cache disabled): then kept as they are, and
        # warned at startup (bridge/services.py).
        self.sealer = sealer
        # SCIM (bridge/scim/directory.py), when configured: a deactivated user's session ends at its next use,
        # and the groups SCIM pushed decide — read at each load, never stored.
        self.directory: Directory | None = None

    # -- what is kept beside a session, sealed -------------------------------------------------
    def _seal(self, doc: Mapping[str, Any], place: str) -> Mapping[str, Any]:
        return doc if self.sealer is None else self.sealer.seal_doc(doc, place.encode())

    def _open(self, stored: Mapping[str, Any] | None, place: str) -> dict[str, Any] | None:
        if stored is None:
            return None
        if self.sealer is None:  # a sealed value here (its keys gone, or a fleet out of step) opens to nothing
            return None if SEALED in stored else dict(stored)
        return self.sealer.open_doc(stored, place.encode())

    def _put_upstream(self, shash: str, grant: Mapping[str, Any], ttl: int) -> None:
        self.store.put_upstream(shash, self._seal(grant, f"upstream:{shash}"), ttl)

    def _get_upstream(self, shash: str) -> tuple[bool, dict[str, Any] | None]:
        """(stored at all, the grant): stored but None when it does not open (sealed under a cache key
        no longer configured, or copied from another session)."""
        stored = self.store.get_upstream(shash)
        return stored is not None, self._open(stored, f"upstream:{shash}")

    def put_passthrough(self, sid: str, artifact: Mapping[str, str], ttl: int) -> None:
        """Keep a pass-through sign-in's upstream artifact beside its session (sealed)."""
        self.store.put_passthrough(sid, self._seal(artifact, f"passthrough:{hash_id(sid)}"), ttl)

    def get_passthrough(self, sid: str) -> dict[str, str] | None:
        """The session's upstream artifact, or None once it expired (or does not open)."""
        doc = self._open(self.store.get_passthrough(sid), f"passthrough:{hash_id(sid)}")
        if doc is None or not {"kind", "value"} <= doc.keys():
            return None
        return {str(k): str(v) for k, v in doc.items()}

    @property
    def idle(self) -> int:
        return self.settings.session.idle_timeout

    def absolute_for(self, connector_id: str) -> int:
        """The session lifetime for users of a connector: a connector's ``max_session`` may shorten it
        (SAML has no back channel to re-check a user, so its bound is the session lifetime)."""
        connector = self.connectors.get(connector_id)
        cap = getattr(getattr(connector, "cfg", None), "max_session", None)
        absolute = self.settings.session.absolute_timeout
        return min(absolute, int(cap)) if isinstance(cap, int) and cap > 0 else absolute

    # -- start, load, end ---------------------------------------------------------------------
    def start(self, identity: Identity, *, correlation: str | None,
              passthrough_grants: list[Grant] | None = None,
              upstream: Mapping[str, Any] | None = None, passthrough: PassthroughInfo | None = None) -> str:
        """Create a session for a verified sign-in; return the cookie value (a new id: rotated at login)."""
        record = SessionRecord(identity=identity, csrf=secrets.token_urlsafe(24), correlation_id=correlation,
                               verified_at=int(self.clock()),
                               passthrough_grants=None if passthrough_grants is None else tuple(passthrough_grants),
                               passthrough=passthrough)
        absolute = self.absolute_for(identity.connector_id)
        sid = self.store.create_session(record, idle=min(self.idle, absolute), absolute=absolute)
        shash = hash_id(sid)
        self.store.index_session(user_handles(identity), shash, absolute)
        if upstream:
            self._put_upstream(shash, upstream, absolute)
        return sid

    def load(self, shash: str) -> SessionRecord | None:
        """The live session ``shash`` (idle timer reset), re-checked with the IdP when it is due."""
        record = self.store.load_session_hash(shash, idle=self.idle)
        if record is None:
            return None
        record = self.reverified(shash, record)
        if self.directory is None:
            return record
        governed = self.directory.govern(record)
        if governed is None:
            self.end(shash, record)
            raise scim_ended()
        return governed

    def get(self, shash: str) -> SessionRecord | None:
        """The session ``shash`` as stored (no timer reset, no re-check): to end it."""
        return self.store.get_session(shash)

    def end(self, shash: str, record: SessionRecord | None = None) -> int:
        """End a session and everything of it: its CLI tokens, its upstream grant and passthrough
        artifact, the user's cached credentials. Returns how many CLI tokens were revoked."""
        tokens = self.device.revoke_session(shash) if self.device is not None else 0
        self.store.delete_session_hash(shash)
        if record is not None:
            self.store.unindex_session(user_handles(record.identity), shash)
            if self.cache is not None:
                self.cache.forget_user(record.identity)
        return tokens

    # -- operators: list and revoke everything of a user --------------------------------------
    def of_user(self, user: str) -> list[tuple[str, SessionRecord]]:
        """(session hash, session) of every live session of ``user`` (e-mail or subject), oldest first."""
        seen: dict[str, SessionRecord] = {}
        now = self.clock()
        for handle in handles_for(user):
            for shash in self.store.user_sessions(handle):
                record = seen.get(shash) or self.store.get_session(shash)
                if record is not None and record.expires_at > now:
                    seen[shash] = record
        return sorted(seen.items(), key=lambda kv: kv[1].created_at)

    def of_identity(self, identity: Identity) -> list[tuple[str, SessionRecord]]:
        """The live sessions of exactly this account (connector, issuer, subject), oldest first: what
        a user may see and revoke of their own. Never matched by e-mail (another account may carry it)."""
        now = self.clock()
        out = []
        for shash in self.store.user_sessions(exact_handle(identity)):
            record = self.store.get_session(shash)
            if record is not None and record.expires_at > now and exact_handle(record.identity) == exact_handle(
                    identity):
                out.append((shash, record))
        return sorted(out, key=lambda kv: kv[1].created_at)

    def revoke_user(self, user: str) -> Revoked:
        """Offboarding: every session of ``user``, every CLI token they approved, their cached credentials."""
        sessions = self.of_user(user)
        tokens = sum(self.end(shash, record) for shash, record in sessions)
        event("sessions_revoked", logging.WARNING, sessions=len(sessions), tokens=tokens)
        return Revoked(len(sessions), tokens)

    # -- continuous evaluation with the IdP ----------------------------------------------------
    def reverified(self, shash: str, record: SessionRecord) -> SessionRecord:
        """``record``, re-checked with the IdP when its connector asks for it and the last check is older
        than ``reverify_interval``: the identity is replaced by what the IdP says now; a user the IdP
        no longer knows (disabled, deleted, refresh refused) loses the session and its tokens."""
        identity = record.identity
        connector = self.connectors.get(identity.connector_id)
        cfg = getattr(connector, "cfg", None)
        interval = int(getattr(cfg, "reverify_interval", 0) or 0)
        reverify = getattr(connector, "reverify", None)
        now = int(self.clock())
        verified_at = record.verified_at if record.verified_at is not None else (record.created_at or now)
        if not interval or reverify is None or now - verified_at < interval:
            return record
        if not self._get_upstream(shash)[0]:
            return record  # the IdP gave nothing to re-check with: the bound is the session lifetime
        grace = int(getattr(cfg, "reverify_grace", interval))
        fail_closed = getattr(cfg, "reverify_unreachable", "fail_closed") == "fail_closed"
        if not self.store.try_lock(f"reverify:{shash}", REVERIFY_LOCK_SECONDS):
            return self._unreachable(shash, record, now - verified_at, grace, fail_closed, "busy")
        try:  # the lock is held until the outcome is stored: a rotated refresh token is never reused
            return self._recheck(shash, record, reverify, now, verified_at, grace, fail_closed)
        finally:
            self.store.unlock(f"reverify:{shash}")

    def _recheck(self, shash: str, record: SessionRecord, reverify: Callable[[Any], Any], now: int,
                 verified_at: int, grace: int, fail_closed: bool) -> SessionRecord:
        """Under the lock: re-read (another request may just have re-checked), ask the IdP, store."""
        current = self.store.get_session(shash)
        stored, upstream = self._get_upstream(shash)
        if current is None or not stored:
            raise NotSignedIn("the session ended while it was re-checked")
        if current.verified_at is not None and current.verified_at > verified_at:
            return current  # someone else re-checked it meanwhile
        identity = record.identity
        if upstream is None:  # nothing to re-check with any more: as a grant the IdP let expire
            event("upstream_grant_unreadable", logging.WARNING, connector=identity.connector_id)
            return self._unreachable(shash, record, now - verified_at, grace, fail_closed, "expired")
        result = reverify(upstream)
        if isinstance(result, ReverifyOk):
            fresh = _carry_absent(identity, result.identity or identity, self.connectors.get(identity.connector_id))
            record = replace(current, identity=fresh, verified_at=now)
            if not self.store.save_session_hash(shash, record, idle=self.idle):
                raise NotSignedIn("the session ended while it was re-checked")
            remaining = (record.expires_at or now + 1) - now
            self._put_upstream(shash, result.grant, max(1, remaining))  # refresh tokens rotate
            if user_handles(fresh) != user_handles(identity):  # a changed e-mail: operators find it anew
                self.store.unindex_session(user_handles(identity), shash)
                self.store.index_session(user_handles(fresh), shash, max(1, remaining))
            event("session_reverified", connector=identity.connector_id,
                  groups_changed=set(fresh.groups) != set(identity.groups))
            return record
        if isinstance(result, ReverifyRevoked):
            tokens = self.end(shash, record)
            event("session_revoked_by_idp", logging.WARNING, connector=identity.connector_id, reason=result.reason,
                  tokens=tokens)
            raise NotSignedIn("the IdP no longer confirms this user", code="idp_revoked",
                              message="Your identity provider no longer confirms your sign-in (your account "
                                      "may have been disabled or your access changed).",
                              hint="Sign in again; if that fails, ask your administrator.")
        why = "expired" if isinstance(result, ReverifyExpired) else "unreachable"
        return self._unreachable(shash, record, now - verified_at, grace, fail_closed, why)

    def _unreachable(self, shash: str, record: SessionRecord, age: int, grace: int, fail_closed: bool,
                     why: str) -> SessionRecord:
        """The IdP could not vouch for the user now. Within ``reverify_grace`` of the last good check,
        or with ``fail_open``, the session goes on. Past it, ``fail_closed``: an unreachable IdP is a
        503 (the session is kept for when it answers); a grant that can no longer be checked at all
        (``expired``: no refresh token, access token expired) ends the session — a new sign-in can
        be checked again."""
        identity = record.identity
        if age <= grace or not fail_closed:
            event("session_reverify_deferred", connector=identity.connector_id, why=why, age=age)
            return record
        event("session_reverify_failed", logging.WARNING, connector=identity.connector_id, why=why, age=age,
              policy="fail_closed")
        if why == "expired":
            self.end(shash, record)
            raise NotSignedIn("the sign-in can no longer be re-checked with the IdP", code="reverify_expired",
                              message="Your sign-in can no longer be confirmed with your identity provider.",
                              hint="Sign in again.")
        raise UpstreamUnavailable(f"{identity.connector_id}: cannot re-check the user ({why}, last check "
                                  f"{age}s ago)")


def _carry_absent(old: Identity, fresh: Identity, connector: Any) -> Identity:
    """What the IdP left out of its answer keeps its sign-in value (a deny or ``not:`` rule on a
    claim must not stop matching because a refresh omitted it) — except groups, where absence means
    none (IdPs drop an empty groups claim)."""
    groups_claim = getattr(getattr(connector, "cfg", None), "groups_claim", "groups")
    kept = {k: v for k, v in old.claims.items() if k not in fresh.claims and k != groups_claim}
    return replace(fresh, email=fresh.email or old.email, name=fresh.name or old.name,
                   claims={**kept, **fresh.claims})
