"""Browser sessions and what hangs off them: the one place a session starts, is looked up, is
re-checked with the IdP, and ends.

Rules this module keeps (the security model, docs/security.md):
- A session stores the *identity*, never a list of grants to trust later: every issuance asks the
  rules in force (``AccessPoint.decide``, bridge/core/access.py) at the moment of use. (Only ``aws_passthrough`` SAML
  sessions keep the roles the IdP asserted: those come from the upstream assertion, not from rules.)
- Everything of a session is keyed by the hash of its cookie (``bridge.storage.hash_id``): its record,
  its passthrough artifact, its upstream grant (refresh token), its CLI tokens. A CLI token names
  that hash and is good only while the session lives, so ending a session by any means (idle or
  absolute timeout, sign-out, ``bridge sessions revoke``, the IdP disabling the user) ends its
  tokens.
- The upstream grant (refresh token) and the pass-through artifact are sealed with the cache keys
  (bridge/keys/sealing.py) before they reach the store, bound to their session's hash.
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
from typing import Any, Protocol

from bridge.config import SessionSettings
from bridge.core.credcache import Cache
from bridge.core.device import DeviceFlow
from bridge.core.stepup import mfa_current
from bridge.domain.errors import NotSignedIn, UpstreamUnavailable
from bridge.domain.identity import Grant, Identity
from bridge.keys.sealing import SEALED, Sealer
from bridge.scim.directory import Directory
from bridge.scim.directory import ended as scim_ended
from bridge.storage import (
    Ahead,
    AheadRead,
    BesideStore,
    LockStore,
    PassthroughInfo,
    ReadAheadStore,
    SessionRecord,
    SessionStore,
    hash_id,
)
from bridge.telemetry.logs import event
from bridge.upstream import Connector
from bridge.upstream.base import NO_POLICY, ConnectorPolicy, Reverifier, ReverifyExpired, ReverifyOk, ReverifyRevoked

REVERIFY_LOCK_SECONDS = 30  # one re-check with the IdP per session at a time, on every instance
SEEN_KEPT = 4096  # sessions this process remembers as last loaded (to name a request's keys ahead)


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


class SessionState(SessionStore, ReadAheadStore, BesideStore, LockStore, Protocol):
    """What ``Sessions`` keeps: the sessions, what hangs off them, and the re-check lock."""


class Sessions:
    """Session lifecycle over the store; no Flask here (the web layer reads and sets cookies)."""

    def __init__(self, store: SessionState, cfg: SessionSettings, connectors: Mapping[str, Connector],
                 device: DeviceFlow, cache: Cache,
                 clock: Callable[[], float] = time.time, sealer: Sealer | None = None,
                 directory: Directory | None = None) -> None:
        self.store = store
        # SCIM (bridge/scim/directory.py), when configured: a deactivated user's session ends at its next use,
        # and the groups SCIM pushed decide — read at each load, never stored.
        self.directory = directory
        self.cfg = cfg
        self.connectors = connectors
        self.device = device
        self.cache = cache
        self.clock = clock
        # None only without any cache key (credential_cache disabled): then kept as they are, and
        # warned at startup (bridge/web/services.py).
        self.sealer = sealer
        # The last record loaded per session hash: only to name the keys a request reads with its
        # session (``load_ahead``); what is read is always the stored record, never this.
        self._seen: dict[str, SessionRecord] = {}

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
        return self.cfg.idle_timeout

    def absolute_for(self, connector_id: str) -> int:
        """The session lifetime for users of a connector: a connector's ``max_session`` may shorten it
        (SAML has no back channel to re-check a user, so its bound is the session lifetime)."""
        cap = self._policy(connector_id).max_session
        absolute = self.cfg.absolute_timeout
        return min(absolute, cap) if cap else absolute

    def _policy(self, connector_id: str) -> ConnectorPolicy:
        connector = self.connectors.get(connector_id)
        return NO_POLICY if connector is None else connector.policy

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
        return self._seen_as(shash, None if record is None else self._governed(shash, self.reverified(shash, record)))

    def _governed(self, shash: str, record: SessionRecord) -> SessionRecord:
        """``record`` as SCIM has it now (groups pushed, when configured); a deactivated user's session ends.
        An MFA sign-in older than its connector's ``mfa_max_age`` no longer counts (bridge/core/stepup.py)."""
        record = self._mfa_aged(record)
        if self.directory is None:
            return record
        governed = self.directory.govern(record)
        if governed is None:
            self.end(shash, record)
            raise scim_ended()
        return governed

    def _mfa_aged(self, record: SessionRecord) -> SessionRecord:
        max_age = self._policy(record.identity.connector_id).mfa_max_age
        aged = mfa_current(record.identity, max_age, int(self.clock()))
        return record if aged is record.identity else replace(record, identity=aged)

    def last_seen(self, shash: str) -> SessionRecord | None:
        """The session ``shash`` as this process last loaded it (not a proof that it lives)."""
        return self._seen.get(shash)

    def load_ahead(self, ahead: Ahead) -> AheadRead:
        """``load(ahead.shash)`` with what ``ahead`` reads in the same round trip (``Store.read_ahead``).
        With a CLI token asked for and gone, the session is neither loaded nor re-checked."""
        got = self.store.read_ahead(ahead)
        if got.session is None or (ahead.token is not None and got.token is None):
            return got
        record = self._seen_as(ahead.shash, self._governed(ahead.shash, self.reverified(ahead.shash, got.session)))
        return got if record is got.session else replace(got, session=record)

    def _seen_as(self, shash: str, record: SessionRecord | None) -> SessionRecord | None:
        if record is None:
            self._seen.pop(shash, None)
            return None
        if len(self._seen) >= SEEN_KEPT and shash not in self._seen:
            self._seen.clear()
        self._seen[shash] = record
        return record

    def get(self, shash: str) -> SessionRecord | None:
        """The session ``shash`` as stored (no timer reset, no re-check): to end it."""
        return self.store.get_session(shash)

    def end(self, shash: str, record: SessionRecord | None = None) -> int:
        """End a session and everything of it: its CLI tokens, its upstream grant and passthrough
        artifact, the user's cached credentials. Returns how many CLI tokens were revoked."""
        tokens = self.device.revoke_session(shash)
        self.store.delete_session_hash(shash)
        self._seen.pop(shash, None)
        if record is not None:
            self.store.unindex_session(user_handles(record.identity), shash)
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
        connector = self.connectors.get(record.identity.connector_id)
        policy = self._policy(record.identity.connector_id)
        interval = policy.reverify_interval
        now = int(self.clock())
        verified_at = record.verified_at if record.verified_at is not None else (record.created_at or now)
        if not interval or not isinstance(connector, Reverifier) or now - verified_at < interval:
            return record
        if not self._get_upstream(shash)[0]:
            return record  # the IdP gave nothing to re-check with: the bound is the session lifetime
        grace, fail_closed = policy.reverify_grace, policy.reverify_fail_closed
        if not self.store.try_lock(f"reverify:{shash}", REVERIFY_LOCK_SECONDS):
            return self._unreachable(shash, record, now - verified_at, grace, fail_closed, "busy")
        try:  # the lock is held until the outcome is stored: a rotated refresh token is never reused
            return self._recheck(shash, record, connector, now, verified_at, grace, fail_closed)
        finally:
            self.store.unlock(f"reverify:{shash}")

    def _recheck(self, shash: str, record: SessionRecord, connector: Reverifier, now: int,
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
        result = connector.reverify(upstream)
        if isinstance(result, ReverifyOk):
            groups_claim = self._policy(identity.connector_id).groups_claim
            fresh = _carry_absent(identity, result.identity or identity, groups_claim)
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
        or with ``insecure_fail_open``, the session goes on. Past it, ``fail_closed``: an unreachable IdP is a
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


def _carry_absent(old: Identity, fresh: Identity, groups_claim: str) -> Identity:
    """What the IdP left out of its answer keeps its sign-in value (a deny or ``not:`` rule on a
    claim must not stop matching because a refresh omitted it) — except groups (``groups_claim``),
    where absence means none (IdPs drop an empty groups claim)."""
    kept = {k: v for k, v in old.claims.items() if k not in fresh.claims and k != groups_claim}
    return replace(fresh, email=fresh.email or old.email, name=fresh.name or old.name,
                   claims={**kept, **fresh.claims})
