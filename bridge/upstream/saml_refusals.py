"""Why a SAML response was refused, in words the user reads: which check failed, never a value from it.

python3-saml reports its checks with a ``OneLogin_Saml2_ValidationError`` code; the adapter's own checks
(bridge/upstream/saml.py) name theirs. Each check has its error code (docs/errors.yaml) and one sentence
of ours — the library's message (URLs, IDs, times from the response) goes to the log only.
"""

from __future__ import annotations

from collections.abc import Callable

from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as V

from bridge.domain.errors import LoginError, SamlUnsolicited

# One LoginError per check, spelled out (code and message literal: the troubleshooting page is generated
# from them, scripts/gen_docs.py).
_REFUSALS: dict[str, Callable[[str], LoginError]] = {
    "signature": lambda d: LoginError(
        d, code="saml_invalid",
        message="The sign-in response from your identity provider failed the bridge's signature "
                "check: its signature does not verify with the identity provider's certificate, or "
                "its assertion is not signed."),
    "algorithm": lambda d: LoginError(
        d, code="saml_invalid",
        message="The sign-in response from your identity provider failed the bridge's algorithm "
                "check: it is signed with SHA-1, which the bridge refuses."),
    "encryption": lambda d: LoginError(
        d, code="saml_invalid",
        message="The sign-in response from your identity provider failed the bridge's encryption "
                "check: its assertion is not encrypted as the connector requires, or cannot be "
                "decrypted with the bridge's key."),
    "NameID": lambda d: LoginError(
        d, code="saml_invalid",
        message="The sign-in response from your identity provider failed the bridge's NameID check: "
                "its assertion has no NameID."),
    "structure": lambda d: LoginError(
        d, code="saml_invalid",
        message="The sign-in response from your identity provider failed the bridge's structure "
                "check: it is not a SAML response the bridge can read (one signed assertion, with "
                "conditions)."),
    "audience": lambda d: LoginError(
        d, code="saml_audience",
        message="The sign-in response from your identity provider failed the bridge's audience check:"
                " it is meant for another service (its Audience is not the bridge's entity id)."),
    "destination": lambda d: LoginError(
        d, code="saml_destination",
        message="The sign-in response from your identity provider failed the bridge's destination "
                "check: it was sent to another address (its Destination is not the bridge's)."),
    "recipient": lambda d: LoginError(
        d, code="saml_recipient",
        message="The sign-in response from your identity provider failed the bridge's recipient "
                "check: its SubjectConfirmation is not for the bridge's address (Recipient), or has "
                "expired."),
    "expiry": lambda d: LoginError(
        d, code="saml_expired",
        message="The sign-in response from your identity provider failed the bridge's expiry check: "
                "it has expired (NotOnOrAfter), or says nothing about when it expires."),
    "validity start": lambda d: LoginError(
        d, code="saml_not_yet_valid",
        message="The sign-in response from your identity provider failed the bridge's validity start "
                "check: it is not valid yet (NotBefore): the clocks of the identity provider and the "
                "bridge disagree."),
    "issuer": lambda d: LoginError(
        d, code="saml_issuer",
        message="The sign-in response from your identity provider failed the bridge's issuer check: "
                "it comes from another identity provider than this connector's (Issuer)."),
    "request": lambda d: LoginError(
        d, code="saml_in_response_to",
        message="The sign-in response from your identity provider failed the bridge's request check: "
                "it answers another sign-in than the one started in this browser (InResponseTo)."),
    "replay": lambda d: LoginError(
        d, code="saml_replayed",
        message="The sign-in response from your identity provider failed the bridge's replay check: "
                "it was already used."),
}
CHECKS = tuple(_REFUSALS)

_SIGNATURE = {V.WRONG_SIGNED_ELEMENT, V.ID_NOT_FOUND_IN_SIGNED_ELEMENT, V.DUPLICATED_ID_IN_SIGNED_ELEMENTS,
              V.INVALID_SIGNED_ELEMENT, V.DUPLICATED_REFERENCE_IN_SIGNED_ELEMENTS, V.UNEXPECTED_SIGNED_ELEMENTS,
              V.WRONG_NUMBER_OF_SIGNATURES_IN_RESPONSE, V.WRONG_NUMBER_OF_SIGNATURES_IN_ASSERTION, V.NO_SIGNED_MESSAGE,
              V.NO_SIGNED_ASSERTION, V.NO_SIGNATURE_FOUND, V.INVALID_SIGNATURE, V.WRONG_NUMBER_OF_SIGNATURES}
_BY_CODE: dict[int, str] = {
    **dict.fromkeys(_SIGNATURE, "signature"),
    V.DEPRECATED_SIGNATURE_METHOD: "algorithm", V.DEPRECATED_DIGEST_METHOD: "algorithm",
    **dict.fromkeys((V.NO_ENCRYPTED_ASSERTION, V.NO_ENCRYPTED_NAMEID, V.KEYINFO_NOT_FOUND_IN_ENCRYPTED_DATA,
                     V.CHILDREN_NODE_NOT_FOUND_IN_KEYINFO, V.UNSUPPORTED_RETRIEVAL_METHOD), "encryption"),
    **dict.fromkeys((V.NO_NAMEID, V.EMPTY_NAMEID, V.SP_NAME_QUALIFIER_NAME_MISMATCH), "NameID"),
    V.WRONG_AUDIENCE: "audience",
    V.WRONG_DESTINATION: "destination", V.EMPTY_DESTINATION: "destination",
    V.WRONG_SUBJECTCONFIRMATION: "recipient",
    **dict.fromkeys((V.ASSERTION_EXPIRED, V.RESPONSE_EXPIRED, V.SESSION_EXPIRED), "expiry"),
    V.ASSERTION_TOO_EARLY: "validity start",
    **dict.fromkeys((V.WRONG_ISSUER, V.ISSUER_MULTIPLE_IN_RESPONSE, V.ISSUER_NOT_FOUND_IN_ASSERTION), "issuer"),
    V.WRONG_INRESPONSETO: "request",
}


def check_of(e: Exception) -> str:
    """The check a python3-saml exception reports (``structure`` for anything it does not classify)."""
    code = getattr(e, "code", None)
    return _BY_CODE.get(code, "structure") if isinstance(code, int) else "structure"


def refused(check: str, detail: str) -> LoginError:
    """The LoginError for a failed ``check``: its code, and a message naming the check. ``detail`` is for
    the log (it may quote the response: never shown)."""
    return _REFUSALS[check](detail)


def unsolicited(detail: str) -> SamlUnsolicited:
    """A response to no sign-in we started (IdP-initiated)."""
    return SamlUnsolicited(detail)
