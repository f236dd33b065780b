"""SCIM (bridge/scim): filters, PATCH in Okta's and Entra ID's documented shapes, resource checks, the
provisioning use cases over a MemoryStore, and what the directory says at sign-in and at each use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.config import settings_from_dict
from bridge.config.scim import ScimSettings
from bridge.domain.identity import Identity
from bridge.scim.directory import Deprovisioned, Directory, end_inactive
from bridge.scim.errors import ScimError
from bridge.scim.filter import equality, matches, parse_filter, parse_path
from bridge.scim.model import check_group, check_user, project
from bridge.scim.patch import apply_patch
from bridge.scim.service import ScimService
from bridge.storage import SessionRecord
from bridge.storage.memory import MemoryStore
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor
from tests.modules import ListSink

T0 = 1_800_000_000
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CTX = audit.Context(client_ip="192.0.2.1")
ALICE = Identity(connector_id="okta", subject="00u1", issuer="https://okta.test", email="alice@example.com",
                 groups=("from-idp",), claims={"upn": "Alice@Corp.example"})


def patch(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(ops)}


# -- filters ---------------------------------------------------------------------------------------

DOC = {"userName": "BJensen@example.com", "active": True, "title": "Tour Guide", "externalId": "ABC",
       "emails": [{"type": "work", "value": "bjensen@example.com"}, {"type": "home", "value": "babs@jensen.org"}],
       "meta": {"lastModified": "2011-05-13T04:42:34Z"}}


@pytest.mark.parametrize(("text", "want"), [
    ('userName eq "bjensen@EXAMPLE.com"', True),  # userName is not caseExact
    ('externalId eq "abc"', False),  # externalId is
    ('USERNAME Eq "bjensen@example.com"', True),  # attribute names and operators ignore case
    ('userName sw "bj" and userName ew ".com"', True),
    ('title co "guide" or userName eq "nobody"', True),
    ('not (active eq true)', False),
    ('emails[type eq "work" and value co "@example.com"]', True),
    ('emails[type eq "other"]', False),
    ('emails.value eq "babs@jensen.org"', True),
    ('emails eq "babs@jensen.org"', True),
    ('title pr', True), ('nickName pr', False), ('nickName ne "x"', True),
    ('meta.lastModified gt "2011-05-13T04:42:34Z"', False),
    ('meta.lastModified ge "2011-05-13T04:42:34Z"', True),
    ('userName eq "a \\"quoted\\" name"', False),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen@example.com"', True),
])
def test_filters(text: str, want: bool) -> None:
    assert matches(DOC, parse_filter(text)) is want


@pytest.mark.parametrize("text", ["", "userName", 'userName eq', 'userName zz "x"', '(userName eq "x"',
                                  'userName eq "x")', 'userName eq unquoted', 'userName eq "x" and', "a" * 1001,
                                  'emails[type eq "work"', 'userName eq "x" #', "not userName eq \"x\""])
def test_a_bad_filter_is_refused_with_invalid_filter(text: str) -> None:
    with pytest.raises(ScimError) as e:
        parse_filter(text)
    assert e.value.status == 400 and e.value.scim_type == "invalidFilter" and e.value.detail


def test_equality_is_what_an_index_answers() -> None:
    assert equality(parse_filter('userName eq "X@y"')) == ("username", "X@y")
    assert equality(parse_filter('emails.value eq "x"')) == ("emails.value", "x")
    assert equality(parse_filter('userName co "x"')) is None
    assert equality(parse_filter('emails[type eq "w"]')) is None


@pytest.mark.parametrize("text", ["", "bad path!", "emails[type eq]", "name.given.x", "members[value eq \"1\"] x"])
def test_a_bad_patch_path_is_refused_with_invalid_path(text: str) -> None:
    with pytest.raises(ScimError) as e:
        parse_path(text)
    assert e.value.scim_type == "invalidPath"


# -- PATCH in the IdPs' documented shapes ------------------------------------------------------------

def user_doc(**kw: Any) -> dict[str, Any]:
    return check_user({"schemas": [USER], "userName": "alice@example.com", "active": True,
                       "emails": [{"type": "work", "value": "alice@example.com", "primary": True}], **kw})


def test_okta_deactivates_with_a_pathless_replace() -> None:
    out = check_user(apply_patch(user_doc(), patch({"op": "replace", "value": {"active": False}}), rid="u1"))
    assert out["active"] is False


@pytest.mark.parametrize("op", [
    {"op": "Replace", "path": "active", "value": "False"},
    {"op": "Replace", "path": "active", "value": False},
    {"op": "replace", "value": {"active": "False"}},
    {"op": "Replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:active", "value": "false"},
])
def test_entra_deactivates_with_booleans_and_strings(op: dict[str, Any]) -> None:
    assert check_user(apply_patch(user_doc(), patch(op), rid="u1"))["active"] is False


def test_entra_replaces_a_work_email_and_a_sub_attribute() -> None:
    out = apply_patch(user_doc(name={"givenName": "A", "familyName": "B"}), patch(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@example.com"},
        {"op": "Replace", "path": "name.familyName", "value": "C"},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
         "value": "Platform"}), rid="u1")
    assert out["emails"] == [{"type": "work", "value": "new@example.com", "primary": True}]
    assert out["name"] == {"givenName": "A", "familyName": "C"}
    assert out["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] == {"department": "Platform"}


def test_the_enterprise_extension_as_a_whole() -> None:
    ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    schemas = (ext,)
    out = apply_patch(user_doc(), patch({"op": "add", "path": ext, "value": {"schemas": [ext], "department": "x"}},
                                        {"op": "replace", "value": {ext: {"costCenter": "7"}}}), rid="u1",
                      schemas=schemas)
    assert out[ext] == {"department": "x", "costCenter": "7"} and ext in check_user(out)["schemas"]
    assert ext not in apply_patch(out, patch({"op": "remove", "path": ext}), rid="u1", schemas=schemas)


def test_a_value_path_with_no_match_adds_the_element_its_filter_describes() -> None:
    out = apply_patch(user_doc(emails=[]), patch(
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "w@example.com"}), rid="u1")
    assert out["emails"] == [{"type": "work", "value": "w@example.com"}]
    with pytest.raises(ScimError) as e:
        apply_patch(user_doc(emails=[]), patch({"op": "replace", "path": 'emails[value co "x"].type',
                                                "value": "work"}), rid="u1")
    assert e.value.scim_type == "noTarget"


def test_group_members_added_and_removed_as_okta_and_entra_send_them() -> None:
    g = check_group({"schemas": [GROUP], "displayName": "devs", "members": [{"value": "u1"}]})
    g = apply_patch(g, patch({"op": "add", "path": "members", "value": [{"value": "u2", "display": "b"},
                                                                         {"value": "u1"}]}), rid="g1")
    assert [m["value"] for m in g["members"]] == ["u1", "u2"]  # u1 not twice
    okta = apply_patch(g, patch({"op": "remove", "path": 'members[value eq "u1"]'}), rid="g1")
    assert [m["value"] for m in okta["members"]] == ["u2"]
    entra = apply_patch(g, patch({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": "u2"}]}),
                        rid="g1")
    assert [m["value"] for m in entra["members"]] == ["u1"]
    everyone = apply_patch(g, patch({"op": "remove", "path": "members"}), rid="g1")
    assert "members" not in everyone and check_group(everyone)["members"] == []
    renamed = apply_patch(g, patch({"op": "replace", "value": {"id": "g1", "displayName": "ops"}}), rid="g1")
    assert renamed["displayName"] == "ops"


@pytest.mark.parametrize(("body", "scim_type"), [
    ({"Operations": [{"op": "add", "path": "title", "value": "x"}]}, "invalidSyntax"),  # no schemas
    (patch(), "invalidSyntax"),
    ({"schemas": [PATCH], "Operations": "add"}, "invalidSyntax"),
    (patch({"op": "move", "path": "title", "value": "x"}), "invalidSyntax"),
    (patch({"op": "remove"}), "noTarget"),
    (patch({"op": "add", "value": "not an object"}), "invalidValue"),
    (patch({"op": "add", "path": "title"}), "invalidValue"),
    (patch({"op": "replace", "path": "id", "value": "other"}), "mutability"),
    (patch({"op": "replace", "value": {"id": "other"}}), "mutability"),
    (patch({"op": "add", "path": "groups", "value": [{"value": "g1"}]}), "mutability"),
    (patch({"op": "replace", "path": "meta.created", "value": "x"}), "mutability"),
    (patch({"op": "replace", "path": "userName[value eq \"x\"]", "value": {"a": 1}}), "invalidPath"),
    (patch({"op": "replace", "path": 3, "value": 1}), "invalidPath"),
    ("not json object", "invalidSyntax"),
])
def test_a_bad_patch_is_refused_and_changes_nothing(body: Any, scim_type: str) -> None:
    doc = user_doc(title="t")
    before = json.dumps(doc)
    with pytest.raises(ScimError) as e:
        apply_patch(doc, body, rid="u1")
    assert e.value.status == 400 and e.value.scim_type == scim_type
    assert json.dumps(doc) == before


@pytest.mark.parametrize(("doc", "words"), [
    ({"userName": "a"}, "schemas"),
    ({"schemas": [GROUP], "userName": "a"}, "schemas"),
    ({"schemas": [USER]}, "userName is required"),
    ({"schemas": [USER], "userName": "  "}, "userName is required"),
    ({"schemas": [USER], "userName": "a" * 300}, "longer than"),
    ({"schemas": [USER], "userName": "a", "active": "maybe"}, "active must be true or false"),
    ({"schemas": [USER], "userName": "a", "emails": "a@b"}, "emails must be a list"),
    ({"schemas": [USER], "userName": "a", "externalId": 5}, "externalId must be a string"),
    ([1, 2], "JSON object"),
])
def test_a_bad_user_is_refused_saying_why(doc: Any, words: str) -> None:
    with pytest.raises(ScimError) as e:
        check_user(doc)
    assert e.value.status == 400 and words in e.value.detail


def test_a_user_keeps_what_the_idp_sent_but_never_a_password_or_read_only_attributes() -> None:
    out = check_user({"schemas": [USER], "userName": " a@b.c ", "password": "secret", "id": "x", "meta": {},
                      "groups": [{"value": "g"}], "locale": "en-US"})
    assert out == {"schemas": [USER], "userName": "a@b.c", "locale": "en-US"}  # active unset: active
    ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    assert check_user({"schemas": [USER], "userName": "a", ext: {"department": "x"}})["schemas"] == [USER, ext]
    with pytest.raises(ScimError) as e:
        check_user({"schemas": [USER], "userName": "a", "blob": "x" * 70_000})
    assert e.value.status == 413


def test_attribute_names_in_any_case_are_kept_under_the_rfcs_spelling(w: World) -> None:
    out = w.scim.create_user({"schemas": [USER], "USERNAME": "a@b.c", "Active": "false"}, CTX)
    assert out["userName"] == "a@b.c" and out["active"] is False and "USERNAME" not in out
    group = w.scim.create_group({"schemas": [GROUP], "displayname": "G"}, CTX)
    assert group["displayName"] == "G" and "displayname" not in group


def test_attributes_and_excluded_attributes() -> None:
    res = {"id": "1", "schemas": [GROUP], "meta": {}, "displayName": "d", "members": []}
    assert project(res, [], ["members"]) == {"id": "1", "schemas": [GROUP], "meta": {}, "displayName": "d"}
    assert project(res, ["members"], []) == {"id": "1", "schemas": [GROUP], "meta": {}, "members": []}


# -- the use cases, over a MemoryStore --------------------------------------------------------------

class World:
    def __init__(self, **cfg: Any) -> None:
        self.store = MemoryStore("t:", clock=lambda: T0)
        self.cfg = ScimSettings(**cfg)
        self.directory = Directory(self.store, self.cfg)
        self.sink = ListSink()
        self.ended: list[list[str]] = []
        ids = iter(f"id{i}" for i in range(1, 100))
        self.scim = ScimService(self.store, self.directory, Auditor(self.sink), "https://bridge.test",
                                end_sessions=lambda h: self.ended.append(h) or len(h), clock=lambda: T0,
                                new_id=lambda: next(ids), sleep=lambda s: None)

    def user(self, name: str = "alice@example.com", **kw: Any) -> dict[str, Any]:
        return self.scim.create_user({"schemas": [USER], "userName": name, **kw}, CTX)

    def group(self, name: str, *members: str) -> dict[str, Any]:
        return self.scim.create_group({"schemas": [GROUP], "displayName": name,
                                       "members": [{"value": m} for m in members]}, CTX)


@pytest.fixture
def w() -> World:
    return World()


def test_deactivation_ends_the_users_sessions_and_refuses_the_next_sign_in(w: World) -> None:
    uid = w.user()["id"]
    w.directory.admit(ALICE)  # active: signs in
    out = w.scim.patch_user(uid, patch({"op": "replace", "value": {"active": False}}), CTX)
    assert out["active"] is False and out["meta"]["version"] == 'W/"2"'
    assert w.ended == [["email:alice@example.com"]]
    with pytest.raises(Deprovisioned) as e:
        w.directory.admit(ALICE)
    assert e.value.status == 403 and "deactivated" in e.value.message
    rec = SessionRecord(identity=ALICE, csrf="c")
    assert w.directory.govern(rec) is None
    w.scim.patch_user(uid, patch({"op": "Replace", "path": "active", "value": "True"}), CTX)
    w.directory.admit(ALICE)  # reactivated: signs in again
    assert w.sink.lines[-1]["type"] == "scim" and w.sink.lines[-1]["reactivated"] is True
    assert len(w.ended) == 1  # a reactivation ends nothing


def test_every_write_is_audited_success_and_failure(w: World) -> None:
    uid = w.user(active=False)["id"]
    with pytest.raises(ScimError):
        w.user()  # the same userName
    w.scim.delete_user(uid, CTX)
    assert [(r["action"], r["outcome"], r.get("error")) for r in w.sink.lines] == [
        ("create", "success", None), ("create", "failure", "uniqueness"), ("delete", "success", None)]
    assert w.sink.lines[0]["user_name"] == "alice@example.com" and w.sink.lines[0]["client_ip"] == "192.0.2.1"
    assert not any("password" in json.dumps(r) for r in w.sink.lines)


def test_a_duplicate_user_or_group_is_a_conflict_and_changes_nothing(w: World) -> None:
    w.user()
    with pytest.raises(ScimError) as e:
        w.user("ALICE@example.com")
    assert e.value.status == 409 and e.value.scim_type == "uniqueness"
    assert w.store.scim_ids("User") == ["id1"]
    w.group("devs")
    with pytest.raises(ScimError) as e:
        w.group("DEVS")
    assert e.value.status == 409
    bob = w.user("bob@example.com")["id"]
    with pytest.raises(ScimError) as e:
        w.scim.patch_user(bob, patch({"op": "replace", "path": "userName", "value": "alice@example.com"}), CTX)
    assert e.value.status == 409
    assert w.scim.get("User", bob, [], [])["userName"] == "bob@example.com"


def test_a_group_with_an_unknown_member_is_refused_and_nothing_is_changed(w: World) -> None:
    uid = w.user()["id"]
    gid = w.group("devs", uid)["id"]
    with pytest.raises(ScimError) as e:
        w.scim.patch_group(gid, patch({"op": "add", "path": "members", "value": [{"value": "nobody"}]}), CTX)
    assert e.value.status == 400 and "nobody" in e.value.detail
    assert [m["value"] for m in w.scim.get("Group", gid, [], [])["members"]] == [uid]


def test_groups_pushed_by_scim_decide_at_the_next_use(w: World) -> None:
    uid = w.user()["id"]
    rec = SessionRecord(identity=ALICE, csrf="c")
    assert w.directory.govern(rec) == SessionRecord(identity=replace_groups(ALICE, ()), csrf="c")  # replace
    gid = w.group("aws-admins", uid)["id"]
    assert governed_groups(w, rec) == ("aws-admins",)
    w.scim.patch_group(gid, patch({"op": "replace", "path": "displayName", "value": "aws-readonly"}), CTX)
    assert governed_groups(w, rec) == ("aws-readonly",)  # a rename reaches the member
    w.scim.patch_group(gid, patch({"op": "remove", "path": f'members[value eq "{uid}"]'}), CTX)
    assert governed_groups(w, rec) == ()
    w.scim.patch_group(gid, patch({"op": "add", "path": "members", "value": [{"value": uid}]}), CTX)
    w.scim.delete_group(gid, CTX)
    assert governed_groups(w, rec) == () and w.scim.get("User", uid, [], [])["groups"] == []
    assert rec.identity.groups == ("from-idp",)  # the session itself is never changed


def replace_groups(identity: Identity, groups: tuple[str, ...]) -> Identity:
    from dataclasses import replace

    return replace(identity, groups=groups)


def governed_groups(w: World, rec: SessionRecord) -> tuple[str, ...]:
    out = w.directory.govern(rec)
    assert out is not None
    return out.identity.groups


def test_merge_and_off_and_users_scim_does_not_know() -> None:
    merged = World(groups="merge")
    merged.group("aws-admins", merged.user()["id"])
    rec = SessionRecord(identity=ALICE, csrf="c")
    assert governed_groups(merged, rec) == ("from-idp", "aws-admins")
    off = World(groups="off")
    off.group("aws-admins", off.user()["id"])
    assert governed_groups(off, rec) == ("from-idp",)
    stranger = replace_groups(ALICE, ("x",))
    assert World().directory.govern(SessionRecord(identity=stranger, csrf="c")) is not None  # not known: as is


def test_matching_by_another_attribute_and_claim_per_connector() -> None:
    w = World(attribute="emails", connectors={"okta": "upn"})
    uid = w.user("00u1", emails=[{"value": "alice@corp.example"}])["id"]
    w.scim.patch_user(uid, patch({"op": "replace", "value": {"active": False}}), CTX)
    with pytest.raises(Deprovisioned):
        w.directory.admit(ALICE)  # its upn claim, ignoring case, is the user's e-mail
    other = replace_groups(ALICE, ())
    from dataclasses import replace

    w.directory.admit(replace(other, connector_id="google"))  # a connector SCIM does not govern
    assert w.ended == [[]]  # upn is no session index: those sessions end at their next use


def test_a_deleted_user_stays_refused_until_the_idp_creates_them_again(w: World) -> None:
    uid = w.user()["id"]
    gid = w.group("devs", uid)["id"]
    w.scim.delete_user(uid, CTX)
    assert w.ended == [["email:alice@example.com"]]
    with pytest.raises(ScimError) as e:
        w.scim.get("User", uid, [], [])
    assert e.value.status == 404
    assert w.scim.search("User", 'userName eq "alice@example.com"', 1, 100, [], [])["totalResults"] == 0
    assert w.scim.get("Group", gid, [], [])["members"] == []
    with pytest.raises(Deprovisioned):
        w.directory.admit(ALICE)
    w.user()  # created again: the deleted one is forgotten
    w.directory.admit(ALICE)


def test_search_pages_and_filters(w: World) -> None:
    for i in range(5):
        w.user(f"u{i}@example.com", title="dev" if i % 2 else "ops")
    page = w.scim.search("User", None, 2, 2, ["userName"], [])
    assert page["totalResults"] == 5 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["u1@example.com", "u2@example.com"]
    assert set(page["Resources"][0]) == {"id", "schemas", "meta", "userName"}
    assert w.scim.search("User", 'title eq "dev"', 1, 100, [], [])["totalResults"] == 2
    assert w.scim.search("User", 'id eq "id3"', 1, 100, [], [])["Resources"][0]["userName"] == "u2@example.com"
    assert w.scim.search("User", None, 1, 0, [], [])["Resources"] == []


def test_unknown_ids_are_not_found(w: World) -> None:
    for call in (lambda: w.scim.get("User", "nope", [], []), lambda: w.scim.delete_user("nope", CTX),
                 lambda: w.scim.patch_group("x" * 500, patch({"op": "remove", "path": "members"}), CTX)):
        with pytest.raises(ScimError) as e:
            call()
        assert e.value.status == 404


def test_a_write_waits_for_another_instances_lock_then_says_busy(w: World) -> None:
    assert w.store.try_lock("scim-write", 30)
    with pytest.raises(ScimError) as e:
        w.user()
    assert e.value.status == 503 and w.store.scim_ids("User") == []
    assert w.sink.lines[-1]["error"] == "busy"


class FakeSessions:
    """What end_inactive needs of bridge/core/sessions.py (the real one is driven in tests/integration/test_scim.py)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.ended: list[str] = []

    def get(self, shash: str) -> SessionRecord | None:
        return self.store.get_session(shash)

    def end(self, shash: str, record: SessionRecord | None = None) -> int:
        self.ended.append(shash)
        return 0


def test_end_inactive_ends_only_the_sessions_of_inactive_users(w: World) -> None:
    from dataclasses import replace

    from bridge.storage import hash_id

    bob = replace(ALICE, subject="bob", email="bob@example.com")
    sessions = FakeSessions(w.store)
    s1, s2 = (hash_id(w.store.create_session(SessionRecord(identity=i, csrf="c"), idle=60, absolute=600))
              for i in (ALICE, bob))
    w.store.index_session(["email:alice@example.com"], s1, 600)
    w.store.index_session(["email:alice@example.com"], s2, 600)  # filed wrongly: still checked
    w.user(active=False)
    assert end_inactive(sessions, w.directory, ["email:alice@example.com"]) == 1
    assert sessions.ended == [s1]


# -- settings -------------------------------------------------------------------------------------

def base_config(**scim: Any) -> dict[str, Any]:
    return {"base_url": "https://bridge.example.com", "insecure_dev_login": True,
            "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "x"}]}], "scim": scim}


def test_scim_is_off_unless_a_token_is_configured(tmp_path: Path) -> None:
    assert not settings_from_dict(base_config()).scim.enabled
    (tmp_path / "scim-token").write_text("t" * 40 + "\n")
    s = settings_from_dict(base_config(token_file="scim-token"), source_dir=tmp_path)
    assert s.scim.enabled and s.scim.token is not None and s.scim.token.get_secret_value() == "t" * 40


@pytest.mark.parametrize(("scim", "words"), [
    ({"token": "short"}, "at least 32"),
    ({"token_file": "missing"}, "cannot read"),
    ({"connectors": {"okta": "email"}}, "'okta' is not a configured connector"),
    ({"attribute": "nickName"}, "scim.attribute"),
    ({"groups": "sometimes"}, "scim.groups"),
])
def test_bad_scim_settings_are_listed(tmp_path: Path, scim: dict[str, Any], words: str) -> None:
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        settings_from_dict(base_config(**scim), source_dir=tmp_path)
    assert words in str(e.value), e.value.problems
