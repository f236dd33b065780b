"""SCIM provisioning against two bridge instances on one real redis-server: the request sequences Okta and
Entra ID document (tests/peers/scim/) replayed over HTTP; a deactivation through one instance refuses every
path on both within 2 s (a browser session's portal, a CLI token's credentials, IAM Identity Center's
GetRoleCredentials through botocore's own client, the cached credentials) and the next sign-in until
reactivated; a group change pushed by SCIM decides the roles at the next request; a wrong token is a 401
that changes nothing; too many requests are a 429."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.conftest import ACCOUNT, ROOT, free_port
from tests.integration.helpers import TestClock, cli_token, dev_login, grant_id, portal_json

pytestmark = pytest.mark.integration
TOKEN = "scim-test-token-" + "x" * 32
PEERS = ROOT / "tests" / "peers" / "scim"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class Scim:
    """A SCIM client as the IdPs are: bearer token, application/scim+json."""

    def __init__(self, base: str, token: str = TOKEN) -> None:
        self.base = f"{base}/scim/v2"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json",
                        "Accept": "application/scim+json"}

    def __call__(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        data = None if body is None else json.dumps(body)
        return requests.request(method, self.base + path, data=data, headers={**self.headers, **kw}, timeout=10)

    def ok(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        r = self(method, path, body)
        assert r.status_code in (200, 201), r.text
        doc: dict[str, Any] = r.json()
        return doc


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    p = tmp_path / "scim-token"
    p.write_text(TOKEN + "\n")
    return p


class KeepSsoHeader(WSGIRequestHandler):
    """As gunicorn's ``forwarder_headers`` (deploy/gunicorn.conf.py) and the live_bridge fixture: IAM Identity
    Center's ``x-amz-sso_bearer_token`` header (an underscore) reaches the app."""

    def make_environ(self) -> Any:
        environ = super().make_environ()
        if (value := self.headers.get("x-amz-sso_bearer_token")) is not None:
            environ["HTTP_X_AMZ_SSO_BEARER_TOKEN"] = value
        return environ


@pytest.fixture
def second_instance(app_factory: Callable[[Any], Any]) -> Iterator[Callable[[Any], tuple[str, Any]]]:
    """Another bridge app on the same settings (and so the same Redis and key prefix), on its own port."""
    servers: list[Any] = []

    def start(settings: Any) -> tuple[str, Any]:
        app = app_factory(settings)
        port = free_port()
        srv = make_server("127.0.0.1", port, app, threaded=True, request_handler=KeepSsoHeader)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{port}", app

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def two(live_bridge, make_settings, second_instance, token_file):  # type: ignore[no-untyped-def]
    settings = make_settings(scim={"token_file": str(token_file)})
    a = live_bridge(settings)
    b, app_b = second_instance(settings)
    return a, b, live_bridge.app, app_b


# -- the IdPs' documented request sequences ------------------------------------------------------------

def _subset(want: Any, have: Any, where: str, names: dict[str, str]) -> None:
    if isinstance(want, str):
        want = want.format(**names) if "{" in want else want
    if isinstance(want, dict):
        assert isinstance(have, dict), f"{where}: {have!r}"
        for k, v in want.items():
            assert k in have, f"{where}: no {k} in {have!r}"
            _subset(v, have[k], f"{where}.{k}", names)
    elif isinstance(want, list):
        assert isinstance(have, list) and len(have) == len(want), f"{where}: {have!r}"
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            _subset(w, h, f"{where}[{i}]", names)
    else:
        assert have == want, f"{where}: {have!r} != {want!r}"


def _fill(node: Any, names: dict[str, str]) -> Any:
    text = json.dumps(node)
    for k, v in names.items():
        text = text.replace("{" + k + "}", v)
    return json.loads(text)


@pytest.mark.parametrize("idp", ["okta", "entra"])
def test_the_idps_documented_requests_replayed(two, idp: str) -> None:  # type: ignore[no-untyped-def]
    a, b, _, _ = two
    names: dict[str, str] = {}
    for i, step in enumerate(json.loads((PEERS / f"{idp}.json").read_text())):
        client = Scim(a if i % 2 else b)  # alternate instances: nothing is kept in a process
        r = client(step["method"], _fill(step["path"], names), _fill(step.get("body"), names))
        where = f"{idp} step {i} ({step['name']})"
        assert r.status_code == step["expect"]["status"], f"{where}: {r.status_code} {r.text[:300]}"
        if r.status_code != 204:
            assert r.headers["Content-Type"] == "application/scim+json", where
            doc = r.json()
            _subset(step["expect"].get("json", {}), doc, where, names)
            assert not set(step["expect"].get("absent", ())) & set(doc), where
            assert "password" not in json.dumps(doc), where
        if r.status_code == 201:
            assert r.headers["Location"] == doc["meta"]["location"]
        for var, key in step.get("save", {}).items():
            names[var] = r.json()[key]


def test_discovery_documents(two) -> None:  # type: ignore[no-untyped-def]
    a, _, _, _ = two
    scim = Scim(a)
    spc = scim.ok("GET", "/ServiceProviderConfig")
    assert spc["patch"]["supported"] is True and spc["bulk"]["supported"] is False
    assert spc["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = scim.ok("GET", "/ResourceTypes")
    assert [t["endpoint"] for t in types["Resources"]] == ["/Users", "/Groups"]
    schemas = scim.ok("GET", "/Schemas")
    assert {s["id"] for s in schemas["Resources"]} >= {USER, GROUP}


@pytest.mark.parametrize(("method", "path", "body", "status", "scim_type"), [
    ("POST", "/Users", "{not json", 400, "invalidSyntax"),
    ("POST", "/Users", {"userName": "no-schemas"}, 400, "invalidSyntax"),
    ("POST", "/Users", {"schemas": [USER]}, 400, "invalidValue"),
    ("GET", "/Users?filter=userName%20zz%20%22x%22", None, 400, "invalidFilter"),
    ("GET", "/Users?startIndex=abc", None, 400, "invalidValue"),
    ("PATCH", "/Users/nope", {"schemas": [PATCH], "Operations": [{"op": "remove", "path": "title"}]}, 404, None),
    ("GET", "/Users/nope", None, 404, None),
    ("GET", "/Bulk", None, 404, None),
    ("DELETE", "/Users", None, 405, None),  # with Allow: GET, POST
    ("PUT", "/ServiceProviderConfig", {}, 405, None),
    ("POST", "/Users", "[" * 100_000, 400, "invalidSyntax"),
    ("POST", "/Groups", json.dumps({"schemas": [GROUP], "displayName": "g", "x": json.loads("[" * 20 + "]" * 20)}),
     400, "invalidSyntax"),
    ("POST", "/Groups", {"schemas": [GROUP], "displayName": "g", "members": [{"value": "nobody"}]}, 400,
     "invalidValue"),
])
def test_every_bad_request_is_a_scim_error_and_changes_nothing(two, method: str, path: str, body: Any, status: int,
                                                                scim_type: str | None) -> None:  # type: ignore[no-untyped-def]
    a, _, _, _ = two
    scim = Scim(a)
    r = requests.request(method, scim.base + path, data=body if isinstance(body, str) else json.dumps(body),
                         headers=scim.headers, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/scim+json"
    doc = r.json()
    assert doc["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"] and doc["status"] == str(status)
    assert doc.get("scimType") == scim_type and doc["detail"]
    assert scim.ok("GET", "/Users")["totalResults"] == 0 and scim.ok("GET", "/Groups")["totalResults"] == 0


def test_a_body_too_large_is_a_scim_413(two) -> None:  # type: ignore[no-untyped-def]
    a, _, _, _ = two
    scim = Scim(a)
    r = scim("POST", "/Users", {"schemas": [USER], "userName": "big", "blob": "x" * (2 * 1024 * 1024)})
    assert r.status_code == 413 and r.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert scim.ok("GET", "/Users")["totalResults"] == 0


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_a_wrong_token_is_401_and_nothing_changes(two, auth: str | None) -> None:  # type: ignore[no-untyped-def]
    a, b, _, _ = two
    headers = {"Content-Type": "application/scim+json", **({"Authorization": auth} if auth else {})}
    for base in (a, b):
        r = requests.post(f"{base}/scim/v2/Users", data=json.dumps({"schemas": [USER], "userName": "mallory"}),
                          headers=headers, timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["status"] == "401" and r.headers["Content-Type"] == "application/scim+json"
        assert requests.get(f"{base}/scim/v2/Users", headers=headers, timeout=10).status_code == 401
    assert Scim(a).ok("GET", "/Users")["totalResults"] == 0


def test_scim_is_off_without_a_token(live_bridge, make_settings) -> None:  # type: ignore[no-untyped-def]
    base = live_bridge(make_settings())
    r = requests.get(f"{base}/scim/v2/Users", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 404


def test_too_many_requests_are_429(live_bridge, make_settings, token_file) -> None:  # type: ignore[no-untyped-def]
    base = live_bridge(make_settings(scim={"token_file": str(token_file)}, rate_limits={"scim_per_minute": 3}))
    clock = TestClock()
    clock.to_window_start()
    live_bridge.app.extensions["bridge"].store.clock = clock
    scim = Scim(base)
    assert [scim("GET", "/Users").status_code for _ in range(3)] == [200, 200, 200]
    r = scim("POST", "/Users", {"schemas": [USER], "userName": "late"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and r.json()["scimType"] == "tooMany"
    assert Scim(base, "wrong")("GET", "/Users").status_code == 429  # counted before the token: guessing too
    clock.advance(60)
    assert scim.ok("GET", "/Users")["totalResults"] == 0  # the refused create changed nothing


# -- what a deactivation does, on every instance ---------------------------------------------------------

def sso_token(base: str, browser: requests.Session) -> str:
    """An IAM Identity Center access token, as AWS CLI v2 gets one (approved in ``browser``)."""
    oidc = botocore.session.get_session().create_client(
        "sso-oidc", region_name="us-east-1", endpoint_url=f"{base}/sso", config=Config(signature_version=UNSIGNED))
    reg = oidc.register_client(clientName="botocore-client-scim", clientType="public",
                               scopes=["sso:account:access"], grantTypes=[DEVICE_GRANT])
    start = oidc.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"],
                                            startUrl=f"{base}/start/#/")
    page = browser.get(f"{base}/device", params={"user_code": start["userCode"]}, timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    assert "Approved" in browser.post(f"{base}/device", data={"csrf_token": csrf[1], "user_code": start["userCode"],
                                                              "decision": "approve", "confirm": "yes"}, timeout=10).text
    token = oidc.create_token(grantType=DEVICE_GRANT, deviceCode=start["deviceCode"], clientId=reg["clientId"],
                              clientSecret=reg["clientSecret"])
    return str(token["accessToken"])


def sso_client(base: str) -> Any:
    return botocore.session.get_session().create_client(
        "sso", region_name="us-east-1", endpoint_url=f"{base}/sso", config=Config(signature_version=UNSIGNED))


def cli_credentials(base: str, token: str, gid: str) -> requests.Response:
    return requests.post(f"{base}/api/v1/credentials/{gid}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def provision_alice(scim: Scim) -> tuple[str, str, str]:
    """Alice as a SCIM user in aws-admins and aws-readonly (the groups the rules give Admin and ReadOnly for)."""
    uid = scim.ok("POST", "/Users", {"schemas": [USER], "userName": "alice@example.com", "active": True,
                                     "emails": [{"value": "alice@example.com", "type": "work", "primary": True}]})["id"]
    admins = scim.ok("POST", "/Groups", {"schemas": [GROUP], "displayName": "aws-admins", "members": [{"value": uid}]})
    readonly = scim.ok("POST", "/Groups", {"schemas": [GROUP], "displayName": "aws-readonly",
                                           "members": [{"value": uid}]})
    return uid, admins["id"], readonly["id"]


def test_deactivation_refuses_every_path_on_both_instances_within_2s(two, moto_url) -> None:  # type: ignore[no-untyped-def]
    a, b, app_a, app_b = two
    scim = Scim(b)
    uid, _, _ = provision_alice(scim)
    browser = dev_login(a, "alice")
    portal = portal_json(browser, b)  # the same session on the other instance
    admin = grant_id(portal, "role/Admin")
    cli = cli_token(a, browser)
    sso = sso_token(a, browser)
    first = cli_credentials(b, cli, admin)
    assert first.status_code == 200, first.text
    again = cli_credentials(a, cli, admin)  # from the credential cache, on the other instance
    assert again.json()["AccessKeyId"] == first.json()["AccessKeyId"]
    role = sso_client(b).get_role_credentials(accessToken=sso, accountId=ACCOUNT, roleName="Admin")
    assert role["roleCredentials"]["accessKeyId"]
    store = app_a.extensions["bridge"].store
    assert store.r.keys(f"{store.prefix}creds:*")  # alice's cached credentials (the prefix is this test's)

    started = time.monotonic()
    r = scim("PATCH", f"/Users/{uid}", {"schemas": [PATCH], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}]})  # Entra ID's documented string form
    assert r.status_code == 200 and r.json()["active"] is False
    for base in (a, b):
        resp = browser.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10)
        assert resp.status_code == 401, resp.text
        assert cli_credentials(base, cli, admin).status_code == 401
        portal_api = sso_client(base)
        with pytest.raises(portal_api.exceptions.UnauthorizedException):
            portal_api.get_role_credentials(accessToken=sso, accountId=ACCOUNT, roleName="Admin")
    assert not store.r.keys(f"{store.prefix}creds:*")  # ended with the sessions
    assert time.monotonic() - started < 2.0

    for base in (a, b):  # the next sign-in is refused, with a page saying why
        s = requests.Session()
        login = s.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
        state = re.search(r"state=([\w-]+)", login.headers["location"])
        assert state
        page = s.post(f"{base}/callback/dev", data={"state": state[1], "user": "alice"}, allow_redirects=False,
                      timeout=10)
        assert page.status_code == 403 and "deactivated" in page.text, page.text[:500]
        assert "bridge_session" not in s.cookies
    scim.ok("PATCH", f"/Users/{uid}", {"schemas": [PATCH], "Operations": [{"op": "replace",
                                                                             "value": {"active": True}}]})
    assert portal_json(dev_login(b, "alice"), a)["grants"]  # reactivated: signs in again, with its roles


def test_deletion_ends_the_sessions_too(two) -> None:  # type: ignore[no-untyped-def]
    a, b, _, _ = two
    scim = Scim(a)
    uid, _, _ = provision_alice(scim)
    browser = dev_login(b, "alice")
    cli = cli_token(b, browser)
    assert requests.get(f"{a}/api/v1/grants", headers={"Authorization": f"Bearer {cli}"}, timeout=10).ok
    assert scim("DELETE", f"/Users/{uid}").status_code == 204
    assert requests.get(f"{b}/api/v1/grants", headers={"Authorization": f"Bearer {cli}"}, timeout=10).status_code == 401
    assert browser.get(f"{a}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def test_a_group_change_decides_the_roles_at_the_next_request(two) -> None:  # type: ignore[no-untyped-def]
    a, b, _, _ = two
    scim = Scim(a)
    uid, admins, _ = provision_alice(scim)
    browser = dev_login(a, "alice")
    cli = cli_token(a, browser)
    admin = grant_id(portal_json(browser, b), "role/Admin")
    assert cli_credentials(b, cli, admin).status_code == 200
    scim.ok("PATCH", f"/Groups/{admins}", {"schemas": [PATCH], "Operations": [
        {"op": "remove", "path": f'members[value eq "{uid}"]'}]})  # Okta's shape
    for base in (a, b):
        roles = [g["role_arn"].rsplit("/", 1)[1] for g in portal_json(browser, base)["grants"]]
        assert roles == ["ReadOnly"]
        assert cli_credentials(base, cli, admin).status_code == 403  # also the cached one: decided first
    scim.ok("PATCH", f"/Groups/{admins}", {"schemas": [PATCH], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": uid}]}]})  # Entra ID's
    assert "Admin" in [g["role_arn"].rsplit("/", 1)[1] for g in portal_json(browser, b)["grants"]]


# -- never a 5xx: random SCIM requests ------------------------------------------------------------------

json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                                    st.text(max_size=20), st.sampled_from(["False", "True", "", "x" * 300])),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                          max_leaves=12)
attr = st.sampled_from(["userName", "USERNAME", "displayname", "active", "emails", "members", "displayName", "id",
                        "meta", "groups",
                        "name.givenName", 'emails[type eq "work"].value', 'members[value eq "x"]',
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "a[", "]", "x.y.z",
                        "emails[not(type pr)]", ""])
op = st.fixed_dictionaries({"op": st.sampled_from(["add", "Replace", "remove", "move", 5])},
                           optional={"path": st.one_of(attr, json_value), "value": json_value})
filters = st.one_of(st.builds(lambda a, o, v: f"{a} {o} {v}", attr,
                              st.sampled_from(["eq", "ne", "co", "sw", "pr", "gt", "zz", "and", "("]),
                              st.sampled_from(['"x"', "true", "null", "1.5", '"', "", ")", "1e999"])),
                    st.text(max_size=40))


@pytest.fixture
def scim_app(make_settings, app_factory, token_file):  # type: ignore[no-untyped-def]
    return app_factory(make_settings(scim={"token_file": str(token_file)}, rate_limits={"scim_per_minute": 0}))


def test_no_scim_request_answers_5xx(scim_app) -> None:  # type: ignore[no-untyped-def]
    client = scim_app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    uid = client.post("/scim/v2/Users", json={"schemas": [USER], "userName": "fuzz@example.com"},
                      headers=headers).get_json()["id"]
    gid = client.post("/scim/v2/Groups", json={"schemas": [GROUP], "displayName": "fuzz", "members": [
        {"value": uid}]}, headers=headers).get_json()["id"]

    @settings(max_examples=150, deadline=timedelta(seconds=5), database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
           where=st.sampled_from(["/Users", "/Groups", f"/Users/{uid}", f"/Groups/{gid}", "/Users/x%00",
                                  "/ServiceProviderConfig", "/Nope"]),
           body=st.one_of(json_value, st.builds(lambda ops: {"schemas": [PATCH], "Operations": ops},
                                                st.lists(op, max_size=3)),
                          st.builds(lambda extra: {"schemas": [USER, GROUP], "userName": "u", "displayName": "d",
                                                   **extra}, st.dictionaries(attr, json_value, max_size=3))),
           query=st.fixed_dictionaries({}, optional={"filter": filters, "startIndex": st.text(max_size=5),
                                                     "count": st.text(max_size=5),
                                                     "excludedAttributes": st.text(max_size=10)}),
           ctype=st.sampled_from(["application/scim+json", "application/json", "text/plain"]))
    def check(method: str, where: str, body: Any, query: dict[str, str], ctype: str) -> None:
        assume(not (method == "DELETE" and (uid in where or gid in where)))  # keep them for the other examples
        r = client.open(f"/scim/v2{where}", method=method, query_string=query, headers=headers,
                        data=json.dumps(body), content_type=ctype)
        assert r.status_code < 500, (method, where, body, query, r.get_data()[:300])
        if r.status_code >= 400:
            assert r.get_json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]

    check()


# -- a SCIM client library's compliance checks (scim2-tester, on scim2-client) ------------------------

# What the bridge refuses on purpose (docs/scim.md): POST /.search is not served, and a group member must be
# a user provisioned here (the checks make up member ids; Okta and Entra ID provision the users first).
DELIBERATE = ("/.search", "is not a user provisioned here")


def test_scim2_tester_compliance_checks_pass(scim_app) -> None:  # type: ignore[no-untyped-def]
    from scim2_client.engines.wsgi import WSGISCIMClient
    from scim2_tester import check_server

    base = scim_app.extensions["bridge"].settings.base_url
    client = WSGISCIMClient(scim_app, base_url=f"{base}/scim/v2", headers={"Authorization": f"Bearer {TOKEN}"})
    client.discover()
    results = check_server(client)
    assert len(results) > 40
    failed = [f"{r.title}: {r.reason}" for r in results
              if r.status.name not in ("SUCCESS", "SKIPPED") and not any(d in (r.reason or "") for d in DELIBERATE)]
    assert failed == []
    assert sum(r.status.name == "SUCCESS" for r in results) > 40
