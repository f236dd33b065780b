"""SCIM fails closed (bridge/scim/directory.py): an identity of a connector SCIM governs without one value of the
claim SCIM matches on (none, or several) is refused — at sign-in (a 403 page), at a token exchange (an OAuth
error, audited), at a session's next use — else a token without an e-mail would pass a deactivated user with the
IdP's groups. Workload connectors are governed only when ``scim.connectors`` names them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bridge.config.scim import ScimSettings
from bridge.domain.identity import Identity
from bridge.scim.directory import Directory, ScimUnmatched
from bridge.storage import SessionRecord
from bridge.storage.memory import MemoryStore
from tests.unit.test_exchange import _build, audit_lines, config, form, id_token, post
from tests.unit.test_exchange_guards import SCIM_TOKEN, USER, credentials_records, scim, scim_env
from tests.unit.test_exchange_workload import wl_form, workload_env

NO_EMAIL = Identity("corp", "00ualice", "https://idp.example.com", groups=("photo-users",))


def directory(**cfg: Any) -> Directory:
    return Directory(MemoryStore("t:"), ScimSettings(**cfg), workloads=frozenset({"ci"}))


def test_a_governed_identity_without_the_claim_is_refused_not_passed() -> None:
    d = directory()
    with pytest.raises(ScimUnmatched) as e:
        d.admit(NO_EMAIL)
    assert e.value.status == 403 and e.value.code == "scim_claim_missing" and "administrator" in e.value.hint
    with pytest.raises(ScimUnmatched):
        d.admitted(NO_EMAIL)
    assert d.govern(SessionRecord(identity=NO_EMAIL, csrf="c")) is None  # the session ends


def test_several_values_of_the_claim_are_refused_too() -> None:
    d = directory(connectors={"corp": "upn"})
    two = Identity("corp", "s", "i", claims={"upn": ["a@example.com", "b@example.com"]})
    with pytest.raises(ScimUnmatched):
        d.admitted(two)
    one = Identity("corp", "s", "i", claims={"upn": ["a@example.com"]})
    assert d.admitted(one) is one  # one value SCIM does not know: as the IdP said


def test_ungoverned_connectors_and_workloads_are_not_asked() -> None:
    assert directory(connectors={"other": "email"}).admitted(NO_EMAIL) is NO_EMAIL
    job = Identity("ci", "repo:o/r:ref:refs/heads/main", "https://token.actions.githubusercontent.com")
    assert directory().admitted(job) is job  # empty connectors: every sign-in connector, not the workload ones
    with pytest.raises(ScimUnmatched):
        directory(connectors={"ci": "email"}).admitted(job)  # named: governed


def test_an_exchanged_token_without_an_email_gets_nothing_and_is_audited(tmp_path: Path) -> None:
    env = scim_env(tmp_path)
    alice = scim(env, "POST", "/Users", {"schemas": [USER], "userName": "alice@example.com", "active": False})
    assert alice["active"] is False
    # the attack: the same user, a token asked for with scope=openid only (no e-mail) and the IdP's groups
    r = post(env, form(subject_token=id_token(email=None, email_verified=None)))
    body = r.get_json()
    assert r.status_code == 403 and body["error"] == "invalid_grant", body
    assert body["error_code"] == "exchange_scim_unmatched" and "email" in body["hint"]
    assert env.sts.calls == [] and "credentials" not in body
    (record,) = credentials_records(env)
    assert record["outcome"] == "failure" and record["error"] == "scim_claim_missing" and record["app"] == "photos"
    assert post(env, form()).get_json()["error_code"] == "exchange_deprovisioned"  # with its e-mail: deactivated


def test_a_workload_exchange_is_not_refused_for_lacking_an_email(tmp_path: Path) -> None:
    env = workload_env(tmp_path, scim={"token": SCIM_TOKEN})
    r = post(env, wl_form(), origin=None)
    assert r.status_code == 200, r.get_json()


def test_a_sign_in_without_the_claim_gets_a_clear_403_page(tmp_path: Path) -> None:
    raw = config(tmp_path)
    raw["insecure_dev_login"] = True
    raw["connectors"].append({"id": "dev", "type": "dev", "users": [
        {"subject": "nomail", "groups": ["photo-users"]}, {"subject": "alice", "email": "alice@example.com"}]})
    raw["scim"] = {"token": SCIM_TOKEN}
    env = _build(raw, tmp_path)

    def sign_in(user: str) -> Any:
        r = env.client.get("/login/dev")
        state = re.search(r"state=([\w-]+)", r.headers["location"])
        assert state, r.headers["location"]
        return env.client.post("/callback/dev", data={"state": state[1], "user": user})

    r = sign_in("nomail")
    page = r.get_data(as_text=True)
    assert r.status_code == 403 and "cannot be checked" in page and "Traceback" not in page
    assert env.client.get("/portal", headers={"Accept": "application/json"}).status_code == 401  # no session
    assert [(a["outcome"], a.get("error")) for a in audit_lines(env) if a["type"] == "sign_in"] == [
        ("failure", "scim_claim_missing")]
    assert sign_in("alice").status_code == 303  # with its e-mail (unknown to SCIM): signs in
