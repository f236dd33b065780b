"""Picking accounts of an organization by OU and tag, and merging them into the catalog
(bridge/aws/organizations.py)."""

from __future__ import annotations

from bridge.aws.organizations import OrgAccount, catalog, differences, picked

ROOT = ("r-aaaa", "Root")
WORK = ("ou-aaaa-11111111", "Workloads")
PROD = ("ou-aaaa-22222222", "Prod")
A = OrgAccount("222222222222", "Payments", "p@example.com", ous=(ROOT, WORK, PROD), tags={"env": "prod"})
B = OrgAccount("333333333333", "Search", ous=(ROOT, WORK), tags={"env": "dev"})
C = OrgAccount("444444444444", "Old", status="SUSPENDED", ous=(ROOT, WORK))
D = OrgAccount("555555555555", "Payments", ous=(ROOT,))  # the same name as A


def test_picked_by_ou_path_or_id_below_counts_and_every_tag_must_hold() -> None:
    assert picked([A, B, C, D]) == [A, B, D]  # no criteria: every ACTIVE account
    assert picked([A, B, C, D], ["Root/Workloads"]) == [A, B]
    assert picked([A, B, C, D], ["ou-aaaa-22222222"]) == [A]
    assert picked([A, B, C, D], ["Workloads"]) == []  # a path starts at the root
    assert picked([A, B, C, D], ["Root/Workloads"], {"env": "prod"}) == [A]
    assert picked([A, B], (), {"env": "prod", "team": "x"}) == []


def test_catalog_makes_unique_aliases_and_keeps_what_was_written() -> None:
    existing = {"222222222222": {"alias": "pay", "roles": {"Auditor": {}}}, "999999999999": {"alias": "payments"}}
    doc = catalog([A, B, D], {"Developer": {"via": "hub/BridgeHub"}}, existing)
    assert doc["222222222222"] == {"alias": "pay", "label": "Payments", "email": "p@example.com",
                                   "ou": "Root/Workloads/Prod", "tags": {"env": "prod"},
                                   "roles": {"Auditor": {}, "Developer": {"via": "hub/BridgeHub"}}}
    assert doc["333333333333"]["alias"] == "search"
    assert doc["555555555555"]["alias"] == "payments-5555"  # "payments" is taken by another account
    assert "999999999999" not in doc  # only the picked accounts
    assert differences(doc, existing) == ["account 222222222222: role Developer is not in the catalog",
                                          "account 333333333333 (Search) is not in the catalog",
                                          "account 555555555555 (Payments) is not in the catalog"]
