"""DPoP proofs (RFC 9449) for the token exchange: a public app proves, with each ``POST /oauth/token``, that it
holds a private key — the proof is a JWT in the ``DPoP`` header signed by that key, naming this request. Pure:
no Flask, no Redis; the exchange (bridge/core/exchange.py) hands the header values, the token endpoint's URL
(from ``base_url``, never the request's ``Host``), the clock and the subject token, and keeps each proof's
``jti`` single-use (``OnceStore.first_use``, one namespace for every app and instance) until no instance — its
clock up to ``IAT_WINDOW`` off — could still take the proof (``Proof.until``).

``check_proof`` follows RFC 9449 §4.3 and refuses (``DpopRefused``, its bridge code in docs/errors.yaml) at the
first that fails: exactly one header, a compact JWS of bounded size; ``typ`` ``dpop+jwt``; ``alg`` one of
``ALGS`` (ES256, RS256, EdDSA/Ed25519: asymmetric, never ``none`` or ``HS*``); ``jwk`` a public key (no private
member) of that algorithm's type; the signature by that key; ``htm`` ``POST``; ``htu`` the token endpoint
(compared without query and fragment, scheme and host case-insensitively, default ports made explicit);
``iat`` within ``IAT_WINDOW`` seconds of now (either side); a ``jti`` of 16..256 characters; ``ath``, when
sent, the subject token's hash.

``check_binding``: a subject token carrying ``cnf`` (an IdP access token bound to a DPoP key, RFC 9449 §6) is
exchanged only with a proof by *that* key (``cnf.jkt`` equals the proof key's RFC 7638 thumbprint) whose ``ath``
names that token (§7.1: the bridge receives the token as a resource would); a ``cnf`` in another form is
refused — the binding cannot be checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import import_key

from bridge.domain.errors import BridgeError


class _Registry(jws.JWSRegistry):
    max_header_length = 4_096  # joserfc's 512 bytes is less than a header carrying an RSA-2048 jwk

TYP = "dpop+jwt"
# Asymmetric only: the key travels in the proof, so a symmetric one would be a shared secret sent in clear.
# EdDSA with an Ed25519 key; "Ed25519" is its fully-specified name (RFC 9864, which deprecates "EdDSA").
ALGS = {"ES256": ("EC", "P-256"), "RS256": ("RSA", None), "EdDSA": ("OKP", "Ed25519"), "Ed25519": ("OKP", "Ed25519")}
IAT_WINDOW = 60  # seconds either side of now: a proof is made for this request, right before it
JTI_MARGIN = 5  # seconds a spent jti is kept beyond 2 × IAT_WINDOW (the store's own clock, rounding)
MAX_PROOF = 8_192  # characters: an RSA-4096 proof is under 2 000
MIN_RSA_BITS = 2048
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
_DEFAULT_PORTS = {"https": 443, "http": 80}


class DpopRefused(BridgeError):
    """A refused DPoP proof (OAuth ``invalid_dpop_proof``): the message says which check failed, never the proof."""

    code = "dpop_proof_invalid"
    status = 400
    title = "The DPoP proof was refused"
    show_detail = True

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None,
                 oauth: str = "invalid_dpop_proof") -> None:
        super().__init__(message, code=code, message=message, hint=hint)
        self.oauth = oauth  # the OAuth error: invalid_dpop_proof, or use_dpop_nonce (RFC 9449 §8, dpop_nonce.py)


@dataclass(frozen=True)
class Proof:
    """A proof that passed ``check_proof``: its key's thumbprint (RFC 7638), its ``jti``, ``iat``, ``ath`` and
    ``nonce`` (RFC 9449 §8: checked by bridge/core/dpop_nonce.py for an app with ``dpop_nonce``)."""

    jkt: str
    jti: str
    iat: int
    ath: str | None
    nonce: str | None = None

    @property
    def until(self) -> int:
        """Until when its ``jti`` is kept: past the last moment *any* instance accepts the proof. One whose clock
        is behind by up to ``IAT_WINDOW`` still accepts it ``2 × IAT_WINDOW`` after ``iat`` by this one's."""
        return self.iat + 2 * IAT_WINDOW + JTI_MARGIN


def _bad(message: str) -> DpopRefused:
    return DpopRefused(message, code="dpop_proof_invalid",
                       hint="Sign a new proof per request: typ dpop+jwt, ES256 (or RS256, EdDSA), the public jwk, "
                            "htm, htu, iat and a fresh jti (RFC 9449 §4.2).")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """The JWK SHA-256 thumbprint of RFC 7638: the required members only, sorted, no whitespace."""
    members = THUMBPRINT_MEMBERS[jwk["kty"]]
    doc = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(doc.encode()).digest())


def token_hash(token: str) -> str:
    """``ath``: base64url of the SHA-256 of the token's ASCII text (RFC 9449 §4.2)."""
    return b64url(hashlib.sha256(token.encode("ascii", "replace")).digest())


def normalized_url(url: str) -> tuple[str, str, int, str] | None:
    """``url`` as (scheme, host, port, path) for comparison — query and fragment ignored; None: not an http(s) URL."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        return None
    scheme = u.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not u.hostname or u.username or u.password:
        return None
    return scheme, u.hostname.lower(), port or _DEFAULT_PORTS[scheme], u.path or "/"


def _segment(part: str | bytes, what: str) -> dict[str, Any]:
    """A JWS part as a JSON object: base64url text, or (``bytes``) the payload joserfc verified."""
    try:
        raw = part if isinstance(part, bytes) else base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        doc = json.loads(raw)
    except (ValueError, UnicodeError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise _bad(f"the proof's {what} is not base64url JSON") from None
    if not isinstance(doc, dict):
        raise _bad(f"the proof's {what} is not a JSON object")
    return doc


def _bits(n: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)).lstrip(b"\0")
    except ValueError:
        return 0
    return (len(raw) - 1) * 8 + raw[0].bit_length() if raw else 0


def _public_key(header: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The proof's ``jwk``: a public key of the type ``alg`` needs, imported (and its members, for the thumbprint)."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGS:
        raise _bad(f"the proof's alg {str(alg)[:20]!r} is not accepted: use one of {', '.join(ALGS)} (asymmetric "
                   "only; never none or HS*)")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise _bad("the proof's header has no jwk (the public key it is signed with)")
    if leaked := [m for m in PRIVATE_MEMBERS if m in jwk]:
        raise DpopRefused(f"the proof's jwk holds private key members ({', '.join(leaked)}): it must be the public "
                          "key only", code="dpop_proof_invalid",
                          hint="Put the public key in the header (WebCrypto: a non-extractable private key, the "
                               "public one exported as JWK); the private key never leaves the client.")
    kty, crv = ALGS[alg]
    if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv):
        raise _bad(f"the proof's jwk is not a {kty}{' ' + crv if crv else ''} key, as {alg} needs")
    if not all(isinstance(jwk.get(m), str) and jwk[m] for m in THUMBPRINT_MEMBERS[kty]):
        raise _bad(f"the proof's jwk lacks its {kty} members")
    if kty == "RSA" and _bits(jwk["n"]) < MIN_RSA_BITS:
        raise _bad(f"the proof's RSA key is shorter than {MIN_RSA_BITS} bits")
    try:
        key = import_key(jwk)
    except (JoseError, ValueError, TypeError):
        raise _bad("the proof's jwk is not a valid public key") from None
    return key, jwk


def check_proof(values: list[str], *, method: str, url: str, now: float, subject_token: str) -> Proof:
    """The DPoP proof among ``values`` (every ``DPoP`` header sent) for ``method`` ``url`` at ``now``, checked
    (RFC 9449 §4.3), or ``DpopRefused`` saying which check failed. The ``jti`` is the caller's to keep."""
    if len(values) != 1:
        raise _bad(f"send exactly one DPoP header ({len(values)} were sent)")
    claims, jwk = _signed(values[0].strip())
    _for_request(claims, method, url)
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or not math.isfinite(iat):  # NaN, Infinity
        raise _bad("the proof has no iat (a finite number: when it was made)")
    if abs(now - iat) > IAT_WINDOW:
        raise DpopRefused(f"the proof's iat is {int(now - iat)} s from the bridge's clock (at most {IAT_WINDOW} s "
                          "either way)", code="dpop_proof_stale",
                          hint="Make a new proof for each request, right before sending it; check the device's "
                               "clock.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 16 <= len(jti) <= 256:
        raise _bad("the proof's jti must be a unique string of 16..256 characters (e.g. crypto.randomUUID())")
    ath = claims.get("ath")
    if ath is not None and ath != token_hash(subject_token):
        raise DpopRefused("the proof's ath is not the hash of this subject token", code="dpop_key_mismatch",
                          hint="Compute ath over the subject_token sent (base64url SHA-256), or leave it out.")
    nonce = claims.get("nonce")
    return Proof(jkt=thumbprint(jwk), jti=jti, iat=int(iat), ath=ath if isinstance(ath, str) else None,
                 nonce=None if nonce is None else nonce if isinstance(nonce, str) else "")  # "": no nonce of ours


def _signed(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The proof's claims, once its signature verified with the public key in its own header (and that key)."""
    if len(proof) > MAX_PROOF:
        raise _bad(f"the DPoP proof is longer than {MAX_PROOF} characters")
    parts = proof.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _bad("the DPoP header is not a signed JWT (three base64url parts)")
    header = _segment(parts[0], "header")
    if header.get("typ") != TYP:
        raise _bad(f"the proof's typ must be {TYP}")
    key, jwk = _public_key(header)
    if not parts[2]:
        raise _bad("the proof has no signature")
    try:
        signed = jws.deserialize_compact(proof, key, registry=_Registry(algorithms=[header["alg"]]))
    except (JoseError, ValueError):
        raise _bad("the proof's signature does not verify with the key in its header") from None
    return _segment(signed.payload, "payload"), jwk


def _for_request(claims: dict[str, Any], method: str, url: str) -> None:
    """``htm`` and ``htu`` name this request (the URL without query and fragment)."""
    if claims.get("htm") != method:
        raise DpopRefused(f"the proof is for another request: htm must be {method}", code="dpop_proof_mismatch",
                          hint="Sign the proof for this request: htm POST, htu the bridge's token endpoint.")
    htu = claims.get("htu")
    if not isinstance(htu, str) or normalized_url(htu) is None or normalized_url(htu) != normalized_url(url):
        raise DpopRefused(f"the proof is for another request: htu must be {url}", code="dpop_proof_mismatch",
                          hint="Sign the proof for this request: htm POST, htu the bridge's token endpoint "
                               "(its base_url + /oauth/token).")


def bound_key(cnf: object) -> str | None:
    """The thumbprint a subject token's ``cnf`` binds it to (None: no ``cnf``, a bearer token); ``DpopRefused``
    when the token is bound in a way the bridge cannot check (not ``jkt``: a certificate, a key in another form)."""
    if cnf is None:
        return None
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str) or not jkt:
        raise DpopRefused("the subject token is bound to a key (cnf) in a form other than a DPoP key thumbprint "
                          "(cnf.jkt): the binding cannot be checked", code="dpop_key_mismatch",
                          hint="Exchange an ID token, or an access token the IdP bound with DPoP.")
    return jkt


def check_binding(proof: Proof | None, cnf: object) -> None:
    """A subject token bound to a DPoP key (``cnf.jkt``) needs a proof by that key naming the token (``ath``)."""
    jkt = bound_key(cnf)
    if jkt is None:
        return
    if proof is None:
        raise DpopRefused("the subject token is bound to a DPoP key (cnf.jkt): send a DPoP proof signed by that key",
                          code="dpop_proof_missing", hint="Sign a DPoP proof with the key the IdP bound the token "
                                                          "to, and send it in the DPoP header.")
    if proof.jkt != jkt:
        raise DpopRefused("the proof's key is not the key the subject token is bound to (cnf.jkt)",
                          code="dpop_key_mismatch", hint="Sign the proof with the key the token was issued to; "
                                                         "a token taken from another client cannot be exchanged.")
    if proof.ath is None:
        raise DpopRefused("the subject token is bound to a DPoP key: the proof must name it (ath)",
                          code="dpop_key_mismatch", hint="Add ath: base64url(SHA-256(subject_token)).")


def app_proof(mode: str, values: list[str], *, url: str, now: float, subject_token: str, cnf: object) -> Proof | None:
    """An app's exchange under its ``dpop`` mode: ``required`` — a valid proof; ``insecure_optional`` — a proof
    checked when sent (a bad one is never ignored); ``insecure_off`` — none taken (a header sent is refused: the
    client believes its exchange is bound, and it would not be). In every mode a DPoP-bound subject token needs
    its key's proof."""
    if mode == "insecure_off":
        if values or cnf is not None:
            raise DpopRefused("this app does not use DPoP (dpop: insecure_off): " + (
                "a DPoP header was sent" if values else "and the subject token is bound to a DPoP key (cnf)"),
                code="dpop_not_used", hint="Set the app's dpop to required (or insecure_optional) in the bridge's "
                                           "config, or send no DPoP header.")
        return None
    if not values:
        if mode == "required":
            raise DpopRefused("this app's exchanges need a DPoP proof (dpop: required) and no DPoP header was sent",
                              code="dpop_proof_missing", hint="Sign a DPoP proof (RFC 9449) with the app's key for "
                                                              "this request and send it in the DPoP header.")
        check_binding(None, cnf)
        return None
    proof = check_proof(values, method="POST", url=url, now=now, subject_token=subject_token)
    check_binding(proof, cnf)
    return proof


def workload_proof(values: list[str]) -> None:
    """A workload's exchange (no app) takes no DPoP proof: one sent is refused, never ignored."""
    if values:
        raise DpopRefused("an exchange without client_id (a workload's) takes no DPoP proof", code="dpop_not_used",
                          hint="Send no DPoP header, or exchange as a registered app (client_id) that uses DPoP.")
