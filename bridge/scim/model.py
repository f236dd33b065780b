"""The User and Group resources as the bridge takes them (RFC 7643 §4.1, §4.2) and gives them back.

Input is checked, never repaired beyond what the IdPs are documented to send: Entra ID's ``active`` as the
string ``"True"``/``"False"`` becomes a boolean; read-only attributes (``id``, ``meta``, a user's ``groups``)
and ``password`` are dropped (the bridge never keeps a password). Anything else is kept as the IdP wrote it,
within ``MAX_RESOURCE`` bytes, so a GET answers what the IdP sent."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.scim.errors import ScimError, bad
from bridge.scim.filter import CORE_GROUP, CORE_USER, lookup
from bridge.storage.scim import ScimRecord

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
MAX_RESOURCE = 64 * 1024  # bytes of JSON per resource
MAX_MEMBERS = 20_000
MAX_NAME = 256
_DROPPED = frozenset({"id", "meta", "password"})


def _schemas(doc: Mapping[str, Any], core: str) -> list[str]:
    schemas = lookup(doc, "schemas")[1]
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas) or core.lower() not in {
            s.lower() for s in schemas}:
        raise bad(f"schemas must be a list that includes {core}", "invalidSyntax")
    return schemas


def _name(doc: Mapping[str, Any], attr: str) -> str:
    value = lookup(doc, attr)[1]
    if not isinstance(value, str) or not value.strip():
        raise bad(f"{attr} is required (a non-empty string)")
    if len(value) > MAX_NAME:
        raise bad(f"{attr} is longer than {MAX_NAME} characters")
    return value.strip()


def _optional_str(doc: Mapping[str, Any], attr: str) -> str | None:
    value = lookup(doc, attr)[1]
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise bad(f"{attr} must be a string of at most {MAX_NAME} characters")
    return value


def as_bool(value: Any, attr: str) -> bool:
    """A SCIM boolean; Entra ID sends ``"True"``/``"False"`` strings in PATCH (documented), so those too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise bad(f"{attr} must be true or false, not {json.dumps(value)[:40]}")


def _clean(doc: Any, what: str, extra_dropped: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise bad(f"the {what} must be a JSON object", "invalidSyntax")
    dropped = _DROPPED | {d.lower() for d in extra_dropped}
    out = {str(k): v for k, v in doc.items() if str(k).lower() not in dropped}
    if len(json.dumps(out)) > MAX_RESOURCE:
        raise ScimError(413, f"the {what} is larger than {MAX_RESOURCE} bytes", "tooLarge")
    return out


def _canonical(doc: dict[str, Any], attr: str) -> None:
    """The required name ``attr`` under its own spelling (attribute names are case-insensitive), trimmed."""
    value = _name(doc, attr)
    doc.pop(lookup(doc, attr)[0] or attr, None)
    doc[attr] = value


def check_user(doc: Any) -> dict[str, Any]:
    """A User as the bridge keeps it; ScimError(400) saying what is wrong."""
    out = _clean(doc, "user", ("groups",))
    schemas = list(_schemas(out, CORE_USER))
    out.pop(lookup(out, "schemas")[0] or "schemas")
    out["schemas"] = schemas
    _canonical(out, "userName")
    key, active = lookup(out, "active")
    out.pop(key or "active", None)
    if active is not None:  # unset: active (RFC 7643 leaves it to the provider)
        out["active"] = as_bool(active, "active")
    _list_extensions(out)
    _optional_str(out, "externalId")
    _optional_str(out, "displayName")
    emails = lookup(out, "emails")[1]
    if emails is not None and (not isinstance(emails, list) or not all(
            isinstance(e, Mapping) and isinstance(lookup(e, "value")[1], str) for e in emails)):
        raise bad('emails must be a list of {"value": "…"} objects')
    return out


def _list_extensions(doc: dict[str, Any]) -> None:
    """An extension's object (``urn:…:enterprise:2.0:User``) is named in ``schemas`` (RFC 7643 §3), also after a
    PATCH that added it."""
    schemas = doc["schemas"]
    for key, value in doc.items():
        if key.lower().startswith("urn:") and isinstance(value, Mapping) and key.lower() not in {
                s.lower() for s in schemas}:
            schemas.append(key)


def is_active(doc: Mapping[str, Any]) -> bool:
    return doc.get("active", True) is True


def check_group(doc: Any) -> dict[str, Any]:
    """A Group as the bridge keeps it (members by id, each once); ScimError(400) saying what is wrong."""
    out = _clean(doc, "group")
    _schemas(out, CORE_GROUP)
    _canonical(out, "displayName")
    _optional_str(out, "externalId")
    key, members = lookup(out, "members")
    if members is None:
        members = []
    if not isinstance(members, list) or not all(
            isinstance(m, Mapping) and isinstance(lookup(m, "value")[1], str) for m in members):
        raise bad('members must be a list of {"value": "<user id>"} objects')
    if len(members) > MAX_MEMBERS:
        raise ScimError(400, f"more than {MAX_MEMBERS} members", "tooMany")
    seen: dict[str, dict[str, Any]] = {}
    for m in members:
        seen.setdefault(str(lookup(m, "value")[1]), {"value": str(lookup(m, "value")[1])})
    out.pop(key or "members", None)
    out["members"] = list(seen.values())
    return out


def member_ids(doc: Mapping[str, Any]) -> list[str]:
    return [str(m["value"]) for m in doc.get("members") or ()]


def emails_of(doc: Mapping[str, Any]) -> list[str]:
    return [str(lookup(e, "value")[1]) for e in lookup(doc, "emails")[1] or () if isinstance(e, Mapping)]


def user_names(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The index names of a user: ``username:``, ``externalid:``, ``emails:`` (lower-cased)."""
    out = [f"username:{_name(doc, 'userName').lower()}"]
    if ext := _optional_str(doc, "externalId"):
        out.append(f"externalid:{ext.lower()}")
    out += sorted({f"emails:{e.lower()}" for e in emails_of(doc)})
    return tuple(out)


def group_names(doc: Mapping[str, Any]) -> tuple[str, ...]:
    out = [f"displayname:{_name(doc, 'displayName').lower()}"]
    if ext := _optional_str(doc, "externalId"):
        out.append(f"externalid:{ext.lower()}")
    return tuple(out)


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(rec: ScimRecord, base: str) -> dict[str, Any]:
    """The resource as SCIM shows it: the kept document, ``id``, ``meta``, and a user's ``groups``."""
    out: dict[str, Any] = {"id": rec.id, **rec.doc}
    if rec.kind == "User":
        out["groups"] = [{"value": gid, "display": name, "$ref": f"{base}/Groups/{gid}"} for gid, name in rec.groups]
    out["meta"] = {"resourceType": rec.kind, "created": _when(rec.created), "lastModified": _when(rec.modified),
                   "version": f'W/"{rec.version}"', "location": f"{base}/{rec.kind}s/{rec.id}"}
    return out


def project(resource: Mapping[str, Any], attributes: Sequence[str], excluded: Sequence[str]) -> dict[str, Any]:
    """``attributes=`` / ``excludedAttributes=`` (top-level names; ``id``, ``schemas``, ``meta`` always kept)."""
    keep = {a.split(".")[0].rpartition(":")[2].lower() for a in attributes if a}
    drop = {a.split(".")[0].rpartition(":")[2].lower() for a in excluded if a}
    always = {"id", "schemas", "meta"}
    return {k: v for k, v in resource.items()
            if k.lower() in always or ((not keep or k.lower() in keep) and k.lower() not in drop)}


def list_response(resources: list[dict[str, Any]], total: int, start: int) -> dict[str, Any]:
    return {"schemas": [LIST_RESPONSE], "totalResults": total, "startIndex": start,
            "itemsPerPage": len(resources), "Resources": resources}
