"""Upstream OIDC connector (authlib client + joserfc): code flow with PKCE S256, state, nonce.

Any IdP with discovery works by config alone. The ID token is verified here, fully:
signature (JWKS cached; refreshed once when a ``kid`` is unknown, so IdP key rotation
works), ``iss``, ``aud`` (and ``azp`` when there are several audiences), ``exp``, ``iat``,
``nonce``. Discovery and JWKS are cached; a failed refresh keeps the last good copy.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import OAuth2Error
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from bridge.config import OidcConnectorSettings
from bridge.errors import EmailUnverified, IdpDenied, InvalidIdToken, LoginError, UpstreamUnavailable
from bridge.identity import Identity
from bridge.logs import event
from bridge.upstream.base import LoginStart, PendingLogin


class OidcConnector:
    """One upstream OpenID Provider."""

    type = "oidc"
    allows_unsolicited = False

    def __init__(self, cfg: OidcConnectorSettings, *, http: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, on_stale: Callable[[str], None] | None = None) -> None:
        """``on_stale(document)`` is told whenever a refresh failed and the last good copy was used."""
        self.cfg = cfg
        self.on_stale = on_stale
        self.id = cfg.id
        self.name = cfg.name or cfg.id
        self.http = http or requests.Session()
        self.clock = clock
        self._lock = threading.Lock()
        self._meta: dict[str, Any] | None = None
        self._meta_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0

    # -- discovery and keys ------------------------------------------------------------
    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            r = self.http.get(url, timeout=self.cfg.http_timeout)
            r.raise_for_status()
            doc = r.json()
        except (requests.RequestException, ValueError) as e:
            raise UpstreamUnavailable(f"{self.id}: {what} {url}: {type(e).__name__}") from None
        if not isinstance(doc, dict):
            raise UpstreamUnavailable(f"{self.id}: {what} is not a JSON object")
        return doc

    def metadata(self) -> dict[str, Any]:
        """Discovery document, cached for ``discovery_ttl``; the last good copy survives a failed refresh."""
        with self._lock:
            fresh = self._meta is not None and self.clock() - self._meta_at < self.cfg.discovery_ttl
            if fresh and self._meta is not None:
                return self._meta
            url = self.cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                meta = self._get_json(url, "discovery")
            except UpstreamUnavailable as e:
                if self._meta is not None:
                    self._stale("discovery", e)
                    return self._meta
                raise
            if meta.get("issuer") != self.cfg.issuer:
                raise UpstreamUnavailable(f"{self.id}: discovery issuer {meta.get('issuer')!r} != configured "
                                          f"{self.cfg.issuer!r}")
            for k in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(k), str):
                    raise UpstreamUnavailable(f"{self.id}: discovery lacks {k}")
            self._meta, self._meta_at = meta, self.clock()
            return meta

    def _stale(self, document: str, e: UpstreamUnavailable) -> None:
        event("upstream_stale", logging.WARNING, connector=self.id, document=document, detail=e.detail[:200])
        if self.on_stale:
            self.on_stale(document)

    def logout_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) when the IdP advertises an
        ``end_session_endpoint``: ``client_id`` identifies us (the bridge keeps no ID token to hint with)."""
        endpoint = self.metadata().get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        sep = "&" if "?" in endpoint else "?"
        return endpoint + sep + urlencode({"client_id": self.cfg.client_id,
                                           "post_logout_redirect_uri": post_logout_redirect_uri})

    def _keyset(self, *, refresh: bool = False) -> KeySet:
        """The IdP's keys: cached, refreshed every ``discovery_ttl`` or on an unknown ``kid``; when a
        refresh fails the last good set is used (a token signed by a new key then fails to verify)."""
        with self._lock:
            fresh = self.clock() - self._jwks_at < self.cfg.discovery_ttl
            if self._jwks is not None and fresh and not refresh:
                return self._jwks
            last = self._jwks
        try:
            doc = self._get_json(self.metadata()["jwks_uri"], "JWKS")
            try:
                ks = KeySet.import_key_set(doc)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as e:
                raise UpstreamUnavailable(f"{self.id}: JWKS unusable ({type(e).__name__})") from None
        except UpstreamUnavailable as e:
            if last is None:
                raise
            self._stale("jwks", e)
            with self._lock:
                self._jwks_at = self.clock() - self.cfg.discovery_ttl + 60  # try again in a minute
            return last
        with self._lock:
            self._jwks, self._jwks_at = ks, self.clock()
        return ks

    # -- login --------------------------------------------------------------------------
    def _client(self, redirect_uri: str) -> OAuth2Session:
        secret = self.cfg.client_secret.get_secret_value() if self.cfg.client_secret else None
        return OAuth2Session(self.cfg.client_id, secret, scope=" ".join(self.cfg.scopes),
                             redirect_uri=redirect_uri, code_challenge_method="S256",
                             token_endpoint_auth_method=self.cfg.token_endpoint_auth_method)

    def start_login(self, pending: PendingLogin, redirect_uri: str) -> LoginStart:
        meta = self.metadata()
        url, _ = self._client(redirect_uri).create_authorization_url(
            meta["authorization_endpoint"], state=pending.state, nonce=pending.nonce,
            code_verifier=pending.code_verifier)
        return LoginStart(str(url))

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str],
                     redirect_uri: str) -> Identity:
        if params.get("error"):
            desc = (params.get("error_description") or "")[:300]
            raise IdpDenied(f"{params['error'][:64]}: {desc}".rstrip(": "))
        code = params.get("code")
        if pending is None:
            raise LoginError("OIDC callback without a pending login")
        if not code:
            raise LoginError("callback has neither code nor error")
        meta = self.metadata()
        # RFC 9207: if the IdP names itself, it must be the one we sent the user to (mix-up defence).
        if "iss" in params and params["iss"] != meta["issuer"]:
            raise LoginError(f"callback iss {params['iss'][:100]!r} is not {meta['issuer']!r}")
        try:
            token = self._client(redirect_uri).fetch_token(
                meta["token_endpoint"], grant_type="authorization_code", code=code,
                code_verifier=pending.code_verifier, timeout=self.cfg.http_timeout)
        except (OAuth2Error, OAuthError) as e:
            raise LoginError(f"token endpoint refused the code: {e.error}") from None
        except (requests.RequestException, ValueError) as e:
            raise UpstreamUnavailable(f"{self.id}: token endpoint: {type(e).__name__}") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise InvalidIdToken("token response has no id_token")
        claims = self.verify_id_token(id_token, nonce=pending.nonce)
        if self.cfg.use_userinfo and meta.get("userinfo_endpoint"):
            claims = self._merge_userinfo(claims, meta["userinfo_endpoint"], token.get("access_token"))
        check_email_verified(claims, self.cfg)
        identity = self._identity(claims)
        return replace(identity, passthrough=id_token) if self.cfg.aws_passthrough else identity

    def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Verify signature and claims; return the claims or raise InvalidIdToken naming the check."""
        try:
            kid = jws.extract_compact(id_token.encode()).protected.get("kid")
        except (JoseError, ValueError) as e:
            raise InvalidIdToken(f"malformed id_token ({type(e).__name__})") from None
        keyset = self._keyset()
        if kid is not None and not any(k.kid == kid for k in keyset.keys):
            keyset = self._keyset(refresh=True)  # the IdP may have rotated: one refresh, no more
        try:
            claims = dict(jwt.decode(id_token, keyset, algorithms=self.cfg.allowed_algs).claims)
        except BadSignatureError:
            raise InvalidIdToken("signature does not verify with the IdP's published keys") from None
        except JoseError as e:
            raise InvalidIdToken(f"id_token rejected: {type(e).__name__}") from None
        now = int(self.clock())
        registry = jwt.JWTClaimsRegistry(
            now=now, leeway=self.cfg.clock_skew,
            iss={"essential": True, "value": self.cfg.issuer},
            sub={"essential": True}, exp={"essential": True}, iat={"essential": True})
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidIdToken("id_token has expired") from None
        except (InvalidClaimError, MissingClaimError) as e:
            raise InvalidIdToken(f"id_token {getattr(e, 'claim', 'claim')} check failed: {e.description}") from None
        iat = claims["iat"]
        if not isinstance(iat, int | float) or iat > now + self.cfg.clock_skew:
            raise InvalidIdToken("id_token iat is in the future")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.cfg.client_id not in auds:
            raise InvalidIdToken("id_token audience is not this client")
        if len(auds) > 1 and claims.get("azp") != self.cfg.client_id:
            raise InvalidIdToken("id_token has several audiences and azp is not this client")
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
            raise InvalidIdToken("id_token nonce does not match this sign-in")
        return claims

    def _merge_userinfo(self, claims: dict[str, Any], url: str, access_token: Any) -> dict[str, Any]:
        if not isinstance(access_token, str):
            return claims
        try:
            r = self.http.get(url, headers={"Authorization": f"Bearer {access_token}"},
                              timeout=self.cfg.http_timeout)
            r.raise_for_status()
            info = r.json()
        except (requests.RequestException, ValueError) as e:
            raise UpstreamUnavailable(f"{self.id}: userinfo: {type(e).__name__}") from None
        if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
            raise InvalidIdToken("userinfo sub differs from the id_token sub")
        # The verified id_token wins on conflicts; userinfo only adds what it lacks.
        return {**info, **claims}

    def _identity(self, claims: dict[str, Any]) -> Identity:
        groups_raw = claims.get(self.cfg.groups_claim) or []
        groups = tuple(str(g) for g in groups_raw) if isinstance(groups_raw, list) else (str(groups_raw),)
        amr = tuple(str(a) for a in claims.get("amr") or () if isinstance(a, str))
        acr = claims.get("acr") if isinstance(claims.get("acr"), str) else None
        mfa = bool(set(amr) & set(self.cfg.mfa_amr_values)) or (acr is not None and acr in self.cfg.mfa_acr_values)
        standard = {"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "sid", "jti"}
        kept = {k: v for k, v in claims.items() if k not in standard}
        if self.cfg.keep_claims:
            kept = {k: v for k, v in kept.items() if k in self.cfg.keep_claims or k in (
                self.cfg.email_claim, self.cfg.name_claim, self.cfg.groups_claim, "amr", "acr")}
        auth_time = claims.get("auth_time")
        return Identity(
            connector_id=self.id, subject=str(claims["sub"]), issuer=str(claims["iss"]),
            email=_str_or_none(claims.get(self.cfg.email_claim)), name=_str_or_none(claims.get(self.cfg.name_claim)),
            groups=groups, claims=kept, authn_time=int(auth_time) if isinstance(auth_time, int | float) else None,
            mfa=mfa, amr=amr, acr=acr)


def check_email_verified(claims: Mapping[str, Any], cfg: OidcConnectorSettings) -> None:
    """Refuse (not repair) an e-mail the IdP does not vouch for: ``email_verified`` must be exactly
    true (OIDC Core §5.1), unless the connector opts out with ``insecure_accept_unverified_email``.
    No e-mail, nothing to check. The detail names the connector, never the address."""
    if cfg.insecure_accept_unverified_email or _str_or_none(claims.get(cfg.email_claim)) is None:
        return
    verified = claims.get("email_verified")
    if verified is not True:
        seen = "missing" if verified is None and "email_verified" not in claims else repr(verified)[:20]
        raise EmailUnverified(f"{cfg.id}: {cfg.email_claim} present but email_verified is {seen}")


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None
