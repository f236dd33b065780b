"""The OIDC connector's side of the token exchange (RFC 8693): verify an ID token (or a JWT access token) an app's user
got from this IdP, without a browser — the checks of a sign-in (signature with the cached JWKS, ``iss``, ``aud``,
``exp``, ``iat``) but the audience is the *app's* client id at the IdP (``apps[].idp_audiences``), as is ``azp`` (or
``client_id``) whenever the token names one, and there is no nonce: no sign-in of the bridge's started it.
``OidcConnector.verify_subject_token`` calls ``verify``; the claims become an ``Identity`` as at sign-in (e-mail
only when verified; an Apple connector's ``"true"``/``"false"`` strings read as booleans, as at sign-in, once the
signature verified). An unknown ``kid`` fetches the keys again at most once a minute (``keyguard``); in between,
such a token is refused without a fetch.

Refusals are ``InvalidIdToken`` with a code the exchange passes on: ``subject_token_issuer`` (another IdP's
token: the exchange tries the app's next connector), ``subject_token_expired``, ``subject_token_audience``,
``invalid_id_token`` (malformed — a payload nested too deeply included —, bad signature, an unknown key, a claim
missing). No token text is ever logged or echoed.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError

from bridge.domain.errors import InvalidIdToken
from bridge.upstream.base import SubjectToken

if TYPE_CHECKING:
    from bridge.upstream.oidc import OidcConnector


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` a compact JWT claims (unverified: only to tell another IdP's token from a bad one); a payload
    nested too deeply to read is a malformed token (``InvalidIdToken``), not another IdP's."""
    try:
        payload = token.split(".")[1]
        doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    except RecursionError:  # '[[[[…': json gives up on the depth, before any signature is checked
        raise InvalidIdToken("malformed subject_token (its payload is nested too deeply to read)") from None
    iss = doc.get("iss") if isinstance(doc, dict) else None
    return iss if isinstance(iss, str) else None


def _claims(c: OidcConnector, token: str) -> dict[str, Any]:
    """Signature and algorithm against the IdP's published keys. An unknown ``kid`` fetches them again (the IdP
    rotated), at most once a minute (``KidRefetchGuard``): a token naming a made-up key costs the IdP no fetch."""
    from joserfc import jws

    try:
        kid = jws.extract_compact(token.encode()).protected.get("kid")
    except (JoseError, ValueError, UnicodeError, RecursionError) as e:
        raise InvalidIdToken(f"malformed subject_token ({type(e).__name__})") from None
    keyset = c._keyset()
    if kid is not None and not any(k.kid == kid for k in keyset.keys):
        if not c._kid_guard.allow(c.clock()):
            raise InvalidIdToken("subject_token is signed with a key the IdP does not publish (its keys were "
                                 "fetched again less than a minute ago; a key it has just added is read after that "
                                 "minute)")
        keyset = c._keyset(refresh=True)
        if not any(k.kid == kid for k in keyset.keys):
            raise InvalidIdToken("subject_token is signed with a key the IdP does not publish")
    try:
        return dict(jwt.decode(token, keyset, algorithms=c.cfg.allowed_algs).claims)
    except BadSignatureError:
        raise InvalidIdToken("subject_token signature does not verify with the IdP's published keys") from None
    except (JoseError, ValueError, TypeError, RecursionError) as e:
        raise InvalidIdToken(f"subject_token rejected: {type(e).__name__}") from None


def verify(c: OidcConnector, token: str, audiences: tuple[str, ...]) -> SubjectToken:
    """The verified subject token of connector ``c`` for an app whose client ids at the IdP are ``audiences``."""
    if unverified_issuer(token) != c.cfg.issuer:
        raise InvalidIdToken(f"{c.id}: subject_token is not from this connector's issuer", code="subject_token_issuer")
    claims = _claims(c, token)
    if c.cfg.preset == "apple":  # Apple's "true"/"false" strings, read only now the signature verified (as at sign-in)
        from bridge.upstream.apple import with_apple_booleans

        claims = with_apple_booleans(claims)
    now = int(c.clock())
    registry = jwt.JWTClaimsRegistry(now=now, leeway=c.cfg.clock_skew, iss={"essential": True, "value": c.cfg.issuer},
                                     sub={"essential": True}, exp={"essential": True}, iat={"essential": True})
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise InvalidIdToken("subject_token has expired", code="subject_token_expired") from None
    except (InvalidClaimError, MissingClaimError) as e:
        raise InvalidIdToken(f"subject_token {getattr(e, 'claim', 'claim')} check failed: {e.description}") from None
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int | float) or iat > now + c.cfg.clock_skew or not isinstance(exp, int | float):
        raise InvalidIdToken("subject_token iat is in the future")
    _audience(c, claims, audiences)
    from bridge.upstream.oidc_claims import check_email_verified

    check_email_verified(claims, c.cfg)
    jti = claims.get("jti")
    return SubjectToken(identity=c._identity(claims), expires_at=int(exp),
                        token_id=jti if isinstance(jti, str) and jti else None, single_use=False,
                        cnf=claims.get("cnf"))


def _audience(c: OidcConnector, claims: dict[str, Any], audiences: tuple[str, ...]) -> None:
    """``aud`` is one of the app's client ids at the IdP; so are ``azp`` and ``client_id`` when present."""
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    allowed = [a for a in auds if a in audiences]
    if not allowed:
        raise InvalidIdToken(f"{c.id}: subject_token audience is not this app's client id at the IdP",
                             code="subject_token_audience")
    if len(auds) > 1 and claims.get("azp") not in audiences:
        raise InvalidIdToken(f"{c.id}: subject_token has several audiences and azp is not this app",
                             code="subject_token_audience")
    # The party the IdP issued the token to (OIDC ``azp``; an RFC 9068 access token's ``client_id``), whenever
    # named, is the app — also with one audience: else another client's token for the same audience passes.
    for party in ("azp", "client_id"):
        if party in claims and claims[party] not in audiences:
            raise InvalidIdToken(f"{c.id}: subject_token was issued to another client ({party} is not one of this "
                                 "app's client ids at the IdP)", code="subject_token_audience")
