"""The strict AWS-rules validator for JWTs (docs/aws-rules.md §2.7), independent of minting.

moto checks nothing, so every token the bridge mints in a test passes through here. It
verifies signatures with ``cryptography`` directly (not with the library that minted), and
returns *every* rule broken as a ``Problem`` (rule number, where, what), so an admin can fix
all at once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bridge.aws.limits import (
    CHAINED_MAX_DURATION,
    MAX_DURATION,
    MIN_DURATION,
    SESSION_NAME_RE,
    SOURCE_IDENTITY_RE,
    external_id_problem,
    policy_problems,
    tags_problems,
)
from bridge.aws.problems import Problem

__all__ = ["ALLOWED_ALGS", "MAX_TOKEN_AGE", "MAX_TOKEN_LEN", "SOURCE_IDENTITY_CLAIM", "TAGS_CLAIM", "AssumeRoleCall",
           "Problem", "ValidationFailed", "assert_valid_jwt", "validate_assume_params", "validate_assume_role",
           "validate_jwt"]

ALLOWED_ALGS: dict[str, hashes.HashAlgorithm] = {
    "RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512(),
    "ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}
_CURVES = {"P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48), "P-521": (ec.SECP521R1, 66)}
TAGS_CLAIM = "https://aws.amazon.com/tags"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
MAX_TOKEN_LEN = 20000
MAX_TOKEN_AGE = 3600


class ValidationFailed(AssertionError):
    """Raised by ``assert_valid_jwt``; the message lists every broken rule."""


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64int(v: str) -> int:
    return int.from_bytes(_b64(v), "big")


def _verify(alg: str, jwk: Mapping[str, Any], signing_input: bytes, sig: bytes) -> str | None:
    """None if the signature verifies with ``jwk``, else why not."""
    digest = ALLOWED_ALGS[alg]
    try:
        if alg.startswith("RS"):
            if jwk.get("kty") != "RSA":
                return f"key is {jwk.get('kty')}, header says {alg}"
            pub = rsa.RSAPublicNumbers(_b64int(jwk["e"]), _b64int(jwk["n"])).public_key()
            if pub.key_size < 2048:
                return f"RSA key is {pub.key_size} bits; at least 2048 required"
            pub.verify(sig, signing_input, padding.PKCS1v15(), digest)
        else:
            if jwk.get("kty") != "EC" or jwk.get("crv") not in _CURVES:
                return f"key is {jwk.get('kty')}/{jwk.get('crv')}, header says {alg}"
            curve, size = _CURVES[jwk["crv"]]
            if len(sig) != 2 * size:
                return "ECDSA signature has the wrong length"
            der = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
            ec_pub = ec.EllipticCurvePublicNumbers(_b64int(jwk["x"]), _b64int(jwk["y"]), curve()).public_key()
            ec_pub.verify(der, signing_input, ec.ECDSA(digest))
    except InvalidSignature:
        return "signature does not verify"
    except (KeyError, ValueError, binascii.Error) as e:
        return f"key cannot be used ({type(e).__name__})"
    return None


def _issuer_problems(iss: Any, issuer: str, discovery: Mapping[str, Any] | None) -> list[Problem]:
    problems: list[Problem] = []
    if iss != issuer:
        problems.append(Problem("3", "claims.iss", f"iss {iss!r} is not the configured issuer {issuer!r} (byte-exact)"))
    u = urlsplit(issuer)
    if u.scheme != "https":
        problems.append(Problem("3", "issuer",
                                f"issuer {issuer!r} must use https (IAM OIDC providers are https only)"))
    if u.port is not None:
        problems.append(Problem("3", "issuer", f"issuer {issuer!r} must not carry a port"))
    if u.query or u.fragment:
        problems.append(Problem("3", "issuer", f"issuer {issuer!r} must not carry a query or fragment"))
    if discovery is not None:
        if discovery.get("issuer") != iss:
            problems.append(Problem("3", "discovery.issuer",
                                    f"discovery issuer {discovery.get('issuer')!r} differs from iss {iss!r}"))
        if not str(discovery.get("jwks_uri", "")).startswith("https://"):
            problems.append(Problem("3", "discovery.jwks_uri", "discovery jwks_uri must be an https URL"))
    return problems


def _time_problems(claims: Mapping[str, Any], now: int, skew: int) -> list[Problem]:
    problems: list[Problem] = []
    ints = {}
    for name in ("iat", "exp"):
        v = claims.get(name)
        if not isinstance(v, int) or isinstance(v, bool):
            problems.append(Problem("6", f"claims.{name}", f"{name} must be a JSON integer, got {type(v).__name__}"))
        else:
            ints[name] = v
    if "iat" in ints and ints["iat"] > now + skew:
        problems.append(Problem("6", "claims.iat", f"iat is {ints['iat'] - now}s in the future"))
    if "exp" in ints and ints["exp"] <= now:
        problems.append(Problem("6", "claims.exp", f"token expired {now - ints['exp']}s ago"))
    if len(ints) == 2 and ints["exp"] - ints["iat"] > MAX_TOKEN_AGE:
        problems.append(Problem("6", "claims.exp", f"lifetime exp-iat is {ints['exp'] - ints['iat']}s; "
                                                   f"at most {MAX_TOKEN_AGE}s"))
    return problems


def _tag_claim_problems(claims: Mapping[str, Any]) -> list[Problem]:
    if TAGS_CLAIM not in claims:
        return []
    where = f"claims.{TAGS_CLAIM}"
    obj = claims[TAGS_CLAIM]
    if not isinstance(obj, dict):
        return [Problem("7", where, "the tags claim must be an object")]
    problems = [Problem("7", f"{where}.{k}", f"unexpected key {k!r} in the tags claim") for k in obj
                if k not in ("principal_tags", "transitive_tag_keys")]
    raw_tags = obj.get("principal_tags", {})
    transitive = obj.get("transitive_tag_keys", [])
    if not isinstance(raw_tags, dict):
        return [*problems, Problem("7", f"{where}.principal_tags", "principal_tags must be an object")]
    if not isinstance(transitive, list) or not all(isinstance(t, str) for t in transitive):
        problems.append(Problem("7", f"{where}.transitive_tag_keys", "transitive_tag_keys must be an array of strings"))
        transitive = []
    tags: dict[str, str] = {}
    for k, v in raw_tags.items():
        if not (isinstance(v, list) and len(v) == 1 and isinstance(v[0], str)):
            problems.append(Problem("7", f"{where}.principal_tags.{k}",
                                    f"tag {k!r} must be an array of exactly one string, got {v!r}"))
            continue
        tags[k] = v[0]
    return problems + [Problem("7", where, p) for p in tags_problems(tags, transitive)]


@dataclass(frozen=True)
class _Jws:
    """A compact JWS split and decoded (nothing verified yet)."""

    signing_input: bytes
    header: dict[str, Any]
    claims: dict[str, Any]
    signature: bytes


def _parse(token: str) -> tuple[_Jws | None, list[Problem]]:
    """Rule 1, shape: the decoded token (None if it cannot be read) and what is wrong with its shape."""
    problems: list[Problem] = []
    if len(token) > MAX_TOKEN_LEN:
        problems.append(Problem("1", "token", f"token is {len(token)} characters; AWS allows {MAX_TOKEN_LEN}"))
    parts = token.split(".")
    if len(parts) != 3:
        return None, [*problems, Problem("1", "token", "not a compact JWS (three base64url parts)")]
    try:
        header = json.loads(_b64(parts[0]))
        claims = json.loads(_b64(parts[1]))
        sig = _b64(parts[2])
    except (ValueError, binascii.Error):
        return None, [*problems, Problem("1", "token", "header, payload or signature is not base64url JSON")]
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None, [*problems, Problem("1", "token", "header and payload must be JSON objects")]
    return _Jws(f"{parts[0]}.{parts[1]}".encode(), header, claims, sig), problems


def _key_problems(jws: _Jws, alg: str, kid: str, jwk: Mapping[str, Any]) -> list[Problem]:
    """Rules 1 (the published JWK) and 2 (the signature) for a token whose ``kid`` names ``jwk``."""
    problems = [Problem("1", f"jwks.{kid}", f"published JWK {kid!r} lacks {field_name!r}")
                for field_name in ("kty", "kid", "alg", "use") if field_name not in jwk]
    if jwk.get("alg") not in (None, alg):
        problems.append(Problem("1", f"jwks.{kid}", f"JWK {kid!r} is for {jwk.get('alg')}, token uses {alg}"))
    if why := _verify(alg, jwk, jws.signing_input, jws.signature):
        problems.append(Problem("2", "signature", why))
    return problems


def _header_problems(jws: _Jws, jwks: Mapping[str, Any]) -> list[Problem]:
    """Rules 1 (header: alg, crit, kid) and 2 (signature)."""
    problems: list[Problem] = []
    alg = jws.header.get("alg")
    alg_ok = isinstance(alg, str) and alg in ALLOWED_ALGS
    if not alg_ok:
        problems.append(Problem("1", "header.alg", f"alg {alg!r} is not one AWS accepts ({', '.join(ALLOWED_ALGS)})"))
    if "crit" in jws.header:
        problems.append(Problem("1", "header.crit", "crit header is not allowed"))
    kid = jws.header.get("kid")
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == kid), None) if kid else None
    if not kid:
        problems.append(Problem("1", "header.kid", "header has no kid"))
    elif jwk is None:
        problems.append(Problem("1", "header.kid", f"kid {kid!r} is not in the published JWKS"))
    elif alg_ok:
        problems += _key_problems(jws, str(alg), kid, jwk)
    return problems


def _subject_problems(claims: Mapping[str, Any], audiences: Collection[str]) -> list[Problem]:
    """Rules 4 (aud) and 5 (sub)."""
    problems: list[Problem] = []
    aud = claims.get("aud")
    if not isinstance(aud, str):
        problems.append(Problem("4", "claims.aud", f"aud must be a single string, got {type(aud).__name__}"))
    elif aud not in audiences or len(aud) > 255:
        problems.append(Problem("4", "claims.aud", f"aud {aud!r} is not a registered client id {sorted(audiences)}"))
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 6 <= len(sub) <= 255:
        problems.append(Problem("5", "claims.sub", "sub must be a string of 6..255 characters"))
    return problems


def _source_identity_problems(claims: Mapping[str, Any]) -> list[Problem]:
    """Rule 8."""
    if SOURCE_IDENTITY_CLAIM not in claims:
        return []
    si = claims[SOURCE_IDENTITY_CLAIM]
    if not isinstance(si, str) or not SOURCE_IDENTITY_RE.match(si) or si.lower().startswith("aws:"):
        return [Problem("8", f"claims.{SOURCE_IDENTITY_CLAIM}",
                        f"source identity {si!r} must match [A-Za-z0-9_+=,.@-]{{2,64}}, no 'aws:'")]
    return []


def validate_jwt(token: str, *, jwks: Mapping[str, Any], issuer: str, audiences: Collection[str],
                 now: int, skew: int = 300, discovery: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every §2.7 rule ``token`` breaks (empty list = AWS would accept it as far as we know)."""
    jws, problems = _parse(token)
    if jws is None:
        return problems
    return [*problems,
            *_header_problems(jws, jwks),
            *_issuer_problems(jws.claims.get("iss"), issuer, discovery),
            *_subject_problems(jws.claims, audiences),
            *_time_problems(jws.claims, now, skew),
            *_tag_claim_problems(jws.claims),
            *_source_identity_problems(jws.claims)]


def validate_assume_params(role_session_name: str, duration: int, max_duration: int = MAX_DURATION) -> list[Problem]:
    """Rule 9: the API parameters sent beside the token."""
    return _session_and_duration(role_session_name, duration, max_duration)


def _session_and_duration(role_session_name: str, duration: int, max_duration: int) -> list[Problem]:
    problems = []
    if not SESSION_NAME_RE.match(role_session_name):
        problems.append(Problem("9", "RoleSessionName",
                                f"RoleSessionName {role_session_name!r} must match [\\w+=,.@-]{{2,64}}"))
    if not MIN_DURATION <= duration <= max_duration:
        problems.append(Problem("9", "DurationSeconds",
                                f"DurationSeconds {duration} must be {MIN_DURATION}..{max_duration}"))
    return problems


@dataclass(frozen=True)
class AssumeRoleCall:
    """The parameters of one sts:AssumeRole (docs/aws-rules.md §7.4), and what the calling session carries."""

    role_session_name: str
    duration: int = 3600
    external_id: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    source_identity: str | None = None
    tags: Mapping[str, str] | None = None
    transitive_keys: tuple[str, ...] = ()
    # the calling session (credentials from AssumeRole*: the call is role chaining)
    chained: bool = True
    caller_source_identity: str | None = None
    inherited_transitive: tuple[str, ...] = ()


def validate_assume_role(call: AssumeRoleCall, max_duration: int = MAX_DURATION) -> list[Problem]:
    """Every §7.4 rule an sts:AssumeRole breaks (empty: AWS would take its parameters)."""
    problems = _session_and_duration(call.role_session_name, call.duration,
                                     min(max_duration, CHAINED_MAX_DURATION) if call.chained else max_duration)
    problems = [Problem("1" if p.path == "RoleSessionName" else "2", p.path, p.message) for p in problems]
    if call.chained and call.duration > CHAINED_MAX_DURATION:
        problems.append(Problem("2", "DurationSeconds", f"role chaining: DurationSeconds {call.duration} is above "
                                                        f"{CHAINED_MAX_DURATION} (AWS refuses it)"))
    if call.external_id is not None and (why := external_id_problem(call.external_id)):
        problems.append(Problem("3", "ExternalId", why))
    problems += [Problem("4", "Policy", p) for p in policy_problems(call.policy, call.policy_arns)]
    if call.source_identity is not None:
        if not SOURCE_IDENTITY_RE.match(call.source_identity) or call.source_identity.lower().startswith("aws:"):
            problems.append(Problem("5", "SourceIdentity", "SourceIdentity must match [A-Za-z0-9_+=,.@-]{2,64}, "
                                                           "no 'aws:'"))
        if call.caller_source_identity is not None and call.source_identity != call.caller_source_identity:
            problems.append(Problem("5", "SourceIdentity", "the calling session's source identity cannot change "
                                                           "along a chain"))
    tags = dict(call.tags or {})
    problems += [Problem("6", "Tags", p) for p in tags_problems(tags, call.transitive_keys)]
    inherited = {k.lower() for k in call.inherited_transitive}
    problems += [Problem("6", f"Tags.{k}", f"tag {k!r} is inherited as a transitive tag; passing it again fails")
                 for k in tags if k.lower() in inherited]
    return problems


def assert_valid_jwt(token: str, **kw: Any) -> None:
    """``validate_jwt`` that raises with every problem listed (for tests and `bridge verify`)."""
    problems = validate_jwt(token, **kw)
    if problems:
        raise ValidationFailed("token breaks AWS rules:\n  " + "\n  ".join(map(str, problems)))
