"""The storage conformance suite's SCIM part (bridge/storage/scim.py), star-imported with
tests/storage_conformance.py by each backend's test module."""

from __future__ import annotations

from dataclasses import replace

from bridge.storage.scim import ScimRecord
from tests.storage_conformance import T0, Harness


def scim_user(rid: str = "u1", **kw: object) -> ScimRecord:
    doc = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice@example.com",
           "active": True}
    return ScimRecord(kind="User", id=rid, doc=doc, created=T0, modified=T0,
                      names=("username:alice@example.com", "emails:alice@example.com"), **kw)  # type: ignore[arg-type]


def test_scim_records_round_trip_and_are_found_by_name(harness: Harness) -> None:
    s = harness.store
    user = scim_user(groups=(("g1", "aws-admins"),))
    s.scim_put(user)
    assert s.scim_get("User", "u1") == user
    assert s.scim_get("Group", "u1") is None  # kinds apart
    assert s.scim_find("User", "username:alice@example.com") == ["u1"]
    assert s.scim_find("Group", "username:alice@example.com") == []
    assert s.scim_ids("User") == ["u1"]
    harness.advance(400 * 86400)  # no TTL: kept until the IdP deletes it
    assert s.scim_get("User", "u1") == user


def test_scim_rewrite_drops_the_names_it_no_longer_holds(harness: Harness) -> None:
    s = harness.store
    old = scim_user()
    s.scim_put(old)
    new = replace(old, names=("username:alice.new@example.com",), version=2, deleted=True)
    s.scim_put(new, old)
    assert s.scim_find("User", "username:alice@example.com") == []
    assert s.scim_find("User", "emails:alice@example.com") == []
    assert s.scim_find("User", "username:alice.new@example.com") == ["u1"]
    got = s.scim_get("User", "u1")
    assert got is not None and got.deleted and got.version == 2


def test_scim_names_hold_several_ids_and_delete_removes_everything(harness: Harness) -> None:
    s = harness.store
    a, b = scim_user("u1"), scim_user("u2")
    s.scim_put(a)
    s.scim_put(b)
    assert s.scim_find("User", "emails:alice@example.com") == ["u1", "u2"]
    s.scim_delete(a)
    assert s.scim_get("User", "u1") is None
    assert s.scim_find("User", "emails:alice@example.com") == ["u2"]
    assert s.scim_ids("User") == ["u2"]


def test_a_scim_record_of_another_shape_is_not_read(harness: Harness) -> None:
    harness.raw_put("scim:User:bad", {"kind": "User", "id": "bad", "doc": "not an object"}, 3600)
    assert harness.store.scim_get("User", "bad") is None
