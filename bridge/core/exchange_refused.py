"""A refused token exchange (bridge/core/exchange.py) in OAuth's words: the error, a connector's refusal of the
subject token, a refusal on the way (MFA, STS, the store). No Flask here."""

from __future__ import annotations

import base64
import json

from bridge.domain.errors import BridgeError, LoginError

# The connector's own refusal codes (bridge/upstream/oidc_subject.py) that the exchange passes on.
TOKEN_CODES = {"subject_token_expired": "the subject token has expired",
               "subject_token_audience": "the subject token is for another client than this app",
               "invalid_id_token": "the subject token did not verify"}


class ExchangeRefused(BridgeError):
    """A refused token exchange: ``oauth`` is the RFC 6749 §5.2 / RFC 8693 error, ``code`` the bridge's
    (docs/troubleshooting.md), the message the ``error_description``. Never a token or a claim value in it."""

    code = "exchange_invalid_request"
    status = 400
    title = "The token exchange was refused"
    show_detail = True

    def __init__(self, oauth: str, message: str, *, code: str | None = None, status: int | None = None,
                 hint: str | None = None, retry_after: int = 0) -> None:
        super().__init__(message, code=code, message=message, status=status, hint=hint)
        self.oauth = oauth
        self.retry_after = retry_after

    def body(self) -> dict[str, str]:
        """The JSON an OAuth client reads (RFC 6749 §5.2 plus the bridge's code and hint)."""
        return {"error": self.oauth, "error_description": self.message, "error_code": self.code,
                **({"hint": self.hint} if self.hint else {})}


def token_refusal(last: LoginError, *, workload: bool = False) -> ExchangeRefused:
    """A connector's refusal of the subject token in OAuth's words (``invalid_grant`` with the failed check)."""
    what = TOKEN_CODES.get(last.code, TOKEN_CODES["invalid_id_token"])
    if workload and last.code == "subject_token_audience":
        what = "the subject token is for another audience than the workload connector's"
    why = f"{what} ({last.detail[:200]})"
    again = "Get a new token from the CI platform and exchange it." if workload else \
        "Sign the user in again and exchange the new token."
    if last.code == "subject_token_expired":
        return ExchangeRefused("invalid_grant", why, code="exchange_token_expired", hint=again)
    if last.code == "subject_token_lifetime":
        return ExchangeRefused("invalid_grant", f"the subject token lives too long ({last.detail[:200]})",
                               code="exchange_token_lifetime", hint="Ask the platform for a shorter-lived token, or "
                               "raise the workload connector's max_token_lifetime (at most 86400 s).")
    if last.code == "subject_token_audience":
        return ExchangeRefused("invalid_grant", why, code="exchange_token_audience",
                               hint="Ask the CI platform for a token with the bridge's URL as audience (the "
                               "connector's audiences)." if workload else
                               "Sign the user in with the app's own client id (apps[].idp_audiences).")
    return ExchangeRefused("invalid_grant", why, code="exchange_token_invalid", hint=again)


def as_refusal(e: BridgeError) -> ExchangeRefused:
    """A refusal on the way (MFA, duration, STS, the store) in OAuth's words; STS, Redis or the audit
    unreachable is a 503 ``temporarily_unavailable``."""
    if e.status >= 500:
        return ExchangeRefused("temporarily_unavailable", f"AWS credentials cannot be issued now ({e.code})",
                               code="exchange_unavailable", status=503, retry_after=30)
    return ExchangeRefused("invalid_grant", f"AWS credentials were refused: {e.message}", code="exchange_issue_refused",
                           hint=e.hint)


def scim_refusal(*, unmatched: bool) -> ExchangeRefused:
    """SCIM refused the subject token's user: deactivated (or deleted), or — ``unmatched`` — it cannot tell,
    the token having no single value of the claim SCIM matches on (fail closed)."""
    if unmatched:
        return ExchangeRefused("invalid_grant", "the subject token lacks the claim SCIM matches users on (or has "
                               "several values of it), so whether this user is still active cannot be told: no AWS "
                               "credentials are issued", code="exchange_scim_unmatched", status=403,
                               hint="Have the identity provider put that claim (the bridge's scim.claim; e-mail: the "
                               "email scope) in the token.")
    return ExchangeRefused("invalid_grant", "the identity provider deactivated this user (SCIM): no AWS credentials "
                           "are issued for them", code="exchange_deprovisioned", status=403,
                           hint="If this is a mistake, reactivate the user at the identity provider; its next SCIM "
                           "push lets the exchange work again.")


ACCESS_TYPS = ("at+jwt", "application/at+jwt")  # RFC 9068 §2.1: a JWT access token says so in its header


_TYPS: dict[str, str | None] = {}  # JOSE header → its typ: an IdP signs every token under the same few headers


def _typ(head: str) -> str | None:
    """The lowercased ``typ`` of the JOSE header ``head`` (``jwt`` when absent, ``?`` when not text; None:
    malformed). Kept for short headers (bounded: an odd one is worked out again, never stored without end)."""
    if (kind := _TYPS.get(head, "")) != "":
        return kind
    try:
        doc = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, RecursionError):
        return None  # malformed: the connector says so
    typ = doc.get("typ") if isinstance(doc, dict) else None
    kind = typ.lower() if isinstance(typ, str) else "jwt" if typ is None else "?"
    if len(head) <= 1024:
        if len(_TYPS) >= 256:
            _TYPS.clear()
        _TYPS[head] = kind
    return kind


def typ_refusal(token: str, *, id_token: bool) -> ExchangeRefused | None:
    """The subject token's JOSE header ``typ`` against the ``subject_token_type`` sent (a refusal only: read
    before the signature, it never lets a token through). An ID token's is absent or ``JWT``; ``…:jwt`` takes
    that or an access token's (``at+jwt``). Any other (``logout+jwt``, ``dpop+jwt``, …) is no subject token."""
    kind = _typ(token.split(".", 1)[0])
    if kind is None or kind in ("jwt", "application/jwt") or (kind in ACCESS_TYPS and not id_token):
        return None
    what = "an access token (typ at+jwt)" if kind in ACCESS_TYPS else "not an ID token or access token"
    return ExchangeRefused("invalid_request", f"the subject token is {what}, but subject_token_type says "
                           f"{'an ID token' if id_token else 'a JWT'}", code="exchange_token_type",
                           hint="Send the user's ID token with subject_token_type …:id_token, or a JWT access "
                           "token with …:jwt.")
