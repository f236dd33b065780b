"""``session_id`` (bridge/web/common.py): the session cookie's value as ``request.cookies`` has it, kept per
Cookie header (werkzeug walks the environ and parses every cookie on each request), each header its own."""

from __future__ import annotations

from types import SimpleNamespace

from flask import Flask

from bridge.web import common
from bridge.web.common import session_hash, session_id


def _app(cookie: str = "bridge_session") -> Flask:
    app = Flask("t")
    app.extensions["bridge"] = SimpleNamespace(settings=SimpleNamespace(session_cookie=cookie))
    return app


def _sid(app: Flask, header: str | None) -> str:
    with app.test_request_context(headers={"Cookie": header} if header is not None else {}):
        return session_id()


def test_each_cookie_header_gets_its_own_session_and_none_gets_none() -> None:
    app = _app()
    assert _sid(app, "theme=dark; bridge_session=s1") == "s1"
    assert _sid(app, "bridge_session=s2") == "s2"
    assert _sid(app, "theme=dark; bridge_session=s1") == "s1"  # the same header again: as parsed the first time
    assert _sid(app, "theme=dark") == "" and _sid(app, None) == "" and _sid(app, "bridge_session=") == ""
    assert _sid(_app("other"), "bridge_session=s1; other=o1") == "o1"  # the configured name, not the first seen
    with app.test_request_context(headers={"Cookie": f"bridge_session={'x' * 129}"}):
        assert session_hash() is None  # an overlong id is no session (and not looked up)


def test_a_long_cookie_header_is_parsed_and_not_kept() -> None:
    header = f"junk={'j' * 2000}; bridge_session=s3"
    assert _sid(_app(), header) == "s3"
    assert ("bridge_session", header) not in common._SESSION_COOKIES
    common._SESSION_COOKIES.clear()
    for i in range(5000):  # bounded: many browsers seen lately push out the old entries, never grow past 4,096
        _sid(_app(), f"bridge_session=s{i}")
    assert len(common._SESSION_COOKIES) <= 4096 and _sid(_app(), "bridge_session=s4999") == "s4999"
