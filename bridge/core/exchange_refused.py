"""A refused token exchange (bridge/core/exchange.py) in OAuth's words. No Flask here."""

from __future__ import annotations

from bridge.domain.errors import BridgeError


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
