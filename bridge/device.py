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
from typing import Any

from bridge.config import CliSettings
from bridge.storage import CliToken, DeviceApproval, DeviceCode, SessionRecord, Store, hash_id

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


def normalize_user_code(code: str) -> str:
    """What the user typed, as issued: case, spaces and dashes (any kind) do not matter (RFC 8628 §6.1)."""
    c = "".join(ch for ch in code.upper() if ch.isascii() and ch.isalnum())
    return f"{c[:4]}-{c[4:]}" if len(c) == 8 else c


class DeviceFlow:
    """Device codes, their approval, and the CLI tokens they become (typed records in the store)."""

    def __init__(self, store: Store, cfg: CliSettings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock

    def start(self, client_id: str, *, client_ip: str = "", user_agent: str = "") -> DeviceStart:
        """A new device code. Who asked (IP, User-Agent, when) is kept for the approval page: the user
        can tell a request from their own terminal from one an attacker started (RFC 8628 §5.4)."""
        if client_id not in self.cfg.client_ids:
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

    def poll(self, client_id: str, device_code: str, *, session_alive: Callable[[str], bool]) -> dict[str, Any]:
        """The token response, or DeviceError(authorization_pending | slow_down | access_denied | ...).
        ``session_alive(hash)`` says whether the approving session still lives (no token otherwise)."""
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
        grant = code.grant
        assert grant is not None  # approved codes always name their session
        lifetime = int(min(self.cfg.token_lifetime, grant.session_expires_at - now))
        if lifetime <= 0 or not session_alive(grant.session):
            raise DeviceError("expired_token", "the browser session that approved this sign-in has ended")
        token = secrets.token_urlsafe(32)
        self.store.add_cli_token(hash_id(token), CliToken(
            client_id=client_id, session=grant.session, created_at=int(now), expires_at=int(now) + lifetime,
            client_ip=code.client_ip, user_agent=code.user_agent, correlation_id=grant.correlation_id), lifetime)
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}

    def token(self, bearer: str) -> CliToken | None:
        """The CLI token behind ``bearer``, or None (unknown, expired, revoked, or from before tokens
        followed their session: not trusted). It names the approving session (``session``); the
        caller must check that session still lives."""
        if not bearer or len(bearer) > 256:
            return None
        token = self.store.get_cli_token(hash_id(bearer))
        if token is None or token.expires_at <= self.clock():
            return None
        return token

    def revoke(self, bearer: str) -> None:
        """Revoke the token ``bearer`` (and unfile it from its session)."""
        thash = hash_id(bearer)
        token = self.store.get_cli_token(thash)
        self.store.delete_cli_token(thash)
        if token is not None:
            self.store.unlink_cli_token(token.session, thash)

    def tokens_of(self, session_hash: str) -> list[tuple[str, CliToken]]:
        """(token hash, token) of each live CLI token a session approved, oldest first."""
        out = []
        for h in self.store.session_tokens(session_hash):
            token = self.store.get_cli_token(h)
            if token is None or token.expires_at <= self.clock():
                self.store.unlink_cli_token(session_hash, h)
            else:
                out.append((h, token))
        return sorted(out, key=lambda t: t[1].created_at)

    def revoke_hash(self, session_hash: str, token_hash: str) -> bool:
        """Revoke one CLI token of a session (the portal's Revoke button); False if it is not that session's."""
        if token_hash not in self.store.session_tokens(session_hash):
            return False
        self.store.delete_cli_token(token_hash)
        self.store.unlink_cli_token(session_hash, token_hash)
        return True

    def revoke_session(self, session_hash: str) -> int:
        """Revoke every CLI token a session approved (sign-out, revocation)."""
        hashes = self.store.pop_session_tokens(session_hash)
        for h in hashes:
            self.store.delete_cli_token(h)
        return len(hashes)
