"""Access decided at the moment of use, on every path, and CLI tokens that live only as long as the
browser session that approved them. Attack catalogue (each test names the attack and what the bridge
answers now):

- rules change removes a role      → CLI credentials/console/grants refuse it at once (403 not_granted)
- a deny rule is added             → the same, for browser and CLI alike
- old session approves a new code  → the new token carries only what the rules give now
- session ends by idle timeout     → its CLI tokens stop working (401 cli_session_ended)
- session passes its absolute end  → the same
- user revokes a CLI login         → it stops at once (portal "Your sign-ins")
- offboarding                      → `bridge sessions revoke --user` ends sessions, tokens, cached creds
- a denied contractor in admin.groups → no admin pages (deny: all wins)
- an admin without MFA             → no admin pages (admin.require_mfa defaults to true)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml
from click.testing import CliRunner

from tests.conftest import ACCOUNT
from tests.integration.helpers import cli_token, dev_login, grant_id, portal_json

pytestmark = pytest.mark.integration
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
READONLY = f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"
USERS = [{"subject": "alice", "email": "alice@example.com", "name": "Alice", "groups": ["aws-admins", "aws-readonly"],
          "mfa": True},
         {"subject": "nomfa", "email": "nomfa@example.com", "groups": ["aws-admins"], "mfa": False},
         {"subject": "dave", "email": "dave@contractor.example.com", "groups": ["aws-admins", "contractors"],
          "mfa": True},
         # a subject that is another user's e-mail (SAML NameID = UPN, mail elsewhere): still someone else
         {"subject": "alice@example.com", "email": "mallory@example.com", "groups": []}]
RULES: list[dict[str, Any]] = [
    {"name": "admins", "match": {"group": "aws-admins"}, "grants": [{"role_arn": ADMIN}]},
    {"name": "readonly", "match": {"group": "aws-readonly"}, "grants": [{"role_arn": READONLY}]},
    {"name": "no-contractors", "match": {"group": "contractors"}, "deny": "all"},
]


class Bridge:
    def __init__(self, base: str, app: Any, rules_file: Path) -> None:
        self.base, self.app, self.rules_file = base, app, rules_file

    @property
    def svc(self) -> Any:
        return self.app.extensions["bridge"]

    def write_rules(self, rules: list[dict[str, Any]]) -> None:
        self.rules_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
        st = self.rules_file.stat()
        os.utime(self.rules_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    def cli_token(self, s: requests.Session) -> str:
        return cli_token(self.base, s)

    def api(self, token: str, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"},
                                timeout=30, **kw)


@pytest.fixture
def bridge(live_bridge: Any, make_settings: Any, tmp_path: Path) -> Bridge:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    settings = make_settings(connectors=[{"id": "dev", "type": "dev", "users": USERS}],
                             mapping={"rules": None, "rules_file": str(rules_file), "reload_interval": 0},
                             admin={"groups": ["aws-admins"]}, rate_limits={"credentials_per_minute": 0})
    base = live_bridge(settings)
    return Bridge(base, live_bridge.app, rules_file)


def api_grant_ids(b: Bridge, token: str) -> dict[str, str]:
    r = b.api(token, "GET", "/api/v1/grants")
    assert r.status_code == 200, r.text
    return {g["role_arn"]: g["id"] for g in r.json()["grants"]}


def test_rules_change_removes_a_role_from_cli_tokens_at_once(bridge: Bridge) -> None:
    s = dev_login(bridge.base, "alice")
    token = bridge.cli_token(s)
    admin = api_grant_ids(bridge, token)[ADMIN]
    assert bridge.api(token, "POST", f"/api/v1/credentials/{admin}").status_code == 200
    bridge.write_rules([{"name": "readonly", "match": {"group": "aws-readonly"}, "grants": [{"role_arn": READONLY}]},
                        RULES[2]])
    assert list(api_grant_ids(bridge, token)) == [READONLY]
    for path in (f"/api/v1/credentials/{admin}", f"/api/v1/console/{admin}"):
        r = bridge.api(token, "POST", path)
        assert r.status_code == 403 and r.json()["error"] == "not_granted", r.text
    # The browser session signed in before the change approves a NEW code: it carries no removed role.
    token2 = bridge.cli_token(s)
    assert list(api_grant_ids(bridge, token2)) == [READONLY]
    assert bridge.api(token2, "POST", f"/api/v1/credentials/{admin}").status_code == 403


def test_every_path_follows_a_rules_change_at_once(bridge: Bridge) -> None:
    """One decision point: after the change, no path issues the removed role — not one request later."""
    s = dev_login(bridge.base, "alice")
    token = bridge.cli_token(s)
    portal = portal_json(s, bridge.base)
    admin, csrf = grant_id(portal, "/Admin"), portal["csrf_token"]
    json_h = {"Accept": "application/json"}
    assert s.post(f"{bridge.base}/credentials/{admin}", data={"csrf_token": csrf}, headers=json_h,
                  timeout=30).status_code == 200
    bridge.write_rules([*RULES, {"name": "freeze-admin", "match": {"group": "aws-admins"},
                                 "deny": {"roles": ["Admin"]}}])
    answers = {
        "browser credentials": s.post(f"{bridge.base}/credentials/{admin}", data={"csrf_token": csrf},
                                      headers=json_h, timeout=30),
        "browser console": s.post(f"{bridge.base}/console/{admin}", data={"csrf_token": csrf}, headers=json_h,
                                  timeout=30),
        "bookmark /go": s.get(f"{bridge.base}/go/sandbox/Admin", headers=json_h, timeout=30),
        "API credentials": bridge.api(token, "POST", f"/api/v1/credentials/{admin}"),
        "API console": bridge.api(token, "POST", f"/api/v1/console/{admin}"),
    }
    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 403), {
        k: r.text[:200] for k, r in answers.items()}
    assert ADMIN not in api_grant_ids(bridge, token)
    assert ADMIN not in [g["role_arn"] for g in portal_json(s, bridge.base)["grants"]]
    assert ADMIN not in api_grant_ids(bridge, bridge.cli_token(s))  # a device approval made now


def test_an_added_deny_rule_applies_to_browser_and_cli_alike(bridge: Bridge) -> None:
    s = dev_login(bridge.base, "alice")
    token = bridge.cli_token(s)
    admin = api_grant_ids(bridge, token)[ADMIN]
    bridge.write_rules([*RULES, {"name": "freeze-admin", "match": {"group": "aws-admins"},
                                 "deny": {"roles": ["Admin"]}}])
    r = bridge.api(token, "POST", f"/api/v1/credentials/{admin}")
    assert r.status_code == 403 and r.json()["error"] == "not_granted"
    portal = portal_json(s, bridge.base)
    assert [g["role_arn"] for g in portal["grants"]] == [READONLY]
    r = s.post(f"{bridge.base}/console/{admin}", data={"csrf_token": portal["csrf_token"]},
               headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 403


def test_cli_token_ends_with_its_session_by_idle_timeout(bridge: Bridge) -> None:
    s = dev_login(bridge.base, "alice")
    token = bridge.cli_token(s)
    assert bridge.api(token, "GET", "/api/v1/grants").status_code == 200
    r = redis.Redis.from_url(bridge.svc.settings.redis.url)
    sid = s.cookies[bridge.svc.settings.session_cookie]
    r.delete(bridge.svc.store.session_key(sid))  # what Redis does when the idle TTL runs out
    got = bridge.api(token, "GET", "/api/v1/grants")
    assert got.status_code == 401 and got.json()["error"] == "cli_session_ended", got.text
    # and the token is gone for good, not only refused
    assert bridge.svc.device.token(token) is None


def test_cli_token_ends_with_its_session_at_the_absolute_timeout(bridge: Bridge) -> None:
    s = dev_login(bridge.base, "alice")
    token = bridge.cli_token(s)
    store = bridge.svc.store
    real = store.clock
    try:
        store.clock = lambda: real() + bridge.svc.settings.session.absolute_timeout + 1
        got = bridge.api(token, "GET", "/api/v1/grants")
    finally:
        store.clock = real
    assert got.status_code == 401 and got.json()["error"] == "cli_session_ended"


def test_signed_out_elsewhere_tokens_listed_and_revoked_from_the_portal(bridge: Bridge) -> None:
    s = dev_login(bridge.base, "alice")
    other = dev_login(bridge.base, "alice")  # a second browser
    token = bridge.cli_token(other)
    page = s.get(f"{bridge.base}/portal/sign-ins", timeout=10)
    assert page.status_code == 200
    tokens = re.findall(r'id="token-([0-9a-f]{16})"', page.text)
    assert len(tokens) == 1 and "bridge-cli" in page.text and "This browser" in page.text
    assert "Another browser" in page.text
    csrf = portal_json(s, bridge.base)["csrf_token"]
    r = s.post(f"{bridge.base}/portal/sign-ins/revoke", data={"csrf_token": csrf, "token": tokens[0]}, timeout=10)
    assert r.status_code == 200 and f'id="token-{tokens[0]}"' not in r.text
    assert bridge.api(token, "GET", "/api/v1/grants").status_code == 401
    assert portal_json(other, bridge.base)["grants"]  # the other browser itself is still signed in
    # another user's token id cannot be revoked from this session
    bob = dev_login(bridge.base, "nomfa")
    bob_token = bridge.cli_token(bob)
    bob_page = bob.get(f"{bridge.base}/portal/sign-ins", timeout=10).text
    bob_tid = re.findall(r'id="token-([0-9a-f]{16})"', bob_page)[0]
    r = s.post(f"{bridge.base}/portal/sign-ins/revoke", data={"csrf_token": csrf, "token": bob_tid},
               headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "revoke_unknown"
    assert bridge.api(bob_token, "GET", "/api/v1/grants").status_code == 200
    # "Sign out everywhere else" ends the other browser (and what it approved)
    token3 = bridge.cli_token(other)
    s.post(f"{bridge.base}/portal/sign-ins/revoke", data={"csrf_token": csrf, "all_others": "1"}, timeout=10)
    assert other.get(f"{bridge.base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    assert bridge.api(token3, "GET", "/api/v1/grants").status_code == 401
    assert portal_json(s, bridge.base)["grants"]


def test_your_sign_ins_never_shows_another_account_that_shares_an_e_mail(bridge: Bridge) -> None:
    """Attack: sign in with a subject equal to the victim's e-mail and read or revoke their sign-ins."""
    alice = dev_login(bridge.base, "alice")
    token = bridge.cli_token(alice)
    mallory = dev_login(bridge.base, "alice@example.com")
    page = mallory.get(f"{bridge.base}/portal/sign-ins", headers={"Accept": "application/json"}, timeout=10).json()
    assert len(page["sessions"]) == 1 and page["sessions"][0]["current"] and page["sessions"][0]["tokens"] == []
    csrf = portal_json(mallory, bridge.base)["csrf_token"]
    r = mallory.post(f"{bridge.base}/portal/sign-ins/revoke", data={"csrf_token": csrf, "all_others": "1"},
                     headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 400
    assert bridge.api(token, "GET", "/api/v1/grants").status_code == 200  # alice untouched
    assert portal_json(alice, bridge.base)["grants"]


def test_offboarding_revokes_every_session_token_and_cached_credential(bridge: Bridge, tmp_path: Path) -> None:
    s1, s2 = dev_login(bridge.base, "alice"), dev_login(bridge.base, "alice")
    token = bridge.cli_token(s1)
    admin = api_grant_ids(bridge, token)[ADMIN]
    assert bridge.api(token, "POST", f"/api/v1/credentials/{admin}").status_code == 200
    settings = bridge.svc.settings
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(yaml.safe_dump({
        "base_url": settings.base_url, "secret_key": "x", "insecure_dev_login": True,
        "redis": {"url": settings.redis.url, "key_prefix": settings.redis.key_prefix},
        "issuer": {"url": settings.issuer_url, "keys_dir": str(settings.keys_dir)},
        "connectors": [{"id": "dev", "type": "dev", "users": USERS}], "mapping": {"rules": RULES}}), encoding="utf-8")
    from bridge.commands.cli import main

    listed = CliRunner().invoke(main, ["sessions", "list", "--config", str(cfg), "--user", "Alice@Example.com"])
    assert listed.exit_code == 0 and listed.output.count("alice@example.com") == 2, listed.output
    assert "1 CLI login(s)" in listed.output
    out = CliRunner().invoke(main, ["sessions", "revoke", "--config", str(cfg), "--user", "alice@example.com"])
    assert out.exit_code == 0, out.output
    assert "revoked 2 session(s) and 1 CLI login(s)" in out.output
    for s in (s1, s2):
        assert s.get(f"{bridge.base}/portal", headers={"Accept": "application/json"}, timeout=10).status_code == 401
    assert bridge.api(token, "GET", "/api/v1/grants").status_code == 401
    r = redis.Redis.from_url(settings.redis.url)
    assert not list(r.scan_iter(match=f"{settings.redis.key_prefix}creds*"))  # no cached credentials left
    again = CliRunner().invoke(main, ["sessions", "list", "--config", str(cfg), "--user", "alice"])
    assert "no live session for alice" in again.output


def test_a_denied_contractor_in_the_admin_group_gets_no_admin_pages(bridge: Bridge) -> None:
    s = dev_login(bridge.base, "dave")
    assert portal_json(s, bridge.base)["grants"] == []
    r = s.get(f"{bridge.base}/admin/explain", timeout=10)
    assert r.status_code == 403 and 'data-code="admin_only"' in r.text
    assert 'id="to-admin"' not in s.get(f"{bridge.base}/portal", timeout=10).text
    alice = dev_login(bridge.base, "alice")  # the same groups without the deny: an admin
    assert alice.get(f"{bridge.base}/admin/explain", timeout=10).status_code == 200


def test_admin_pages_need_mfa_by_default(bridge: Bridge) -> None:
    s = dev_login(bridge.base, "nomfa")
    r = s.get(f"{bridge.base}/admin/explain", timeout=10)
    assert r.status_code == 403 and 'data-code="admin_only"' in r.text
    assert grant_id(portal_json(s, bridge.base), "/Admin")  # the role itself is granted (no MFA rule)
