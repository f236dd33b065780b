"""Mint the JWT that ``AssumeRoleWithWebIdentity`` redeems (pure: time is passed in).

Claims follow docs/aws-rules.md §2.4–2.5: ``iss`` is the configured issuer,
one string ``aud``, a pseudonymous ``sub`` (CloudTrail records it; no PII), integer
``iat``/``exp``, session tags as one-string arrays, and source identity.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from joserfc import jwt

from bridge.domain.identity import Grant, Identity
from bridge.keys.signing import SigningKey

MAX_LIFETIME = 300


def subject_for(identity: Identity) -> str:
    """Stable pseudonymous subject: the same upstream user always maps to the same ``sub``."""
    digest = hashlib.sha256(f"{identity.issuer}\x00{identity.subject}".encode()).hexdigest()
    return f"u-{digest[:40]}"


def token_claims(grant: Grant, identity: Identity, *, issuer: str, audience: str, now: int,
                 lifetime: int = MAX_LIFETIME) -> dict[str, Any]:
    """The claim set for ``grant`` (no signing), so ``preview`` and tests can inspect it."""
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"token lifetime must be 1..{MAX_LIFETIME} seconds")
    claims: dict[str, Any] = {
        "iss": issuer, "aud": audience, "sub": subject_for(identity),
        "iat": int(now), "exp": int(now) + lifetime, "jti": secrets.token_urlsafe(16),
    }
    if grant.tags:
        claims["https://aws.amazon.com/tags"] = {
            "principal_tags": {k: [v] for k, v in grant.tags.items()},
            "transitive_tag_keys": list(grant.transitive_keys),
        }
    if grant.source_identity:
        claims["https://aws.amazon.com/source_identity"] = grant.source_identity
    return claims


def mint_token(grant: Grant, identity: Identity, key: SigningKey, *, issuer: str, audience: str,
               now: int, lifetime: int = MAX_LIFETIME) -> str:
    """Signed compact JWT with ``kid`` in the header."""
    claims = token_claims(grant, identity, issuer=issuer, audience=audience, now=now, lifetime=lifetime)
    header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key.key, algorithms=[key.alg])
