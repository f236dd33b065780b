"""Property test over every route of a real app (real Redis, the strict STS, the sign-in stand-in): random
path arguments, query strings, form fields and bodies — unicode digits, huge numbers, NULs, very long
strings, odd content types — signed in or not, with or without a CLI token. Never a 5xx, never a trace.

Flask's test client keeps it fast; examples per route are bounded (FUZZ_EXAMPLES to go deeper locally).
"""

from __future__ import annotations

import json
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


# ---- IAM Identity Center's JSON endpoints, from botocore's own service models ---------------------------

SSO_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20")) * 2  # per operation: ~300 in all
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# Strings SDKs never send, besides random ones: lone surrogates (JSON's \u escapes carry them), non-BMP
# characters, very long values.
SSO_NASTY = [*NASTY, "\ud800", "a\udfffb", "\udbff\udfff", "😀" * 300, "𝟗" * 3000, "\u0000\ud800"]
any_char = st.one_of(st.characters(), st.characters(categories=("Cs",)), st.characters(min_codepoint=0x10000))
sso_text = st.one_of(st.sampled_from(SSO_NASTY), st.text(any_char, max_size=40))
wrong_type = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                       st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
# Bodies that are no JSON object, by name (hypothesis shows the name, not 2 MB of brackets).
RAW_BODIES = {"deep list": b"[" * 100_000, "deep object": b'{"a":' * 50_000, "binary": b"\xff\xfe\x00", "empty": b"",
              "null": b"null", "list": b"[1,2]", "string": b'"clientId"', "cut": b'{"clientId": "\\ud800"',
              "too large": b"{" + b'"x":1,' * 300_000 + b"}"}


def _sso_operations() -> list[tuple[str, str, dict[str, Any], dict[str, dict[str, Any]]]]:
    """(service, operation, its http trait, member name → {type, location, locationName}) of every operation
    of botocore's sso-oidc and sso models, read with botocore's own loader."""
    from botocore.loaders import Loader

    out = []
    for service in ("sso-oidc", "sso"):
        model = Loader().load_service_model(service, "service-2")
        for name, op in sorted(model["operations"].items()):
            shape = model["shapes"].get(op.get("input", {}).get("shape", ""), {})
            members = {m: {"type": model["shapes"][ref["shape"]]["type"], "location": ref.get("location"),
                           "name": ref.get("locationName", m)} for m, ref in shape.get("members", {}).items()}
            out.append((service, name, dict(op["http"]), members))
    return out


def _sso_real(app: Any, browser: Any, csrf: str) -> dict[str, list[Any]]:
    """Values that get past the first checks: a registered client, a pending device code, an approved
    sign-in's access and refresh tokens, the account and roles the rules give."""
    c = app.test_client()
    base = app.extensions["bridge"].settings.base_url
    reg = c.post("/sso/client/register", json={
        "clientName": "fuzz", "clientType": "public", "grantTypes": [DEVICE_GRANT, "refresh_token",
                                                                      "authorization_code"],
        "redirectUris": ["http://127.0.0.1/cb"]}).get_json()
    client = {"clientId": reg["clientId"], "clientSecret": reg["clientSecret"]}
    approved = c.post("/sso/device_authorization", json={**client, "startUrl": base}).get_json()
    browser.post("/device", data={"user_code": approved["userCode"], "decision": "approve", "confirm": "yes",
                                  "csrf_token": csrf})
    tok = c.post("/sso/token", json={**client, "grantType": DEVICE_GRANT, "deviceCode": approved["deviceCode"]})
    assert tok.status_code == 200, tok.get_data()
    pending = c.post("/sso/device_authorization", json={**client, "startUrl": base}).get_json()
    return {"clientId": [reg["clientId"]], "clientSecret": [reg["clientSecret"]],
            "grantType": [DEVICE_GRANT, "refresh_token", "authorization_code"],
            "deviceCode": [pending["deviceCode"]], "refreshToken": [tok.get_json()["refreshToken"]],
            "startUrl": [base, f"{base}/start/#/"], "clientName": ["botocore-client-fuzz"], "clientType": ["public"],
            "scopes": [["sso:account:access"]], "scope": [["sso:account:access"]],
            "redirectUris": [["http://127.0.0.1/cb"]], "redirectUri": ["http://127.0.0.1:5000/cb"],
            "grantTypes": [[DEVICE_GRANT, "refresh_token"]], "codeVerifier": ["v" * 43],
            "accessToken": [tok.get_json()["accessToken"]], "accountId": ["123456789012"],
            "roleName": ["Admin", "Billing"], "maxResults": [1, 100]}


def _member(name: str, kind: str, real: dict[str, list[Any]]) -> st.SearchStrategy[Any]:
    typed = {"string": sso_text, "list": st.lists(st.one_of(sso_text, wrong_type), max_size=25),
             "integer": st.one_of(st.integers(-2**40, 2**40), sso_text)}.get(kind, sso_text)
    choices = [typed, wrong_type]
    if real.get(name):
        choices = [st.sampled_from(real[name])] * 2 + choices
    return st.one_of(choices)


def _latin1(value: Any) -> str:
    """A header value as HTTP carries one (latin-1, no line breaks)."""
    return "".join(ch for ch in str(value) if 0x20 <= ord(ch) <= 0xFF)


@pytest.fixture
def sso_app(make_settings, app_factory) -> Any:  # type: ignore[no-untyped-def]
    return app_factory(make_settings(mapping={"accounts": ACCOUNTS, "rules": RULES},
                                     rate_limits={"sign_in_per_minute": 0, "credentials_per_minute": 0,
                                                  "device_per_minute": 0, "device_code_per_minute": 0,
                                                  "sso_register_per_minute": 0}))


def test_sso_json_endpoints_answer_every_body_with_json_never_a_5xx(sso_app, federation_stub) -> None:  # type: ignore[no-untyped-def]
    """Hypothesis over the input shapes of botocore's sso-oidc and sso models: members present or missing,
    of their type or not, real values or nasty ones (lone surrogates, non-BMP, huge), unknown members,
    and bodies that are not JSON objects at all (too deep, too large, binary, UTF-16)."""
    browser = sso_app.test_client()
    portal = _sign_in(browser)
    operations = _sso_operations()
    assert {name for _, name, _, _ in operations} >= {"RegisterClient", "StartDeviceAuthorization", "CreateToken",
                                                      "GetRoleCredentials", "ListAccounts", "ListAccountRoles",
                                                      "Logout"}
    seen: dict[str, set[int]] = {}
    for service, name, http, members in operations:
        # Each operation its own sign-in's tokens: a fuzzed CreateToken that refreshes with the real refresh token
        # rotates it and ends its access token (as it must), which would leave ListAccounts nothing but 401s.
        real = _sso_real(sso_app, browser, portal["csrf_token"])
        fuzz_sso_operation(sso_app, real, service, name, http, members, seen.setdefault(name, set()))
    # the real values reached past the checks: some calls succeeded
    assert 200 in seen["RegisterClient"] and 200 in seen["ListAccounts"], seen


def fuzz_sso_operation(app: Any, real: dict[str, list[Any]], service: str, name: str, http: dict[str, Any],
                       members: dict[str, dict[str, Any]], seen: set[int]) -> None:
    client = app.test_client()
    path, _, fixed = ("/sso" + http["requestUri"]).partition("?")  # CreateTokenWithIAM: /token?aws_iam=t
    fields = st.fixed_dictionaries({}, optional={m: _member(m, spec["type"], real) for m, spec in members.items()})
    extra = st.dictionaries(sso_text, st.one_of(sso_text, wrong_type), max_size=2)
    usual_doc = {m: real[m][0] for m in members if real.get(m)}

    @settings(max_examples=SSO_EXAMPLES, deadline=timedelta(seconds=10), database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(doc=fields, more=extra, encoding=st.sampled_from(["json"] * 6 + ["utf-16", "huge", "raw"]),
           raw=st.sampled_from(sorted(RAW_BODIES)), usual=st.sampled_from([True, False, False]),
           changed=st.sampled_from(sorted(members) or [""]))
    def check(doc: dict[str, Any], more: dict[str, Any], encoding: str, raw: str, usual: bool, changed: str) -> None:
        if usual:  # a request as the SDK sends it, with at most one member changed: reaches the code behind
            doc, more = {**usual_doc, **{m: v for m, v in doc.items() if m == changed}}, {}
        body_doc = {**more, **{m: v for m, v in doc.items() if members[m]["location"] is None}}
        query = {members[m]["name"]: str(v) for m, v in doc.items() if members[m]["location"] == "querystring"}
        headers = {members[m]["name"]: _latin1(v) for m, v in doc.items() if members[m]["location"] == "header"}
        text = json.dumps(body_doc)  # ensure_ascii: lone surrogates travel as \\ud800, as JSON allows
        data = {"json": text.encode(), "utf-16": text.encode("utf-16"), "raw": RAW_BODIES[raw],
                "huge": json.dumps({**body_doc, "clientName": "x" * 1_100_000}).encode()}[encoding]
        qs = "&".join([*([fixed] if fixed else []), *(f"{quote(k, errors='surrogatepass')}="
                                                      f"{quote(v, errors='surrogatepass')}" for k, v in query.items())])
        r = client.open(path, method=http["method"], query_string=qs, headers=headers, data=data,
                        content_type="application/json")
        seen.add(r.status_code)
        shown = (name, path, r.status_code, r.get_data()[:300])
        assert r.status_code < 500, shown
        answer = json.loads(r.get_data())  # always JSON, in the service's shape
        assert r.headers["Cache-Control"] == "no-store", shown
        if r.status_code >= 400:
            assert r.headers.get("x-amzn-ErrorType"), shown
            assert set(answer) == ({"error", "error_description"} if service == "sso-oidc" else {"message"}), shown

    check()
