"""The token exchange's HTTP side (RFC 8693, bridge/core/exchange.py): ``POST /oauth/token`` with the
token-exchange grant (dispatched here by bridge/web/api.py) and its CORS preflight (``OPTIONS``).

CORS is answered only for an origin some app lists (``apps[].origins``), and the exchange itself only for
that app's origins: a disallowed origin gets no ``Access-Control-*`` header (the browser hides the answer)
and no credentials (the exchange is refused). No cookies are read or allowed (no
``Access-Control-Allow-Credentials``); every answer is ``Cache-Control: no-store``.

For an app with ``dpop_nonce`` (bridge/core/dpop_nonce.py) every answer — credentials or a refusal, above all
``use_dpop_nonce`` — carries a fresh ``DPoP-Nonce`` header (RFC 9449 §8, §8.2), which an allowed origin's page
may read (``Access-Control-Expose-Headers``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from flask import Response, request
from flask.typing import ResponseReturnValue

from bridge.core.exchange import TokenExchange
from bridge.core.exchange_refused import ExchangeRefused, as_refusal
from bridge.domain.errors import BridgeError
from bridge.telemetry.logs import event
from bridge.web.common import audit_context, client_address, services

ALLOW_HEADERS = "Content-Type, DPoP"  # DPoP: the proof of the app's key (RFC 9449, bridge/core/dpop.py)
EXPOSE_HEADERS = "DPoP-Nonce"  # the answer's nonce, for the next proof (apps[].dpop_nonce)
MAX_AGE = "600"


def _exchange() -> TokenExchange:
    return services().exchange


def _headers(origin: str | None, allowed: bool) -> list[tuple[str, str]]:
    """Every answer's: never stored, varying by ``Origin``, CORS only when ``allowed``."""
    headers = [("Cache-Control", "no-store"), ("Pragma", "no-cache"), ("Vary", "Origin")]
    if origin and allowed:
        headers.append(("Access-Control-Allow-Origin", origin))
    return headers


def preflight() -> ResponseReturnValue:
    """``OPTIONS /oauth/token``: allowed for an origin an app lists; others get no CORS headers."""
    origin = request.headers.get("Origin")
    allowed = _exchange().cors_allowed(origin)
    headers = _headers(origin, allowed)
    if allowed:
        headers += [("Access-Control-Allow-Methods", "POST"), ("Access-Control-Allow-Headers", ALLOW_HEADERS),
                    ("Access-Control-Max-Age", MAX_AGE)]
    else:
        event("exchange_origin_refused", origin=(origin or "")[:200], preflight=True)
    return Response(status=204, headers=headers)


def token_exchange(form: dict[str, list[str]]) -> ResponseReturnValue:
    """RFC 8693 §2.1: a registered app's subject token → AWS credentials (or an OAuth error JSON); ``form``: the
    request's fields (bridge/web/form.py)."""
    environ = request.environ
    origin = environ.get("HTTP_ORIGIN")
    ex = _exchange()
    client_id = (form.get("client_id") or [""])[0]
    nonce = ex.nonces.fresh(client_id.strip())  # None unless the app has dpop_nonce
    try:
        try:
            # a proxy (and the WSGI server) joins repeated headers with commas (a JWT has none): each part counts
            # as one header sent. From the environ: request.headers.getlist walks every header of the request.
            header = environ.get("HTTP_DPOP")
            dpop = [] if header is None else header.split(",")
            body = ex.exchange(form, origin=origin, ctx=audit_context(), dpop=dpop, address=client_address())
        except ExchangeRefused:
            raise
        except BridgeError as other:  # the store or the audit unreachable: OAuth JSON, never an HTML page
            raise as_refusal(other) from None
    except ExchangeRefused as e:
        event("exchange_refused", error=e.oauth, code=e.code, client_id=client_id[:128])
        resp = _json(e.body(), e.status, origin, ex.cors_allowed(origin) and e.code != "exchange_origin_refused",
                     nonce=nonce)
        if e.retry_after:
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    return _json(body, 200, origin, True, nonce=nonce)


def _json(body: Mapping[str, object], status: int, origin: str | None, allowed: bool, *,
          nonce: str | None = None) -> Response:
    """The answer as JSON with its headers made at once (jsonify and setting each header cost more than the
    cached exchange's own checks): ``_headers``, the app's fresh ``DPoP-Nonce`` when it has one, readable by an
    allowed origin's page."""
    headers = _headers(origin, allowed)
    if nonce:
        headers.append(("DPoP-Nonce", nonce))
    if origin and allowed:
        headers.append(("Access-Control-Expose-Headers", EXPOSE_HEADERS))
    return Response(json.dumps(body, separators=(",", ":")), status, headers, mimetype="application/json")
