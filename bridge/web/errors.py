"""Request ids, security headers, session cookies, and every error as a page or JSON (never a 500 trace)."""

from __future__ import annotations

import logging
import re
import secrets
import time
import traceback

from flask import Flask, abort, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from bridge.domain.errors import BridgeError, NotSignedIn
from bridge.telemetry.logs import correlation_id, event, request_id
from bridge.upstream.base import sign_in_choices
from bridge.web.common import METRICS_LISTENER, RETRY_AFTER, current_session, services, wants_json

_RID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# The method label of bridge_http_requests_total: any other method is "other", so a client cannot
# create new time series by inventing methods.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


# Sign-ins that cannot go on because their server-side state is gone (expired, used, or lost
# with a Redis restart), or was never made here (IdP-initiated SAML): the browser is shown the sign-in
# page again, with a note, not a dead end.
_BACK_TO_SIGN_IN = {"login_expired", "saml_unsolicited"}


def _error_response(err: BridgeError, headers: dict[str, str] | None = None) -> ResponseReturnValue:
    body = {**err.public(), "request_id": request_id.get()}
    headers = dict(headers or {})
    if err.status in (429, 503):
        headers["Retry-After"] = str(getattr(err, "retry_after", RETRY_AFTER))
    if request.path.startswith("/oauth/"):  # an OAuth client reads RFC 6749 §5.2's fields (a 413, 405, 503 …)
        oauth = "temporarily_unavailable" if err.status == 503 else "server_error" if err.status >= 500 else \
            "invalid_request"
        return jsonify({"error": oauth, "error_description": body["message"], "error_code": err.code,
                        "hint": body["hint"], "request_id": body["request_id"]}), err.status, headers
    if wants_json():
        return jsonify(body), err.status, headers
    if err.code in _BACK_TO_SIGN_IN:
        svc = services()
        return render_template("index.html", connectors=sign_in_choices(svc.connectors.values()), return_to="/portal",
                               signed_in=False, note=body), err.status, headers
    return render_template("error.html", err=body, signed_in=_signed_in(), status=err.status,
                           support=services().settings.support_href), err.status, headers


def _signed_in() -> bool:
    """Whether to offer "Back to your roles" rather than "Back to sign-in" (False if that cannot be told)."""
    try:
        return current_session() is not None
    except Exception:  # noqa: BLE001 - the store may be what failed: an error page must still render
        return False


# What people see for the framework's own errors (a wrong address, a form's address opened as a page),
# in place of werkzeug's wording.
_HTTP_ERRORS = {
    404: ("Page not found", "There is no page at this address.",
          "Check the address, or start again from your roles."),
    405: ("This page cannot be opened like this", "This address is the target of a button, not a page to open.",
          "Go back and use the button, or start again from your roles."),
}


def init_app(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        rid = request.headers.get("X-Request-ID", "")
        rid = rid if _RID_RE.match(rid) else secrets.token_hex(8)
        g.request_id = rid
        g.started = time.perf_counter()
        request_id.set(rid)
        correlation_id.set(None)
        if request.environ.get(METRICS_LISTENER) and request.endpoint != "wellknown.metrics":
            abort(404)  # the metrics listener serves /metrics and nothing else

    @app.after_request
    def _finish(resp: Response) -> Response:
        svc = services()
        s = svc.settings.session
        if new_sid := g.get("new_session_id"):
            resp.set_cookie(svc.settings.session_cookie, new_sid, max_age=s.absolute_timeout, httponly=True,
                            secure=svc.settings.secure_cookies, samesite="Lax", path="/")
        elif g.get("clear_session_cookie"):
            resp.delete_cookie(svc.settings.session_cookie, path="/", httponly=True, secure=svc.settings.secure_cookies,
                               samesite="Lax")
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        svc.metrics.http_requests.labels(endpoint, method, str(resp.status_code)).inc()
        if "started" in g:
            svc.metrics.http_latency.labels(endpoint).observe(time.perf_counter() - g.started)
        resp.headers["X-Request-ID"] = g.get("request_id", "-")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        # form-action: forms post to the bridge only, except the few pages that send the browser on to AWS
        # sign-in (g.form_action_extra, set by those views): an injected form cannot post data elsewhere.
        form_action = " ".join(["'self'", *g.get("form_action_extra", ())])
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                                f"form-action {form_action}")
        if svc.settings.secure_cookies:  # https base_url: browsers remember to never use plain http here
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        # Pages carry a session's CSRF token, credentials, other people's requests and e-mails: nothing is
        # stored by a browser or a proxy unless its view said it may be (public metadata, static files).
        if g.get("no_store") or "Cache-Control" not in resp.headers or request.path.startswith((
                "/portal", "/credentials", "/callback", "/api/", "/oauth/", "/device", "/requests", "/sso/")):
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["Pragma"] = "no-cache"
        return resp

    @app.errorhandler(BridgeError)
    def _bridge_error(err: BridgeError) -> ResponseReturnValue:
        if isinstance(err, NotSignedIn) and request.method == "GET" and not wants_json():
            return redirect(url_for("login.index", return_to=request.full_path.rstrip("?")))
        level = logging.WARNING if err.status < 500 else logging.ERROR
        event("request_failed", level, code=err.code, status=err.status, path=request.path,
              error_type=type(err).__name__, detail=err.detail[:300])
        return _error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> ResponseReturnValue:
        status = err.code or 500
        title, message, hint = _HTTP_ERRORS.get(status, (err.name or "Error", err.description or "",
                                                         "Check the address, or go back to the start page."))
        if status == 404 and err.description and not err.description.startswith("The requested URL"):
            message = err.description  # the view's own words (abort(404, description=...))
        be = BridgeError(err.description or "", code=(err.name or "error").lower().replace(" ", "_"),
                         message=message, status=status, title=title, hint=hint)
        allow = getattr(err, "valid_methods", None)
        return _error_response(be, {"Allow": ", ".join(allow)} if status == 405 and allow else None)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> ResponseReturnValue:
        # The one place an unexpected exception lands: logged by type only, shown generically.
        # Only where it happened, not the message: messages of library errors can carry input data.
        frames = traceback.extract_tb(err.__traceback__)
        where = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in frames[-3:]]
        event("unhandled_error", logging.ERROR, error_type=type(err).__name__, path=request.path, where=where)
        return _error_response(BridgeError(type(err).__name__))
