"""CLI login: the OAuth 2.0 Device Authorization Grant (RFC 8628), served by the bridge.

The CLI asks for a device code; the user approves it on ``/device`` while signed in; the CLI
polls the token endpoint and gets the bridge's own opaque token, stored hashed (``CliToken``). The
token holds no identity and no grants: it names the session that approved it (by the session's
hash), and every use loads that session and asks the rules in force. So it lives only as long as
that session (idle or absolute expiry, sign-out, revocation) and never beyond
``cli.token_lifetime``. Never the IdP's token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from bridge.config import CliSettings
from bridge.storage import (
    CliToken,
    CliTokenStore,
    DeviceApproval,
    DeviceCode,
    DeviceStore,
    OnceStore,
    SessionRecord,
    hash_id,
)

# RFC 8628 §6.1: a short code from an unambiguous alphabet (no vowels, no look-alikes).
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


class DeviceError(Exception):
    """An RFC 8628 / RFC 6749 token-endpoint error (``error`` code and a description)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class DeviceStart:
    device_code: str
    user_code: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class PendingDevice:
    """A device code waiting for approval, as the approval page shows it."""

    code: DeviceCode
    expires_in: int


def refresh_hash(refresh: str) -> str:
    """Where a refresh token is stored: a hash apart from bearer tokens', so a refresh token presented
    as a bearer (or the reverse) finds nothing."""
    return hash_id("refresh\0" + refresh)


def normalize_user_code(code: str) -> str:
    """What the user typed, as issued: case, spaces and dashes (any kind) do not matter (RFC 8628 §6.1)."""
    c = "".join(ch for ch in code.upper() if ch.isascii() and ch.isalnum())
    return f"{c[:4]}-{c[4:]}" if len(c) == 8 else c


class DeviceState(DeviceStore, CliTokenStore, OnceStore, Protocol):
    """What ``DeviceFlow`` keeps: device codes, the CLI tokens they become, and used refresh tokens (once)."""


class DeviceFlow:
    """Device codes, their approval, and the CLI tokens they become (typed records in the store)."""

    def __init__(self, store: DeviceState, cfg: CliSettings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self._seen: dict[str, CliToken] = {}  # token hash → the live access token last presented

    def start(self, client_id: str, *, client_ip: str = "", user_agent: str = "",
              registered: bool = False) -> DeviceStart:
        """A new device code. Who asked (IP, User-Agent, when) is kept for the approval page: the user
        can tell a request from their own terminal from one an attacker started (RFC 8628 §5.4).
        ``registered``: the caller has checked ``client_id`` itself (an Identity Center RegisterClient client)."""
        if not registered and client_id not in self.cfg.client_ids:
            raise DeviceError("invalid_client", f"unknown client {client_id[:64]!r}", 401)
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
        user_code = f"{user_code[:4]}-{user_code[4:]}"
        now = int(self.clock())
        dkey = hash_id(device_code)
        # Kept a little past expiry so a late poll hears "expired_token", not "invalid_grant".
        self.store.put_device(dkey, DeviceCode(user_code=user_code, client_id=client_id, status="pending",
                                               expires_at=now + self.cfg.device_code_ttl,
                                               interval=self.cfg.poll_interval, last_poll=0, client_ip=client_ip,
                                               user_agent=user_agent[:200], created_at=now),
                              self.cfg.device_code_ttl + 300)
        self.store.put_user_code(user_code, dkey, self.cfg.device_code_ttl)
        return DeviceStart(device_code, user_code, self.cfg.device_code_ttl, self.cfg.poll_interval)

    def pending(self, user_code: str) -> PendingDevice | None:
        """The pending request behind ``user_code`` (for the approval page), or None."""
        dkey = self.store.get_user_code(normalize_user_code(user_code))
        code = self.store.get_device(dkey) if dkey else None
        if code is None or code.status != "pending" or code.expires_at <= self.clock():
            return None
        return PendingDevice(code, int(code.expires_at - self.clock()))

    def decide(self, user_code: str, *, approve: bool, session_hash: str, session: SessionRecord) -> bool:
        """Approve or deny; the user code works once. False if it is unknown or expired. An approval
        records only which session approved it (never its identity or grants: those are read at use)."""
        dkey = self.store.take_user_code(normalize_user_code(user_code))
        code = self.store.get_device(dkey) if dkey else None
        if dkey is None or code is None or code.status != "pending" or code.expires_at <= self.clock():
            return False
        code = replace(code, status="approved" if approve else "denied",
                       grant=DeviceApproval(session_hash, session.expires_at, session.correlation_id)
                       if approve else None)  # correlation id: ties CLI use to the sign-in (audit)
        self.store.put_device(dkey, code, max(1, int(code.expires_at - self.clock()) + 300))
        return True

    def poll(self, client_id: str, device_code: str, *, session_alive: Callable[[str], bool],
             lifetime: int | None = None, refresh_lifetime: int = 0) -> dict[str, Any]:
        """The token response, or DeviceError(authorization_pending | slow_down | access_denied | ...).
        ``session_alive(hash)`` says whether the approving session still lives (no token otherwise).
        ``lifetime`` (default ``cli.token_lifetime``) and ``refresh_lifetime`` (0: no refresh token)
        are bounded by the session's end."""
        dkey = hash_id(device_code)
        code = self.store.get_device(dkey)
        now = self.clock()
        if code is None or code.client_id != client_id:
            raise DeviceError("invalid_grant", "unknown or already used device code")
        if code.expires_at <= now:
            self.store.delete_device(dkey)
            raise DeviceError("expired_token", "the device code expired; run the login again")
        if code.status == "denied":
            self.store.delete_device(dkey)
            raise DeviceError("access_denied", "the request was denied")
        if code.status == "pending":
            too_fast = now - code.last_poll < code.interval
            # RFC 8628 §3.5: every slow_down adds 5 seconds
            code = replace(code, last_poll=now, interval=code.interval + 5 if too_fast else code.interval)
            self.store.put_device(dkey, code, max(1, int(code.expires_at - now) + 300))
            if too_fast:
                raise DeviceError("slow_down", f"poll at most every {code.interval} seconds")
            raise DeviceError("authorization_pending", "waiting for the user to approve")
        if self.store.take_device(dkey) is None:  # single use, even under concurrent polls
            raise DeviceError("invalid_grant", "unknown or already used device code")
        assert code.grant is not None  # approved codes always name their session
        return self.mint(client_id, code.grant, session_alive=session_alive, client_ip=code.client_ip,
                         user_agent=code.user_agent, lifetime=lifetime, refresh_lifetime=refresh_lifetime)

    def mint(self, client_id: str, approval: DeviceApproval, *, session_alive: Callable[[str], bool],
             client_ip: str = "", user_agent: str = "", lifetime: int | None = None,
             refresh_lifetime: int = 0, family: str | None = None) -> dict[str, Any]:
        """A new CLI token for the session ``approval`` names (and a refresh token when asked), filed
        under that session and never living past its end. DeviceError(expired_token) if it has ended.
        With a refresh token both carry ``family`` (the grant they descend from; a new one if not given)."""
        now = self.clock()
        left = approval.session_expires_at - now
        lifetime = int(min(self.cfg.token_lifetime if lifetime is None else lifetime, left))
        if lifetime <= 0 or not session_alive(approval.session):
            raise DeviceError("expired_token", "the browser session that approved this sign-in has ended")
        token = secrets.token_urlsafe(32)
        thash = hash_id(token)
        refresh = secrets.token_urlsafe(48) if refresh_lifetime > 0 else None
        rhash = refresh_hash(refresh) if refresh else None
        if refresh and family is None:
            family = secrets.token_urlsafe(16)
        base = CliToken(client_id=client_id, session=approval.session, created_at=int(now),
                        expires_at=int(now) + lifetime, client_ip=client_ip, user_agent=user_agent,
                        correlation_id=approval.correlation_id, pair=rhash, family=family)
        self.store.add_cli_token(thash, base, lifetime)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        if refresh and rhash:
            rlife = int(max(1, min(refresh_lifetime, left)))
            self.store.add_cli_token(rhash, replace(base, kind="refresh", pair=thash, expires_at=int(now) + rlife),
                                     rlife)
            body["refresh_token"] = refresh
        return body

    def token(self, bearer: str) -> CliToken | None:
        """The CLI token behind ``bearer``, or None (unknown, expired, revoked, or from before tokens
        followed their session: not trusted). It names the approving session (``session``); the
        caller must check that session still lives."""
        if not bearer or len(bearer) > 256:
            return None
        thash = hash_id(bearer)
        return self.checked(thash, self.store.get_cli_token(thash))

    def checked(self, thash: str, token: CliToken | None) -> CliToken | None:
        """``token`` (as stored under ``thash``) if it is a live access token, else None."""
        if token is None or token.kind != "access" or token.expires_at <= self.clock():
            self._seen.pop(thash, None)
            return None
        if len(self._seen) >= 4096 and thash not in self._seen:
            self._seen.clear()
        self._seen[thash] = token
        return token

    def last_seen(self, bearer: str) -> CliToken | None:
        """The access token ``bearer`` as this process last found it live (not a proof that it lives)."""
        return self._seen.get(hash_id(bearer)) if bearer and len(bearer) <= 256 else None

    def refresh_token(self, refresh: str) -> tuple[str, CliToken] | None:
        """(hash, record) of the refresh token ``refresh``, live (``kind`` "refresh") or already used
        ("spent"), or None."""
        if not refresh or len(refresh) > 256:
            return None
        rhash = refresh_hash(refresh)
        token = self.store.get_cli_token(rhash)
        if token is None or token.kind not in ("refresh", "spent") or token.expires_at <= self.clock():
            return None
        return rhash, token

    def spend(self, rhash: str, token: CliToken, family: str) -> None:
        """A refresh token just used: its access token ends, and it is kept as "spent" (in ``family``)
        until it would have expired, so that it is known if it comes back."""
        if token.pair:
            self.store.delete_cli_token(token.pair)
            self.store.unlink_cli_token(token.session, token.pair)
        self.store.add_cli_token(rhash, replace(token, kind="spent", pair=None, family=family),
                                 max(1, int(token.expires_at - self.clock())))

    def end_family(self, session_hash: str, family: str) -> int:
        """Revoke every token descended from one grant (a refresh token came back: RFC 9700 §4.14.2).
        Marked first, so a refresh racing this one sees it (``family_ended``) after minting. Returns how
        many live tokens ended."""
        self.store.remember_once(f"family-ended:{family}", max(1, self.cfg.refresh_token_lifetime))
        ended = 0
        for h in self.store.session_tokens(session_hash):
            token = self.store.get_cli_token(h)
            if token is not None and token.family == family:
                self.store.delete_cli_token(h)
                self.store.unlink_cli_token(session_hash, h)
                ended += token.kind != "spent"
        return ended

    def family_ended(self, family: str) -> bool:
        return self.store.seen(f"family-ended:{family}")

    def revoke(self, bearer: str) -> None:
        """Revoke the token ``bearer`` (and unfile it from its session)."""
        self.revoke_stored(hash_id(bearer))

    def revoke_stored(self, thash: str) -> None:
        """Revoke the stored token ``thash`` and its pair (an access token and its refresh token)."""
        token = self.store.get_cli_token(thash)
        self.store.delete_cli_token(thash)
        if token is not None:
            self.store.unlink_cli_token(token.session, thash)
            if token.pair:
                self.store.delete_cli_token(token.pair)
                self.store.unlink_cli_token(token.session, token.pair)

    def tokens_of(self, session_hash: str) -> list[tuple[str, CliToken]]:
        """(token hash, token) of each live CLI token a session approved, oldest first."""
        out = []
        for h in self.store.session_tokens(session_hash):
            token = self.store.get_cli_token(h)
            if token is None or token.expires_at <= self.clock():
                self.store.unlink_cli_token(session_hash, h)
            elif token.kind == "access":  # a refresh token goes with its access token's Revoke
                out.append((h, token))
        return sorted(out, key=lambda t: t[1].created_at)

    def revoke_hash(self, session_hash: str, token_hash: str) -> bool:
        """Revoke one CLI token of a session (the portal's Revoke button); False if it is not that session's."""
        if token_hash not in self.store.session_tokens(session_hash):
            return False
        self.revoke_stored(token_hash)
        return True

    def revoke_session(self, session_hash: str) -> int:
        """Revoke every CLI token a session approved (sign-out, revocation)."""
        hashes = self.store.pop_session_tokens(session_hash)
        for h in hashes:
            self.store.delete_cli_token(h)
        return len(hashes)
