"""Property test over every route of a real app (real Redis, the strict STS, the sign-in stand-in): random
path arguments, query strings, form fields and bodies — unicode digits, huge numbers, NULs, very long
strings, odd content types — signed in or not, with or without a CLI token. Never a 5xx, never a trace.

Flask's test client keeps it fast; examples per route are bounded (FUZZ_EXAMPLES to go deeper locally).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ACCOUNTS

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
RULES = [
    {"name": "admins", "match": {"group": "aws-admins"},
     "grants": [{"account": "sandbox", "role": "Admin", "duration": {"max": 43200}}]},
    {"name": "billing", "match": {"group": "aws-readonly"},
     "grants": [{"account": "sandbox", "role": "Billing", "console": "saml_post"}]},
]

# Strings that broke or could break number and text handling, besides random text.
NASTY = ["", "0", "-1", "900", "²", "1²", "٣٦٠٠", "９００", "9" * 5000, "1e9", "0x10", " 900", "\x00", "a\x00b",
         "x" * 20000, "../../etc/passwd", "%00", "%", "\r\nSet-Cookie: x=1", "<script>", "null", "[]", "{}",
         "https://evil.example.com", "//evil", "\\\\evil", "\u202e", "\ufeff", "𝟗𝟎𝟎"]
text = st.one_of(st.sampled_from(NASTY), st.text(st.characters(exclude_categories=("Cs",)), max_size=60))
# Numbers as a client might send them: plain, negative, huge, and digits int() reads differently from
# str.isdigit() ("²" is a digit to one and not the other).
number = st.one_of(st.integers(min_value=-10**30, max_value=10**30).map(str),
                   st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=8), text)
FIELDS = ["csrf_token", "destination", "region", "state", "user", "return_to", "profile", "identity",
          "user_code", "decision", "client_id", "grant_type", "device_code", "connector", "auto", "code",
          "SAMLResponse", "RelayState", "error"]
# The fields the views read, each present or not, plus random ones.
params = st.builds(lambda known, extra: {**extra, **known},
                   st.fixed_dictionaries({}, optional={"duration": number, **dict.fromkeys(FIELDS, text)}),
                   st.dictionaries(text, text, max_size=3))
ODD_TYPES = ["application/json", "text/plain", "application/xml", "multipart/form-data",
             "application/x-www-form-urlencoded; charset=utf-16", "application/octet-stream", "", "*/*;;;"]


def _sign_in(client: Any) -> dict[str, Any]:
    r = client.get("/login/dev")
    state = re.search(r"state=([\w-]+)", r.headers["Location"])
    assert state
    assert client.post("/callback/dev", data={"state": state[1], "user": "alice"}).status_code == 303
    doc: dict[str, Any] = client.get("/portal", headers={"Accept": "application/json"}).get_json()
    return doc


def _cli_token(client: Any, csrf: str) -> str:
    start = client.post("/oauth/device_authorization", data={"client_id": "bridge-cli"}).get_json()
    client.post("/device", data={"user_code": start["user_code"], "decision": "approve", "confirm": "yes",
                              "csrf_token": csrf})
    tok = client.post("/oauth/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                            "client_id": "bridge-cli", "device_code": start["device_code"]})
    return str(tok.get_json()["access_token"])


def _real_args(portal: dict[str, Any]) -> dict[str, list[str]]:
    """Values that reach past the lookups: a granted role, the configured connector, a known account."""
    ids = [g["id"] for g in portal["grants"]]
    return {"grant_id": ids, "connector_id": ["dev"], "account": ["sandbox", "123456789012"],
            "role": ["Admin", "Billing"], "filename": ["bridge.js", "style.css"]}


@pytest.fixture
def app(make_settings, app_factory) -> Any:  # type: ignore[no-untyped-def]
    # Rate limits off: a 429 is fine, but would stop the fuzz from reaching the code behind it.
    return app_factory(make_settings(mapping={"accounts": ACCOUNTS, "rules": RULES},
                                     rate_limits={"sign_in_per_minute": 0, "credentials_per_minute": 0,
                                                  "device_per_minute": 0, "device_code_per_minute": 0}))


def test_no_route_answers_5xx_to_any_input(app, federation_stub) -> None:  # type: ignore[no-untyped-def]
    rules = sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
    assert len(rules) > 20  # every blueprint registered
    seen: dict[str, set[int]] = {}
    for rule in rules:
        fuzz_rule(app, rule, seen.setdefault(rule.rule, set()))
    # The signed-in browser and the CLI token got through: the authenticated routes were reached.
    assert 200 in seen["/portal"] and 200 in seen["/api/v1/grants"], seen


def fuzz_rule(app: Any, rule: Any, seen: set[int]) -> None:
    """Run the property for one route, with a fresh signed-in browser and CLI token (a fuzzed
    /logout may end them)."""
    browser = app.test_client()
    portal = _sign_in(browser)
    token = _cli_token(browser, portal["csrf_token"])
    real = _real_args(portal)
    allowed = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    usual_client = "cli" if rule.rule.startswith("/api/") else "browser"

    @settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(data=st.data(), usual=st.sampled_from([True, True, True, False]), query=params, form=params,
           body=st.sampled_from(["form", "form", "form", "multipart", "json", "raw"]),
           odd_type=st.sampled_from(ODD_TYPES), raw=st.binary(max_size=300),
           accept=st.sampled_from(["text/html", "application/json", "*/*", ""]))
    def check(data: st.DataObject, usual: bool, query: dict[str, str], form: dict[str, str], body: str,
              odd_type: str, raw: bytes, accept: str) -> None:
        # Mostly a request the route takes from its usual client (signed in, its method, the CSRF token,
        # real grant/connector ids), so the fuzzed fields reach the code behind those checks; else anything.
        if usual:
            method, who, csrf = data.draw(st.sampled_from(allowed)), usual_client, True
            args = {a: data.draw(st.sampled_from(real.get(a, ["x"]))) for a in sorted(rule.arguments)}
        else:
            method = data.draw(st.sampled_from([*allowed, "HEAD", "OPTIONS", "PUT", "PATCH", "BREW"]))
            who = data.draw(st.sampled_from(["browser", "cli", "anonymous"]))
            csrf = data.draw(st.booleans())
            args = {a: data.draw(st.one_of(st.sampled_from(real.get(a, ["x"])), text.filter(bool)))
                    for a in sorted(rule.arguments)}
        path = rule.rule
        for name, value in args.items():
            path = re.sub(rf"<(?:[^:<>]+:)?{name}>", quote(value, safe="/" if "path:" in rule.rule else ""), path)
        headers = {"Accept": accept} if accept else {}
        client = browser if who == "browser" else app.test_client()
        if who == "cli":
            headers["Authorization"] = f"Bearer {token}"
        if csrf:
            form = {**form, "csrf_token": portal["csrf_token"]}
        kw: dict[str, Any] = {"query_string": query, "headers": headers}
        if method not in ("GET", "HEAD"):
            if body == "form":
                kw["data"] = form
            elif body == "multipart":
                kw["data"] = form
                kw["content_type"] = "multipart/form-data"
            elif body == "json":
                kw["json"] = form
            else:
                kw["data"] = raw
                kw["content_type"] = odd_type
        r = client.open(path, method=method, **kw)
        seen.add(r.status_code)
        assert r.status_code < 500, (method, path, query, form, body, r.status_code, r.get_data()[:300])
        assert b"Traceback" not in r.get_data()

    check()
