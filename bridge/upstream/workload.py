"""The ``workload`` connector: a CI job's or a workload's platform token (GitHub Actions, GitLab CI, a
Kubernetes service account, any issuer of signed JWTs) verified for the token exchange (``POST /oauth/token``,
``ExchangesTokens.verify_subject_token``). No browser, no session: ``start_login``/``finish_login`` refuse and
the sign-in page does not list it (``Headless``).

Verified, each with its own message (``InvalidIdToken``, never the token itself): the compact JWS shape; the
``iss`` it claims (another issuer's token is ``subject_token_issuer`` before any key is looked up: the exchange
asks the app's next connector); the header's ``alg`` among ``allowed_algs`` (RS256/ES256 only: never ``none``
nor HS*); its ``kid`` among the issuer's keys (fetched once more when unknown — the issuer rotated —, at most
once a minute); the signature; ``iss`` again; an ``aud`` among the connector's audiences and the caller's, when
it names some (``subject_token_audience``); ``exp`` (``subject_token_expired``), ``nbf``, ``iat`` within
``clock_skew``; a lifetime (``exp`` - ``iat``) within ``max_token_lifetime`` (``subject_token_lifetime``: a far
``exp`` is refused, not trusted — a reusable token's lifetime bounds a replay, a single-use one's how long a
copy never exchanged stays good); a ``jti`` when tokens are single-use; the preset's claims
(bridge/upstream/workload_claims.py).
Keys: ``jwks_file``, else ``jwks_uri``, else the issuer's discovery document; cached for ``jwks_ttl`` (no
network on the hot path), the last good copy kept when a refresh fails.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyTypeError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from bridge.domain.errors import ConfigError, InvalidIdToken, LoginError, UpstreamUnavailable
from bridge.domain.identity import Identity
from bridge.telemetry.logs import event
from bridge.upstream.base import LoginStart, PendingLogin, SubjectToken
from bridge.upstream.keyguard import MIN_REFRESH, KidRefetchGuard
from bridge.upstream.workload_claims import session_name
from bridge.upstream.workload_settings import WorkloadConnectorSettings

MAX_TOKEN = 16_384  # characters: platform tokens are a few kB


class WorkloadConnector:
    """One workload token issuer (``type: workload``)."""

    type = "workload"
    allows_unsolicited = False

    def __init__(self, cfg: WorkloadConnectorSettings, *, resolve: Callable[[Path], Path] = lambda p: p,
                 http: requests.Session | None = None, clock: Callable[[], float] = time.time,
                 on_stale: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.policy = cfg.policy()
        self.id = cfg.id
        self.name = cfg.name or cfg.id
        self.issuer = cfg.issuer_url
        self.audiences = tuple(cfg.audiences)
        self.single_use = cfg.once_only
        self.exchanges_per_minute = cfg.exchanges_per_minute  # WorkloadTokens: exchanged without an app
        self.http = http or requests.Session()
        self.clock = clock
        self.on_stale = on_stale
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._keys_at = -1e18  # when the keys were read (clock)
        self._tried_at = -1e18  # when a fetch was last tried (clock): a failed one is retried after MIN_REFRESH
        self._kid_guard = KidRefetchGuard()  # an unknown kid fetches the keys at most once each MIN_REFRESH
        self._discovered: str | None = None  # the discovery document's jwks_uri
        self._file = resolve(cfg.jwks_file) if cfg.jwks_file is not None else None
        self._file_mtime: float | None = None
        if self._file is not None:  # a file is there at startup, or the config is wrong
            try:
                self._keys = self._read_file()
            except UpstreamUnavailable as e:
                raise ConfigError([f"connectors ({self.id}).jwks_file: {e.detail}"]) from None
            self._keys_at = self.clock()

    # -- no browser -------------------------------------------------------------------------------
    def headless_reason(self) -> str:
        return (f"{self.name} is a workload connector: its tokens are exchanged at POST /oauth/token "
                "(grant_type token-exchange); there is no browser sign-in")

    def start_login(self, pending: PendingLogin, redirect_uri: str) -> LoginStart:
        raise LoginError(f"{self.id}: start_login on a workload connector", title="No sign-in here",
                         message=self.headless_reason() + ".",
                         hint="Sign in with one of the identity providers on the sign-in page.")

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str], redirect_uri: str) -> Identity:
        raise LoginError(f"{self.id}: finish_login on a workload connector", title="No sign-in here",
                         message=self.headless_reason() + ".",
                         hint="Sign in with one of the identity providers on the sign-in page.")

    # -- keys -------------------------------------------------------------------------------------
    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            r = self.http.get(url, timeout=self.cfg.http_timeout)
            r.raise_for_status()
            doc = r.json()
        except (requests.RequestException, ValueError) as e:
            raise UpstreamUnavailable(f"{self.id}: {what} {url}: {type(e).__name__}") from None
        if not isinstance(doc, dict):
            raise UpstreamUnavailable(f"{self.id}: {what} {url} is not a JSON object")
        return doc

    def _jwks_uri(self) -> str:
        """The configured ``jwks_uri``, else the discovery document's (kept until a fetch of the keys fails)."""
        if self.cfg.jwks_uri is not None:
            return self.cfg.jwks_uri
        if self._discovered is None:
            self._discovered = self._discover()
        return self._discovered

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        meta = self._get_json(url, "discovery")
        if meta.get("issuer") != self.issuer:
            raise UpstreamUnavailable(f"{self.id}: discovery issuer {str(meta.get('issuer'))[:100]!r} is not the "
                                      f"configured {self.issuer!r}")
        uri = meta.get("jwks_uri")
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise UpstreamUnavailable(f"{self.id}: discovery has no jwks_uri")
        return uri

    @staticmethod
    def _key_set(doc: Any, where: str) -> KeySet:
        try:
            keys = KeySet.import_key_set(doc)
        except (JoseError, ValueError, KeyError, TypeError) as e:
            raise UpstreamUnavailable(f"{where}: not a usable JWKS ({type(e).__name__})") from None
        if not keys.keys:
            raise UpstreamUnavailable(f"{where}: the JWKS has no keys")
        return keys

    def _read_file(self) -> KeySet:
        assert self._file is not None
        try:
            mtime = self._file.stat().st_mtime
            doc = json.loads(self._file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UpstreamUnavailable(f"{self._file}: cannot read ({type(e).__name__})") from None
        keys = self._key_set(doc, str(self._file))
        self._file_mtime = mtime
        return keys

    def _fetch(self) -> KeySet:
        if self._file is not None:
            return self._read_file()
        uri = self._jwks_uri()
        try:
            return self._key_set(self._get_json(uri, "JWKS"), f"{self.id}: JWKS")
        except UpstreamUnavailable:
            self._discovered = None  # the issuer may have moved its keys: ask its discovery again next time
            raise

    def _file_changed(self) -> bool:
        try:
            return self._file is not None and self._file.stat().st_mtime != self._file_mtime
        except OSError:
            return True

    def keyset(self, *, unknown_kid: bool = False) -> KeySet:
        """The issuer's keys: cached for ``jwks_ttl`` (a ``jwks_file`` re-read when it changes); fetched again at
        once for an unknown kid, at most each MIN_REFRESH seconds; a failed fetch keeps the last good keys."""
        now = self.clock()
        with self._lock:
            keys = self._keys
            if keys is not None and not self._file_changed():
                if unknown_kid:  # at most one fetch a minute for unknown kids
                    if not self._kid_guard.allow(now):
                        return keys
                elif now - self._keys_at < self.cfg.jwks_ttl or now - self._tried_at < MIN_REFRESH:
                    return keys  # fresh, or a fetch failed less than a minute ago (not retried at every token)
            self._tried_at = now
        try:
            fresh = self._fetch()
        except UpstreamUnavailable as e:
            if keys is None:
                raise
            event("upstream_stale", logging.WARNING, connector=self.id, document="jwks", detail=e.detail[:200])
            if self.on_stale:
                self.on_stale("jwks")
            return keys
        with self._lock:
            self._keys, self._keys_at = fresh, now
        return fresh

    # -- verification -------------------------------------------------------------------------------
    def verify_subject_token(self, token: str, *, audiences: tuple[str, ...] = ()) -> SubjectToken:
        """Verify a workload token (see the module's docstring) and return who it names; ``audiences``, when
        given (the exchange's), narrows the connector's own: the token's ``aud`` must be among both."""
        claims = self._verified_claims(token)
        self._check_claims(claims, audiences)
        try:
            identity = self.cfg.identity_from_claims(claims)
        except ValueError as e:
            raise InvalidIdToken(f"workload token: {e}") from None
        jti = claims.get("jti")
        return SubjectToken(identity=identity, expires_at=int(claims["exp"]) + self.cfg.clock_skew,
                            token_id=jti if isinstance(jti, str) else None, single_use=self.single_use,
                            session_name=session_name(self.cfg.preset, claims))

    def _verified_claims(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN or token.count(".") != 2:
            raise InvalidIdToken("workload token: not a signed JWT (three dot-separated parts)")
        try:
            header = dict(extract_compact(token.encode("ascii")).protected)
        except (JoseError, ValueError, UnicodeError, RecursionError) as e:
            raise InvalidIdToken(f"workload token: malformed ({type(e).__name__})") from None
        self._check_issuer(_unverified_issuer(token))  # another issuer's token: no key of ours is looked up
        alg = header.get("alg")
        if alg not in self.cfg.allowed_algs:
            raise InvalidIdToken(f"workload token: alg {str(alg)[:20]!r} is not allowed (allowed: "
                                 f"{', '.join(self.cfg.allowed_algs)}; never none or HS*)")
        kid = header.get("kid")
        keys = self.keyset()
        if kid is not None and not any(k.kid == kid for k in keys.keys):
            keys = self.keyset(unknown_kid=True)  # the issuer may have rotated: fetch again, at most once a minute
            if not any(k.kid == kid for k in keys.keys):
                raise InvalidIdToken(f"workload token: signing key {str(kid)[:64]!r} is not among the issuer's "
                                     "published keys")
        if kid is None and len(keys.keys) != 1:
            raise InvalidIdToken("workload token: no kid in its header, and the issuer publishes several keys")
        try:
            return dict(jwt.decode(token, keys, algorithms=list(self.cfg.allowed_algs)).claims)
        except BadSignatureError:
            raise InvalidIdToken("workload token: the signature does not verify with the issuer's keys") from None
        except InvalidKeyTypeError:
            raise InvalidIdToken(f"workload token: its alg {alg} does not fit the issuer's key "
                                 f"{str(kid)[:64]!r}") from None
        except (JoseError, ValueError, TypeError, RecursionError) as e:
            raise InvalidIdToken(f"workload token: rejected ({type(e).__name__})") from None

    def _check_issuer(self, iss: Any) -> None:
        """``subject_token_issuer``: the token exchange then asks the app's next connector."""
        if iss != self.issuer:
            raise InvalidIdToken(f"workload token: issuer {str(iss)[:100]!r} is not this connector's ({self.issuer})",
                                 code="subject_token_issuer")

    def _check_claims(self, claims: Mapping[str, Any], audiences: tuple[str, ...]) -> None:
        self._check_issuer(claims.get("iss"))
        self._check_audience(claims.get("aud"), audiences)
        self._check_times(claims)
        jti = claims.get("jti")
        if "jti" in claims and not (isinstance(jti, str) and 0 < len(jti) <= 256):
            raise InvalidIdToken("workload token: jti must be a string of 1 to 256 characters")
        if self.single_use and jti is None:
            raise InvalidIdToken(f"workload token: no jti, and this connector ({self.cfg.preset}) exchanges each "
                                 "token once only (single use)")

    def _check_audience(self, aud: Any, audiences: tuple[str, ...]) -> None:
        auds = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) \
            else []
        wanted = [a for a in self.audiences if not audiences or a in audiences]
        if not set(auds) & set(wanted):
            raise InvalidIdToken(f"workload token: audience {sorted(auds)[:5]} is not one this connector accepts "
                                 f"({', '.join(wanted) or 'none in common with the exchange'})",
                                 code="subject_token_audience")

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now, skew = self.clock(), self.cfg.clock_skew
        for name in ("exp", "iat"):
            if not _number(claims.get(name)):
                raise InvalidIdToken(f"workload token: no {name} (a number)")
        if claims["exp"] + skew <= now:
            raise InvalidIdToken(f"workload token: expired {int(now - claims['exp'])} s ago",
                                 code="subject_token_expired")
        if claims["iat"] > now + skew:
            raise InvalidIdToken("workload token: issued in the future (iat); check the clocks")
        # Single use or not: a reusable token's lifetime bounds a replay (no jti kept), a single-use one's how long
        # a copy from a job log that was never exchanged stays good (its jti is kept until exp, too).
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > self.cfg.max_token_lifetime:
            which = "for a token it exchanges more than once" if not self.single_use else "(max_token_lifetime)"
            raise InvalidIdToken(f"workload token: lives {int(lifetime)} s (exp - iat), longer than the "
                                 f"{self.cfg.max_token_lifetime} s this connector allows {which} (ask the platform "
                                 "for a shorter one, e.g. expirationSeconds)", code="subject_token_lifetime")
        if "nbf" in claims and (not _number(claims["nbf"]) or claims["nbf"] > now + skew):
            raise InvalidIdToken("workload token: not valid yet (nbf)")


def _unverified_issuer(token: str) -> Any:
    """The ``iss`` a token claims, read before its signature is checked (only to tell whose it is); a payload
    nested too deeply to read is a malformed token, not another issuer's."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("iss")
    except (ValueError, AttributeError, UnicodeError):
        return None
    except RecursionError:  # '[[[[…': json gives up on the depth (a 500 otherwise)
        raise InvalidIdToken("workload token: malformed (its payload is nested too deeply to read)") from None


def _number(v: Any) -> bool:
    # finite: JSON readers take NaN and Infinity, which would pass every comparison (lifetime, expiry) unchecked
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
