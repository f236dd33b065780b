"""The wire shapes of a grant (bridge/domain/present.py) and the portal's HTML of it
(bridge/web/portal_html.py): the exact keys each one sends, for a direct grant and a chained one
decided by the real rules (its hub by label, its duration capped at 1 hour, never its ExternalId)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bridge.domain import present
from bridge.domain.identity import Grant, Identity
from bridge.mapping import GrantDefaults, decide, load_mapping
from bridge.web import portal_html

HUB, WORK, SANDBOX = "111111111111", "210987654321", "123456789012"
SECRET = "vendor-7Qx2:k9=Zp/Lm"
ALICE = Identity(connector_id="c", subject="alice-1", issuer="i", email="alice@example.com", groups=("dev",))
RULES: dict[str, Any] = {
    "accounts": {HUB: {"alias": "hub", "roles": {"BridgeHub": {}}},
                 WORK: {"alias": "workloads", "label": "Workloads", "roles": {
                     "Developer": {"via": "hub/BridgeHub", "external_id": SECRET, "max_session_duration": 43200}}},
                 SANDBOX: {"alias": "sandbox", "roles": {"Admin": {"label": "Sandbox admin",
                                                                    "max_session_duration": 43200}}}},
    "rules": [{"name": "devs", "match": {"group": "dev"}, "grants": [
        {"account": "workloads", "role": "Developer"},
        {"account": "sandbox", "role": "Admin", "duration": {"max": 43200, "default": 7200}}]}]}


@pytest.fixture(scope="module")
def grants() -> dict[str, Grant]:
    decided = decide(load_mapping(RULES), ALICE, GrantDefaults("sts.amazonaws.com")).grants
    return {g.account_id: g for g in decided}


def test_portal_json_of_a_direct_and_a_chained_grant(grants: dict[str, Grant]) -> None:
    direct, chained = grants[SANDBOX], grants[WORK]
    assert present.portal_grant(direct, "saml_post") == {
        "id": direct.id, "role_arn": f"arn:aws:iam::{SANDBOX}:role/Admin", "account_id": SANDBOX,
        "label": "Sandbox admin", "account_alias": "sandbox", "account_label": "", "max_duration": 43200,
        "default_duration": 7200, "mfa_required": False, "console": "saml_post", "go": "/go/sandbox/Admin",
        "hubs": []}
    doc = present.portal_grant(chained, "federation")
    assert (doc["hubs"], doc["max_duration"], doc["default_duration"]) == (["hub/BridgeHub"], 3600, 3600)
    assert present.portal_offer(chained, "federation") == {**doc, "state": "request"}
    assert SECRET not in repr(doc)


def test_api_json_of_a_direct_and_a_chained_grant(grants: dict[str, Grant]) -> None:
    direct, chained = grants[SANDBOX], grants[WORK]
    assert present.api_grant(direct) == {
        "id": direct.id, "role_arn": f"arn:aws:iam::{SANDBOX}:role/Admin", "account_id": SANDBOX,
        "label": "Sandbox admin", "role_name": "Admin", "max_duration": 43200, "account_alias": "sandbox",
        "account_label": "", "default_duration": 7200, "path": "jwt", "hubs": [], "external_id": False,
        "request_id": None}
    doc = present.api_grant(chained)
    assert (doc["hubs"], doc["max_duration"], doc["external_id"]) == (["hub/BridgeHub"], 3600, True)
    assert SECRET not in repr(doc)  # whether an ExternalId goes with the chain, never which
    held = dataclasses.replace(direct, request_id="req-1")
    assert present.api_grant(held)["request_id"] == "req-1"
    assert present.api_offer(chained) == {
        "id": chained.id, "role_arn": f"arn:aws:iam::{WORK}:role/Developer", "account_id": WORK,
        "label": chained.label, "role_name": "Developer", "account_alias": "workloads", "state": "request",
        "max_duration": 3600}


def test_requests_json_of_an_offer(grants: dict[str, Grant]) -> None:
    chained = grants[WORK]
    assert present.request_offer(chained, max_window=7200, reason_required=True, break_glass=False) == {
        "id": chained.id, "role_arn": chained.role_arn, "account_id": WORK, "label": chained.label,
        "role_name": "Developer", "account_alias": "workloads", "account_label": "Workloads", "state": "request",
        "max_window": 7200, "reason_required": True, "break_glass": False}


def test_identity_center_json_of_an_account_and_a_role(grants: dict[str, Grant]) -> None:
    direct, chained = grants[SANDBOX], grants[WORK]
    assert present.sso_account(chained) == {"accountId": WORK, "accountName": "Workloads"}  # the label first
    assert present.sso_account(direct, "aws+sandbox@example.com") == {
        "accountId": SANDBOX, "accountName": "sandbox", "emailAddress": "aws+sandbox@example.com"}
    bare = Grant(role_arn=f"arn:aws:iam::{HUB}:role/ops/Deploy", account_id=HUB, label="Deploy", session_name="s",
                 via="r")
    assert present.sso_account(bare)["accountName"] == HUB  # no label, no alias: the id
    assert present.sso_role(chained) == {"roleName": "Developer", "accountId": WORK}
    assert present.sso_role(bare) == {"roleName": "Deploy", "accountId": HUB}  # the name, not the path


def test_portal_rows_say_via_which_hub_and_the_one_hour_cap(grants: dict[str, Grant]) -> None:
    direct, chained = grants[SANDBOX], grants[WORK]
    row = str(portal_html.rows_html([chained], set()))
    assert f"<li class=role data-g={chained.id}><a " in row  # 3600/3600: no data-m, no data-d
    assert '<small class="muted via" title="role chaining: at most 1 hour">via hub/BridgeHub · 1 h max</small>' in row
    assert SECRET not in row
    row = str(portal_html.rows_html([direct], {direct.id}, where=True))
    assert f'data-g={direct.id} data-a="{SANDBOX}" data-m=43200 data-d=7200 data-f>' in row
    assert '<small class="muted in">in sandbox</small>' in row and "via" not in row


def test_collapsed_cards_carry_no_rows_but_a_way_to_them(grants: dict[str, Grant]) -> None:
    accounts = [(SANDBOX, [grants[SANDBOX]]), (WORK, [grants[WORK]])]
    inline = str(portal_html.account_cards(accounts, set(), {}, lazy=False))
    assert inline.count("<details class=\"card account\" open ") == 2 and inline.count("<li class=role ") == 2
    lazy = str(portal_html.account_cards(accounts, set(), {}, lazy=True, open_id=WORK))
    assert lazy.count("<li class=role ") == 1 and f'open id=open data-a="{WORK}"' in lazy
    assert f'<li class=lazy><a href="/portal?open={SANDBOX}#open">Show 1 role</a></li>' in lazy
    rows = str(portal_html.account_rows(accounts, set(), {}))
    assert rows.startswith(f'<ul data-a="{SANDBOX}">\n<li class=role data-g={grants[SANDBOX].id}')
    assert rows.count("<ul data-a=") == 2
