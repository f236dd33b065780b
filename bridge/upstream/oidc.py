"""Upstream OIDC connector (authlib client + joserfc): code flow with PKCE S256, state, nonce.

Any IdP with discovery works by config alone. The ID token is verified here, fully:
signature (JWKS cached; fetched again when a ``kid`` is unknown, so IdP key rotation works, at most
once a minute: ``KidRefetchGuard``), ``iss``, ``aud`` (and ``azp`` when there are several audiences), ``exp``,
``iat``, ``nonce``. Discovery and JWKS are cached; a failed refresh keeps the last good copy.

Continuous evaluation: ``finish_login`` puts an "upstream grant" (refresh token, or access token +
expiry when there is none; the sign-in's nonce and MFA) on ``Identity.upstream``, and
``reverify(grant)`` later asks the IdP again (see its docstring for what is checked).
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

from bridge.domain.errors import EmailUnverified, IdpDenied, InvalidIdToken, LoginError, UpstreamUnavailable
from bridge.domain.identity import Identity
from bridge.domain.stepup import StepUpPolicy
from bridge.telemetry.logs import event
from bridge.upstream.base import (
    LoginStart,
    OidcTrust,
    PendingLogin,
    ReverifyExpired,
    ReverifyOk,
    ReverifyResult,
    ReverifyRevoked,
    ReverifyUnreachable,
    SubjectToken,
    logged_reverify,
)
from bridge.upstream.keyguard import KidRefetchGuard
from bridge.upstream.oidc_claims import check_email_verified, claim_warnings, groups_from, missing_claims
from bridge.upstream.oidc_settings import OidcConnectorSettings
from bridge.upstream.oidc_stepup import authorize_params

GRANT_VERSION = 1
# An access token this close to its expiry is not used for userinfo: a 401 for an expired token
# would read as "the IdP refused the user".
ACCESS_TOKEN_MARGIN = 30


class _UserinfoRefused(Exception):
    """userinfo answered 401/403: the access token (or the user behind it) is no longer accepted."""


class OidcConnector:
    """One upstream OpenID Provider."""

    type = "oidc"
    allows_unsolicited = False
    response_mode: str | None = None  # asked for at the authorization endpoint (Apple: form_post)

    def __init__(self, cfg: OidcConnectorSettings, *, http: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, on_stale: Callable[[str], None] | None = None) -> None:
        """``on_stale(document)`` is told whenever a refresh failed and the last good copy was used."""
        self.cfg = cfg
        self.policy = cfg.policy()
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
        self._kid_guard = KidRefetchGuard()  # unknown kids (sign-in and token exchange): one fetch a minute
        self._warned_no_reverify = False

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

    def step_up_policy(self) -> StepUpPolicy:
        """What a step-up's answer must show (``StepUp``): the connector's own MFA values."""
        return self.cfg.step_up.policy(accepted_amr=self.cfg.mfa_amr_values, accepted_acr=self.cfg.mfa_acr_values,
                                       clock_skew=self.cfg.clock_skew)

    def logout_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) when the IdP advertises an
        ``end_session_endpoint``: ``client_id`` identifies us (the bridge keeps no ID token to hint with)."""
        endpoint = self.metadata().get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        sep = "&" if "?" in endpoint else "?"
        return endpoint + sep + urlencode({"client_id": self.cfg.client_id,
                                           "post_logout_redirect_uri": post_logout_redirect_uri})

    def passthrough_trust(self) -> OidcTrust:
        """What AWS judges this IdP's ID token against: our client id, the keys of the (cached) discovery."""
        try:
            jwks_uri = self.metadata().get("jwks_uri")
        except UpstreamUnavailable:
            jwks_uri = None
        return OidcTrust(client_id=self.cfg.client_id, jwks_uri=jwks_uri if isinstance(jwks_uri, str) else None)

    def verify_subject_token(self, token: str, *, audiences: tuple[str, ...]) -> SubjectToken:
        """A token exchange's subject token (``ExchangesTokens``): bridge/upstream/oidc_subject.py."""
        from bridge.upstream.oidc_subject import verify

        return verify(self, token, audiences)

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
    def _client_secret(self) -> str | None:
        return self.cfg.client_secret.get_secret_value() if self.cfg.client_secret else None

    def _client(self, redirect_uri: str | None) -> OAuth2Session:
        secret = self._client_secret()
        # No scope on refresh (redirect_uri None): authlib would send it, and the grant's scope is the one wanted.
        scope = " ".join(self.cfg.request_scopes()) if redirect_uri else None
        return OAuth2Session(self.cfg.client_id, secret, scope=scope,
                             redirect_uri=redirect_uri, code_challenge_method="S256",
                             token_endpoint_auth_method=self.cfg.token_endpoint_auth_method)

    def start_login(self, pending: PendingLogin, redirect_uri: str) -> LoginStart:
        meta = self.metadata()
        extra = {"prompt": "consent"} if self.cfg.request_offline_access and self.cfg.offline_access_consent else {}
        if self.response_mode:
            extra["response_mode"] = self.response_mode
        extra = authorize_params(self.cfg.step_up, pending.step_up, extra)  # step-up: prompt, max_age, acr_values
        url, _ = self._client(redirect_uri).create_authorization_url(
            meta["authorization_endpoint"], state=pending.state, nonce=pending.nonce,
            code_verifier=pending.code_verifier, **extra)
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
        claims, userinfo = self._with_userinfo(claims, meta, token.get("access_token"))
        check_email_verified(claims, self.cfg)
        identity = self._identity(claims, userinfo=userinfo)
        identity = replace(identity, upstream=self._upstream_grant(token, pending.nonce, identity, meta))
        return replace(identity, passthrough=id_token) if self.cfg.aws_passthrough else identity

    def _upstream_grant(self, token: Mapping[str, Any], nonce: str, identity: Identity,
                        meta: Mapping[str, Any]) -> dict[str, Any] | None:
        """What ``reverify`` needs, or None when reverify is off or the IdP gave nothing to re-check with."""
        if self.cfg.reverify_interval == 0:
            return None
        refresh, access = token.get("refresh_token"), token.get("access_token")
        expires_in = token.get("expires_in")
        now = int(self.clock())
        grant: dict[str, Any] = {
            "v": GRANT_VERSION, "sub": identity.subject, "nonce": nonce, "verified_at": now,
            # A refresh is no new authentication (OIDC Core §12.2): MFA stays what the sign-in proved.
            "amr": list(identity.amr), "acr": identity.acr, "auth_time": identity.authn_time,
            "refresh_token": None, "access_token": None, "access_expires_at": None}
        if isinstance(refresh, str) and refresh:
            grant["refresh_token"] = refresh
        elif (isinstance(access, str) and isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
              and isinstance(meta.get("userinfo_endpoint"), str)):
            grant["access_token"], grant["access_expires_at"] = access, now + int(expires_in)
        else:
            if not self._warned_no_reverify:
                self._warned_no_reverify = True
                event("reverify_unavailable", logging.WARNING, connector=self.id,
                      detail="the IdP issued no refresh token and no usable access token + userinfo: "
                             "sessions of this connector are not re-checked (see request_offline_access)")
            return None
        return grant

    def reverify(self, upstream_grant: Mapping[str, Any]) -> ReverifyResult:
        """Ask the IdP whether the user behind ``upstream_grant`` (from ``finish_login`` or a previous
        ``ReverifyOk``) is still who they were.

        With a refresh token: ``grant_type=refresh_token`` at the token endpoint; a returned ID token
        is verified like at sign-in (signature, iss, aud/azp, exp, iat), except that its nonce may be
        absent and, if present, must be the sign-in's (OIDC Core §12.2); its ``sub`` must not change.
        Userinfo is read when ``use_userinfo`` is set or no ID token came back. Without a refresh
        token, a still-valid access token is used at userinfo. Groups, email and other claims are
        taken afresh; ``amr``/``acr``/``auth_time`` (so ``mfa``) stay the sign-in's.
        Not verified: anything about AWS roles (mapping's job). Never raises for IdP answers;
        never logs the grant.

        The grant (JSON, secret) holds ``v``, ``sub``, ``nonce``, ``amr``/``acr``/``auth_time``,
        ``refresh_token`` or ``access_token`` + ``access_expires_at``, and ``verified_at`` (epoch
        seconds of the last good check: what ``reverify_grace`` counts from). Keep the grant of each
        ``ReverifyOk`` (rotated refresh tokens: reusing an old one makes IdPs revoke the lot), and
        re-check one session at a time.
        """
        return logged_reverify(self.id, self._reverify(upstream_grant))

    def _reverify(self, g: Mapping[str, Any]) -> ReverifyResult:
        if g.get("v") != GRANT_VERSION or not isinstance(g.get("sub"), str) or not isinstance(g.get("nonce"), str):
            return ReverifyExpired("upstream grant of an unknown shape")
        try:
            meta = self.metadata()
        except UpstreamUnavailable as e:
            return ReverifyUnreachable(e.detail)
        if isinstance(g.get("refresh_token"), str):
            return self._reverify_refresh(g, meta)
        access, expires_at = g.get("access_token"), g.get("access_expires_at")
        userinfo = meta.get("userinfo_endpoint")
        if not (isinstance(access, str) and isinstance(expires_at, int) and isinstance(userinfo, str)):
            return ReverifyExpired("no refresh token and no access token + userinfo endpoint")
        if self.clock() >= expires_at - ACCESS_TOKEN_MARGIN:
            return ReverifyExpired("no refresh token and the access token has expired")
        try:
            info = self._userinfo(userinfo, access)
        except _UserinfoRefused as e:
            return ReverifyRevoked(str(e))
        except UpstreamUnavailable as e:
            return ReverifyUnreachable(e.detail)
        if info.get("sub") != g["sub"]:
            return ReverifyRevoked("userinfo is for another subject")
        return self._reverified(g, {**info, "iss": self.cfg.issuer}, None, dict(g))

    def _reverify_refresh(self, g: Mapping[str, Any], meta: Mapping[str, Any]) -> ReverifyResult:
        try:
            token = self._client(None).refresh_token(meta["token_endpoint"], refresh_token=g["refresh_token"],
                                                     timeout=self.cfg.http_timeout)
        except (OAuth2Error, OAuthError) as e:
            if e.error == "invalid_grant":  # expired, revoked, or the user is disabled/gone at the IdP
                return ReverifyRevoked("token endpoint: invalid_grant")
            # invalid_client, unauthorized_client, ...: about the bridge's client, not this user
            return ReverifyUnreachable(f"token endpoint: {str(e.error)[:64]}")
        except (requests.RequestException, ValueError) as e:
            return ReverifyUnreachable(f"{self.id}: token endpoint: {type(e).__name__}")
        new_refresh = token.get("refresh_token")
        grant = {**g, "refresh_token": new_refresh if isinstance(new_refresh, str) and new_refresh
                 else g["refresh_token"]}  # refresh tokens may rotate; keep the old one if none came back
        id_token, access = token.get("id_token"), token.get("access_token")
        userinfo = meta.get("userinfo_endpoint")
        claims: dict[str, Any] | None = None
        try:
            if isinstance(id_token, str):
                claims = self.verify_id_token(id_token, nonce=g["nonce"], refreshed=True)
                if claims["sub"] != g["sub"]:
                    return ReverifyRevoked("refreshed id_token is for another subject")
            wanted = claims is None or self.cfg.use_userinfo or bool(missing_claims(self.cfg, claims))
            if wanted and isinstance(userinfo, str) and isinstance(access, str):
                info = self._userinfo(userinfo, access)
                if info.get("sub") != g["sub"]:
                    return ReverifyRevoked("userinfo is for another subject")
                # The verified id_token wins on conflicts; userinfo only adds what it lacks.
                claims = {**info, **(claims or {"iss": self.cfg.issuer})}
        except InvalidIdToken as e:
            return ReverifyRevoked(f"refreshed id_token: {e.detail}")
        except _UserinfoRefused as e:
            return ReverifyRevoked(str(e))
        except UpstreamUnavailable as e:
            return ReverifyUnreachable(e.detail)
        return self._reverified(g, claims, id_token if isinstance(id_token, str) else None, grant)

    def _reverified(self, g: Mapping[str, Any], claims: dict[str, Any] | None, id_token: str | None,
                    grant: dict[str, Any]) -> ReverifyOk | ReverifyRevoked:
        grant["verified_at"] = int(self.clock())
        if claims is None:
            return ReverifyOk(None, grant)
        try:  # the same e-mail rule as at sign-in: a changed, unverified address is not taken on refresh
            check_email_verified(claims, self.cfg)
        except EmailUnverified:
            return ReverifyRevoked("email_unverified")
        claims = {k: v for k, v in claims.items() if k not in ("amr", "acr", "auth_time")}
        for claim, key in (("amr", "amr"), ("acr", "acr"), ("auth_time", "auth_time")):
            if g.get(key):
                claims[claim] = g[key]
        identity = replace(self._identity(claims), upstream=grant)
        if self.cfg.aws_passthrough and id_token:
            identity = replace(identity, passthrough=id_token)
        return ReverifyOk(identity, grant)

    def _keys_for(self, kid: Any) -> KeySet:
        """The keys to verify a token naming ``kid``: fetched again when it is unknown (the IdP may have rotated),
        at most once a minute (the kid is the token's say-so: a made-up one costs the IdP no fetch)."""
        keyset = self._keyset()
        if kid is None or any(k.kid == kid for k in keyset.keys):
            return keyset
        if not self._kid_guard.allow(self.clock()):
            raise InvalidIdToken("id_token is signed with a key the IdP does not publish (its keys were fetched "
                                 "again less than a minute ago)")
        return self._keyset(refresh=True)

    def verify_id_token(self, id_token: str, *, nonce: str, refreshed: bool = False) -> dict[str, Any]:
        """Verify signature and claims; return the claims or raise InvalidIdToken naming the check.

        ``refreshed``: an ID token from a refresh, whose nonce may be absent (OIDC Core §12.2)."""
        try:
            kid = jws.extract_compact(id_token.encode()).protected.get("kid")
        except (JoseError, ValueError) as e:
            raise InvalidIdToken(f"malformed id_token ({type(e).__name__})") from None
        keyset = self._keys_for(kid)
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
        # azp, whenever present, names the party the token was issued to: it must be this client (as the exchange
        # checks), and with several audiences it must be there
        if (len(auds) > 1 or "azp" in claims) and claims.get("azp") != self.cfg.client_id:
            raise InvalidIdToken("id_token azp (the party it was issued to) is not this client")
        got = claims.get("nonce")
        if refreshed and got is None:
            return claims
        if not isinstance(got, str) or not hmac.compare_digest(got, nonce):
            raise InvalidIdToken("id_token nonce does not match this sign-in")
        return claims

    def _userinfo(self, url: str, access_token: str) -> dict[str, Any]:
        """The userinfo document; _UserinfoRefused on 401/403, UpstreamUnavailable on anything else."""
        try:
            r = self.http.get(url, headers={"Authorization": f"Bearer {access_token}"},
                              timeout=self.cfg.http_timeout)
            if r.status_code in (401, 403):
                raise _UserinfoRefused(f"userinfo: HTTP {r.status_code}")
            r.raise_for_status()
            info = r.json()
        except (requests.RequestException, ValueError) as e:
            raise UpstreamUnavailable(f"{self.id}: userinfo: {type(e).__name__}") from None
        if not isinstance(info, dict):
            raise UpstreamUnavailable(f"{self.id}: userinfo is not a JSON object")
        return info

    def _with_userinfo(self, claims: dict[str, Any], meta: Mapping[str, Any],
                       access_token: Any) -> tuple[dict[str, Any], str]:
        """The ID token's claims plus userinfo's, read with ``use_userinfo`` or when a configured claim
        (email, name, groups) is missing from the ID token (LemonLDAP::NG sends claims at userinfo only).
        Returns the claims and what happened at userinfo (read / failed / none), for the warnings.

        With ``use_userinfo`` a failure refuses the sign-in; read only for a missing claim, a failure
        leaves the ID token's claims (the warnings name what is missing). Another ``sub`` always refuses."""
        url = meta.get("userinfo_endpoint")
        wanted = self.cfg.use_userinfo or bool(missing_claims(self.cfg, claims))
        if not wanted:
            return claims, "read"  # nothing is missing: nothing to say about userinfo
        if not isinstance(url, str) or not isinstance(access_token, str):
            return claims, "none"
        try:
            info = self._userinfo(url, access_token)
        except (_UserinfoRefused, UpstreamUnavailable) as e:
            detail = e.detail if isinstance(e, UpstreamUnavailable) else f"{self.id}: {e}"
            if self.cfg.use_userinfo:
                raise UpstreamUnavailable(detail) from None
            event("userinfo_unavailable", logging.WARNING, connector=self.id, detail=detail[:200])
            return claims, "failed"
        if info.get("sub") != claims.get("sub"):
            raise InvalidIdToken("userinfo sub differs from the id_token sub")
        # The verified id_token wins on conflicts; userinfo only adds what it lacks.
        return {**info, **claims}, "read"

    def _identity(self, claims: dict[str, Any], *, userinfo: str = "read") -> Identity:
        groups, warnings = groups_from(self.cfg, claims.get(self.cfg.groups_claim))
        warnings = claim_warnings(self.cfg, claims, userinfo=userinfo) + warnings
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
            mfa=mfa, amr=amr, acr=acr, warnings=tuple(warnings))


def open_oidc(cfg: OidcConnectorSettings, **kw: Any) -> OidcConnector:
    """The running connector for ``cfg``: the plain one, or the one of its ``preset``."""
    if cfg.preset == "apple":
        from bridge.upstream.apple import AppleConnector  # imports this module: not at the top

        return AppleConnector(cfg, **kw)
    return OidcConnector(cfg, **kw)


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None
