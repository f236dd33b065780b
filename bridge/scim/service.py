"""The SCIM provisioning use cases over the store: create, read, list, replace, patch and delete Users and Groups,
each write audited (``scim`` records) and serialised across instances (one store lock), and their effects:
a user deactivated or deleted has every session ended at once (their CLI and IAM Identity Center tokens and
cached credentials with them) through ``end_sessions``; group changes need nothing more — the groups are read
at each decision (bridge/scim/directory.py). No Flask here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol

from bridge.scim.directory import Directory
from bridge.scim.errors import ScimError, bad, not_found
from bridge.scim.filter import ENTERPRISE_USER, equality, matches, parse_filter
from bridge.scim.model import (
    check_group,
    check_user,
    group_names,
    is_active,
    list_response,
    member_ids,
    project,
    render,
    user_names,
)
from bridge.scim.patch import apply_patch
from bridge.storage import LockStore
from bridge.storage.scim import ScimRecord, ScimStore
from bridge.telemetry import audit
from bridge.telemetry.audit import Auditor

LOCK = "scim-write"
LOCK_TTL = 30  # seconds: a crashed writer's lock ends
LOCK_WAIT = 5.0  # seconds a write waits for another instance's
MAX_COUNT = 200  # resources per page
MAX_SCAN = 50_000  # resources a filter without an index may look through
# ``filter`` attributes an index answers: the attribute (lower-cased) → index name prefix.
_USER_INDEX = {"username": "username", "externalid": "externalid", "emails": "emails", "emails.value": "emails"}
_GROUP_INDEX = {"displayname": "displayname", "externalid": "externalid"}


class ScimState(ScimStore, LockStore, Protocol):
    """What ``ScimService`` keeps: the SCIM resources, and the lock its writes are serialised by."""


class ScimService:
    """Users and Groups as the IdP provisions them. ``end_sessions(handles, directory)`` ends every session
    filed under those handles whose identity the directory now finds inactive; returns how many."""

    def __init__(self, store: ScimState, directory: Directory, auditor: Auditor, base_url: str, *,
                 end_sessions: Callable[[list[str]], int], clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, new_id: Callable[[], str] = lambda: str(uuid.uuid4()))\
            -> None:
        self.store = store
        self.directory = directory
        self.auditor = auditor
        self.base = f"{base_url}/scim/v2"
        self.end_sessions = end_sessions
        self.clock = clock
        self.sleep = sleep
        self.new_id = new_id

    # -- the write lock and the audit record of every write ----------------------------------------
    @contextmanager
    def _write(self, action: str, ctx: audit.Context, kind: str, rid: str | None) -> Iterator[dict[str, Any]]:
        """Under the store lock; yields the audit fields to fill; one ``scim`` record, success or failure."""
        fields: dict[str, Any] = {"action": action, "resource": kind, "id": rid}
        waited = 0.0
        while not self.store.try_lock(LOCK, LOCK_TTL):
            if waited >= LOCK_WAIT:
                err = ScimError(503, "another SCIM change is being written; retry")
                self.auditor.record("scim", ctx, outcome="failure", error="busy", **fields)
                raise err
            self.sleep(0.05)
            waited += 0.05
        try:
            yield fields
        except ScimError as e:
            self.auditor.record("scim", ctx, outcome="failure", error=e.scim_type or str(e.status), **fields)
            raise
        else:
            self.auditor.record("scim", ctx, outcome="success", **fields)
        finally:
            self.store.unlock(LOCK)

    def _now(self) -> int:
        return int(self.clock())

    def _get(self, kind: str, rid: str) -> ScimRecord:
        rec = self.store.scim_get(kind, rid) if len(rid) <= 128 else None
        if rec is None or rec.deleted:
            raise not_found(kind, rid)
        return rec

    # -- reads ---------------------------------------------------------------------------------------
    def get(self, kind: str, rid: str, attributes: list[str], excluded: list[str]) -> dict[str, Any]:
        return project(render(self._get(kind, rid), self.base), attributes, excluded)

    def search(self, kind: str, filter_text: str | None, start: int, count: int, attributes: list[str],
               excluded: list[str]) -> dict[str, Any]:
        """GET /Users or /Groups: ``filter``, 1-based ``startIndex``, ``count`` (at most ``MAX_COUNT``)."""
        start, count = max(1, start), max(0, min(count, MAX_COUNT))
        node = parse_filter(filter_text) if filter_text else None
        eq = equality(node) if node is not None else None
        index = (_USER_INDEX if kind == "User" else _GROUP_INDEX).get(eq[0]) if eq else None
        if eq is not None and index is not None:
            ids = self.store.scim_find(kind, f"{index}:{str(eq[1]).lower()}") if isinstance(eq[1], str) else []
        elif eq is not None and eq[0] == "id":
            ids = [eq[1]] if isinstance(eq[1], str) else []
        else:
            ids = self.store.scim_ids(kind)
        if len(ids) > MAX_SCAN:
            raise ScimError(400, f"this would look through more than {MAX_SCAN} resources; filter by userName, "
                                 "externalId, emails or displayName with eq", "tooMany")
        found = []
        for rid in ids:
            rec = self.store.scim_get(kind, rid)
            if rec is None or rec.deleted:
                continue
            resource = render(rec, self.base)
            if node is None or matches(resource, node):
                found.append(resource)
        page = [project(r, attributes, excluded) for r in found[start - 1:start - 1 + count]]
        return list_response(page, len(found), start)

    # -- users ----------------------------------------------------------------------------------------
    def _unique_user(self, doc: Mapping[str, Any], rid: str | None) -> None:
        name = user_names(doc)[0]
        for other in self.store.scim_find("User", name):
            rec = self.store.scim_get("User", other)
            if other != rid and rec is not None and not rec.deleted:
                raise ScimError(409, f"a user with userName {doc['userName']!r} already exists", "uniqueness")

    def _save_user(self, old: ScimRecord | None, doc: dict[str, Any], rid: str, fields: dict[str, Any]) -> ScimRecord:
        now = self._now()
        rec = ScimRecord("User", rid, doc, old.created if old else now, now, (old.version + 1) if old else 1,
                         user_names(doc), old.groups if old else ())
        self.store.scim_put(rec, old)
        active = is_active(doc)
        fields.update(user_name=doc["userName"], active=active)
        if not active and (old is None or is_active(old.doc) or old.deleted):
            fields["sessions_ended"] = self.end_sessions(self.directory.handles(rec))
        elif old is not None and active and not is_active(old.doc):
            fields["reactivated"] = True
        return rec

    def create_user(self, body: Any, ctx: audit.Context) -> dict[str, Any]:
        doc = check_user(body)
        with self._write("create", ctx, "User", None) as fields:
            self._unique_user(doc, None)
            tombstones = [r for rid in self.store.scim_find("User", user_names(doc)[0])
                          if (r := self.store.scim_get("User", rid)) is not None and r.deleted]
            for t in tombstones:  # created again by the IdP: the deleted one no longer refuses the sign-in
                self.store.scim_delete(t)
            rid = self.new_id()
            fields["id"] = rid
            rec = self._save_user(None, doc, rid, fields)
        return render(rec, self.base)

    def replace_user(self, rid: str, body: Any, ctx: audit.Context) -> dict[str, Any]:
        doc = check_user(body)
        with self._write("replace", ctx, "User", rid) as fields:
            old = self._get("User", rid)
            self._unique_user(doc, rid)
            rec = self._save_user(old, doc, rid, fields)
        return render(rec, self.base)

    def patch_user(self, rid: str, body: Any, ctx: audit.Context) -> dict[str, Any]:
        with self._write("patch", ctx, "User", rid) as fields:
            old = self._get("User", rid)
            doc = check_user(apply_patch(old.doc, body, rid=rid, schemas=(ENTERPRISE_USER,)))
            self._unique_user(doc, rid)
            rec = self._save_user(old, doc, rid, fields)
        return render(rec, self.base)

    def delete_user(self, rid: str, ctx: audit.Context) -> None:
        """Deleted: out of every group, and kept as deleted (their next sign-in is refused until the IdP creates
        them again); their sessions end."""
        with self._write("delete", ctx, "User", rid) as fields:
            old = self._get("User", rid)
            for gid, _ in old.groups:
                if (group := self.store.scim_get("Group", gid)) is not None:
                    doc = {**group.doc, "members": [m for m in group.doc.get("members") or () if m["value"] != rid]}
                    self.store.scim_put(replace(group, doc=doc, modified=self._now(), version=group.version + 1),
                                        group)
            rec = replace(old, groups=(), deleted=True, modified=self._now(), version=old.version + 1)
            self.store.scim_put(rec, old)
            fields.update(user_name=old.doc.get("userName"), sessions_ended=self.end_sessions(
                self.directory.handles(rec)))

    # -- groups ---------------------------------------------------------------------------------------
    def _unique_group(self, doc: Mapping[str, Any], rid: str | None) -> None:
        if any(other != rid for other in self.store.scim_find("Group", group_names(doc)[0])):
            raise ScimError(409, f"a group named {doc['displayName']!r} already exists", "uniqueness")

    def _save_group(self, old: ScimRecord | None, doc: dict[str, Any], rid: str, fields: dict[str, Any]) -> ScimRecord:
        """Write the group, and each member's list of groups (added, removed, renamed)."""
        users: dict[str, ScimRecord] = {}
        for uid in member_ids(doc):
            user = self.store.scim_get("User", uid) if len(uid) <= 128 else None
            if user is None or user.deleted:
                raise bad(f"member {uid[:64]!r} is not a user provisioned here")
            users[uid] = user
        doc["members"] = [{**m, "display": str(users[m["value"]].doc.get("userName"))} for m in doc["members"]]
        before = set(member_ids(old.doc)) if old else set()
        now = self._now()
        rec = ScimRecord("Group", rid, doc, old.created if old else now, now, (old.version + 1) if old else 1,
                         group_names(doc))
        self.store.scim_put(rec, old)
        name = str(doc["displayName"])
        renamed = old is not None and old.doc.get("displayName") != name
        for uid in (before | set(users)):
            user = users.get(uid) or self.store.scim_get("User", uid)
            if user is None:
                continue
            groups = tuple(g for g in user.groups if g[0] != rid) + (((rid, name),) if uid in users else ())
            if groups != user.groups or renamed:
                self.store.scim_put(replace(user, groups=groups, modified=now, version=user.version + 1), user)
        fields.update(display_name=name, added=len(set(users) - before), removed=len(before - set(users)))
        return rec

    def create_group(self, body: Any, ctx: audit.Context) -> dict[str, Any]:
        doc = check_group(body)
        with self._write("create", ctx, "Group", None) as fields:
            self._unique_group(doc, None)
            rid = self.new_id()
            fields["id"] = rid
            rec = self._save_group(None, doc, rid, fields)
        return render(rec, self.base)

    def replace_group(self, rid: str, body: Any, ctx: audit.Context) -> dict[str, Any]:
        doc = check_group(body)
        with self._write("replace", ctx, "Group", rid) as fields:
            old = self._get("Group", rid)
            self._unique_group(doc, rid)
            rec = self._save_group(old, doc, rid, fields)
        return render(rec, self.base)

    def patch_group(self, rid: str, body: Any, ctx: audit.Context) -> dict[str, Any]:
        with self._write("patch", ctx, "Group", rid) as fields:
            old = self._get("Group", rid)
            doc = check_group(apply_patch(old.doc, body, rid=rid))
            self._unique_group(doc, rid)
            rec = self._save_group(old, doc, rid, fields)
        return render(rec, self.base)

    def delete_group(self, rid: str, ctx: audit.Context) -> None:
        with self._write("delete", ctx, "Group", rid) as fields:
            old = self._get("Group", rid)
            self._save_group(old, {**old.doc, "members": []}, rid, fields)
            self.store.scim_delete(old)
            fields["display_name"] = old.doc.get("displayName")
