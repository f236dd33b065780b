"""``create_app(settings)``: the Flask factory. Everything is built here, nothing at import time."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.middleware.proxy_fix import ProxyFix

from bridge.config import Settings, listen_port, load_settings, startup_warnings
from bridge.telemetry.logs import event, setup_logging
from bridge.web.common import METRICS_LISTENER
from bridge.web.services import Services, build_services

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # bridge/, where the wheel keeps _templates, _static
# Set by gunicorn's master (deploy/gunicorn.conf.py) once it logged the startup warnings: its workers,
# each building its own app, do not log them again (4 workers: 4 copies of every warning).
STARTUP_WARNINGS_LOGGED = "BRIDGE_STARTUP_WARNINGS_LOGGED"


def log_startup_warnings(settings: Settings) -> None:
    """One ``config_warning`` log line per startup warning."""
    for warning in startup_warnings(settings):
        event("config_warning", logging.WARNING, message=warning)


def asset_dir(name: str) -> Path:
    """``templates``/``static``: inside the wheel (``bridge/_name``) or at the repository root."""
    packaged = PACKAGE_DIR / f"_{name}"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / name


def human_duration(seconds: int) -> str:
    """900 → "15 min", 5400 → "1 h 30 min", 43200 → "12 h"."""
    h, m = divmod(int(seconds) // 60, 60)
    return " ".join(p for p in (f"{h} h" if h else "", f"{m} min" if m else "") if p) or f"{seconds} s"


def utc_time(epoch: float) -> str:
    """1764291569 → "2026-11-28T00:59:29Z" (pages show UTC; the script shows it in the browser's zone)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))
def _accepted_on(environ: WSGIEnvironment) -> int | None:
    """The local port the connection was accepted on. Under gunicorn, from the connection's socket: a
    unix-socket listener has none (gunicorn then fills SERVER_PORT from the Host header, which the
    client chooses). Elsewhere (werkzeug's servers, tests) SERVER_PORT, which they take from their socket."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        try:
            local = sock.getsockname()
        except OSError:
            return None
        return int(local[1]) if isinstance(local, tuple) and len(local) >= 2 else None
    port = str(environ.get("SERVER_PORT", ""))
    return int(port) if port.isdigit() else None


def _mark_metrics_listener(wsgi_app: WSGIApplication, port: int | None) -> WSGIApplication:
    """Flag requests that came in on ``metrics.listen``; outside ProxyFix, and never from a header."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[METRICS_LISTENER] = port is not None and _accepted_on(environ) == port
        return wsgi_app(environ, start_response)

    return app


class NoFlaskSession(SessionInterface):
    """Sessions live server-side (``bridge/core/sessions.py``), never in Flask's signed cookie: no request
    builds a cookie signer to open a session nobody reads (``flask.session`` is Flask's NullSession,
    which refuses writes)."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """Build the app. Without settings, reads the file named by ``BRIDGE_CONFIG`` (gunicorn path)."""
    if settings is None:
        settings = load_settings(os.environ.get("BRIDGE_CONFIG", "config/bridge.yaml"))
    setup_logging(settings.log_level)
    if os.environ.get(STARTUP_WARNINGS_LOGGED) != "1":  # under gunicorn the master logged them, once
        log_startup_warnings(settings)
    app = Flask("bridge", template_folder=str(settings.templates_dir or asset_dir("templates")),
                static_folder=str(asset_dir("static")))
    app.session_interface = NoFlaskSession()
    app.config.update(SECRET_KEY=settings.secret_key.get_secret_value(), MAX_CONTENT_LENGTH=1024 * 1024,
                      JSON_SORT_KEYS=False)
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=settings.trusted_proxies, x_host=settings.trusted_proxies)
    if settings.metrics.listen is not None:
        app.wsgi_app = _mark_metrics_listener(app.wsgi_app,  # type: ignore[method-assign,assignment]
                                              listen_port(settings.metrics.listen))
    app.extensions["bridge"] = services or build_services(settings)
    app.add_template_filter(human_duration, "duration")
    app.add_template_filter(utc_time, "utc")

    from bridge.web import api, console, errors, login, portal, sso, stepup, wellknown
    from bridge.web import requests as access_requests

    errors.init_app(app)
    for bp in (login.bp, portal.bp, console.bp, wellknown.bp, api.bp, sso.bp, sso.page, access_requests.bp, stepup.bp):
        app.register_blueprint(bp)
    if app.extensions["bridge"].scim is not None:  # off (404) unless scim.token is set
        from bridge.web import scim

        app.register_blueprint(scim.bp)
    event("app_started", connectors=sorted(app.extensions["bridge"].connectors),
          issuer=settings.issuer_url, keys=len(app.extensions["bridge"].keyring.keys))
    return app
