"""Explain in the web app: /portal/why (the user's own identity), /admin/explain (admins, any pasted identity),
MFA-locked roles on the portal, and rules reloading under live sessions."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import ACCOUNT
from tests.integration.helpers import dev_login, grant_id, portal_json

pytestmark = pytest.mark.integration
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
READONLY = f"arn:aws:iam::{ACCOUNT}:role/ReadOnly"
USERS = [
    {"subject": "alice", "email": "alice@example.com", "name": "Alice", "groups": ["aws-admins", "aws-readonly"],
     "claims": {"department": "Platform"}, "mfa": True},
    {"subject": "bob", "email": "bob@example.com", "groups": ["aws-admins"], "claims": {"department": "Ops"},
     "mfa": False},
    {"subject": "carol", "email": "carol@example.com", "groups": []},
]
DEV = [{"id": "dev", "type": "dev", "users": USERS}]


@pytest.fixture
def base(live_bridge: Any, make_settings: Any) -> str:
    return str(live_bridge(make_settings(connectors=DEV, admin={"groups": ["aws-admins"], "require_mfa": True})))


def test_portal_why_explains_the_users_own_roles(base: str) -> None:
    s = dev_login(base, "alice")
    page = s.get(f"{base}/portal/why", timeout=10)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "Why you have these roles" in page.text
    assert 'data-rule="admins"' in page.text and "member of group &#39;aws-admins&#39;" in page.text
    assert f'data-role="{ADMIN}"' in page.text and "Email=alice@example.com" in page.text
    assert 'id="to-admin"' in page.text  # alice is an admin (aws-admins, with MFA)
    doc = s.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10).json()
    assert doc["identity"]["subject"] == "alice"
    assert [r["rule"] for r in doc["rules"]] == ["admins", "readonly"]
    assert [g["role_arn"] for g in doc["grants"]] == [ADMIN, READONLY]
    assert doc["grants"][0]["tags"] == {"Email": "alice@example.com", "Department": "Platform"}


def test_portal_why_for_someone_without_roles(base: str) -> None:
    s = dev_login(base, "carol")
    doc = s.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10).json()
    assert doc["grants"] == []
    assert doc["rules"][0]["reason"] == "not in group 'aws-admins' (groups: missing)"
    page = s.get(f"{base}/portal/why", timeout=10)
    assert 'id="why-no-grants"' in page.text and 'id="to-admin"' not in page.text


def test_portal_why_needs_a_session(base: str) -> None:
    r = requests.get(f"{base}/portal/why", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "return_to=/portal/why" in r.headers["Location"]
    assert requests.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10).status_code == 401


def _csrf(s: requests.Session, base: str) -> str:
    return str(portal_json(s, base)["csrf_token"])


def test_admin_explains_a_pasted_identity(base: str, bridge_logs: Any) -> None:
    s = dev_login(base, "alice")
    form = s.get(f"{base}/admin/explain", timeout=10)
    assert form.status_code == 200 and 'id="explain-form"' in form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    sample = {"connector": "dev", "subject": "zed", "email": "zed@example.com", "groups": ["aws-readonly"],
              "claims": {"department": "R&D"}}
    page = s.post(f"{base}/admin/explain", data={"csrf_token": token[1], "identity": json.dumps(sample)}, timeout=10)
    assert page.status_code == 200
    assert f'data-role="{READONLY}"' in page.text and f'data-role="{ADMIN}"' not in page.text
    assert "zed@example.com" in page.text and "not in group &#39;aws-admins&#39;" in page.text
    doc = s.post(f"{base}/admin/explain", json={"identity": sample},
                 headers={"Accept": "application/json", "X-CSRF-Token": token[1]}, timeout=10).json()
    assert [g["role_arn"] for g in doc["grants"]] == [READONLY] and doc["identity"]["subject"] == "zed"
    assert '"event": "admin_explain"' in bridge_logs.text and "R&D" not in bridge_logs.text  # no claim values


def test_admin_explain_checks_csrf_and_input(base: str) -> None:
    s = dev_login(base, "alice")
    token = _csrf(s, base)
    r = s.post(f"{base}/admin/explain", data={"identity": "{}"}, headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "csrf_failed"
    r = s.post(f"{base}/admin/explain", data={"csrf_token": token, "identity": "{nope"},
               headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "bad_identity"
    r = s.post(f"{base}/admin/explain", data={"csrf_token": token, "identity": '{"subject": "x", "groups": "a"}'},
               timeout=10)
    assert r.status_code == 400 and "groups must be a list of strings" in r.text


@pytest.mark.parametrize("user", ["carol", "bob"])  # bob is in aws-admins but signed in without MFA
def test_admin_explain_is_for_admins_only(base: str, user: str) -> None:
    s = dev_login(base, user)
    r = s.get(f"{base}/admin/explain", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "admin_only"
    r = s.post(f"{base}/admin/explain", json={"subject": "x"},
               headers={"Accept": "application/json", "X-CSRF-Token": _csrf(s, base)}, timeout=10)
    assert r.status_code == 403


def test_admin_pages_are_off_without_admin_groups(live_bridge: Any, make_settings: Any) -> None:
    base = live_bridge(make_settings(connectors=DEV))
    s = dev_login(base, "alice")
    assert s.get(f"{base}/admin/explain", timeout=10).status_code == 404


def test_mfa_locked_role_is_shown_with_a_step_up_and_refused_with_a_clear_403(live_bridge: Any,
                                                                             make_settings: Any) -> None:
    rules = [{"name": "admins", "match": {"group": "aws-admins"},
              "grants": [{"role_arn": ADMIN, "label": "Administrator", "mfa_required": True}]}]
    base = live_bridge(make_settings(connectors=DEV, mapping={"rules": rules}))
    s = dev_login(base, "bob")
    portal = portal_json(s, base)
    assert portal["grants"] == [] and [g["role_arn"] for g in portal["locked"]] == [ADMIN]
    page = s.get(f"{base}/portal", timeout=10)
    assert 'id="locked"' in page.text and 'id="step-up"' in page.text
    assert 'href="/step-up?return_to=' in page.text  # the step-up route, not a plain login
    r = s.post(f"{base}/credentials/{portal['locked'][0]['id']}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "mfa_required"
    assert "multi-factor" in r.json()["message"]
    alice = dev_login(base, "alice")
    assert [g["role_arn"] for g in portal_json(alice, base)["grants"]] == [ADMIN]


def test_reloaded_rules_apply_to_live_sessions(live_bridge: Any, make_settings: Any, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"

    def write(doc: Any) -> None:
        rules_file.write_text(yaml.safe_dump(doc), encoding="utf-8")
        st = rules_file.stat()
        os.utime(rules_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    write([{"name": "admins", "match": {"group": "aws-admins"}, "grants": [{"role_arn": ADMIN}]},
           {"name": "readonly", "match": {"group": "aws-readonly"}, "grants": [{"role_arn": READONLY}]}])
    base = live_bridge(make_settings(connectors=DEV, mapping={"rules": None, "rules_file": str(rules_file),
                                                              "reload_interval": 0}))
    s = dev_login(base, "alice")
    portal = portal_json(s, base)
    admin_id = grant_id(portal, "/Admin")
    assert len(portal["grants"]) == 2
    write([{"name": "readonly-only", "match": {"group": "aws-readonly"}, "grants": [{"role_arn": READONLY}]}])
    portal = portal_json(s, base)  # the same session: not dropped, its grants follow the new rules
    assert [g["role_arn"] for g in portal["grants"]] == [READONLY]
    r = s.post(f"{base}/credentials/{admin_id}",
               headers={"Accept": "application/json", "X-CSRF-Token": portal["csrf_token"]}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "not_granted"
    write([{"name": "broken", "match": {"claim": "groups", "regex": "("}, "grants": [{"role_arn": READONLY}]}])
    assert [g["role_arn"] for g in portal_json(s, base)["grants"]] == [READONLY]  # the last good rules
    why = s.get(f"{base}/portal/why", headers={"Accept": "application/json"}, timeout=10).json()
    assert [r["rule"] for r in why["rules"]] == ["readonly-only"]
