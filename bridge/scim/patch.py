"""PATCH (RFC 7644 §3.5.2) on a resource's JSON: ``add``, ``replace``, ``remove``, with or without ``path``, in
the shapes Okta and Entra ID document — op names in any case, ``value`` objects without a path (Okta's
``{"op": "replace", "value": {"active": false}}``), value paths (``members[value eq "…"]``,
``emails[type eq "work"].value``), extension attributes by URN, and Entra ID's removal of members by a
``value`` list. The result is checked again as a whole (bridge/scim/model.py) by the caller."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bridge.scim.errors import ScimError, bad
from bridge.scim.filter import Compare, Logical, Node, Path, lookup, matches, parse_path

PATCH_OP_SCIM = "urn:ietf:params:scim:api:messages:2.0:PatchOp"  # RFC 7644 §3.5.2
MAX_OPERATIONS = 1000
READ_ONLY = frozenset({"meta", "groups"})


def operations(body: Any) -> list[Mapping[str, Any]]:
    """The operations of a PatchOp request; ScimError(invalidSyntax) when it is not one."""
    if not isinstance(body, Mapping):
        raise bad("the PATCH body must be a JSON object", "invalidSyntax")
    schemas = lookup(body, "schemas")[1]
    if not isinstance(schemas, list) or PATCH_OP_SCIM.lower() not in {str(s).lower() for s in schemas}:
        raise bad(f"schemas must include {PATCH_OP_SCIM}", "invalidSyntax")
    ops = lookup(body, "Operations")[1]
    if not isinstance(ops, list) or not ops or not all(isinstance(o, Mapping) for o in ops):
        raise bad("Operations must be a non-empty list of objects", "invalidSyntax")
    if len(ops) > MAX_OPERATIONS:
        raise ScimError(400, f"more than {MAX_OPERATIONS} operations", "tooMany")
    return ops


def apply_patch(doc: Mapping[str, Any], body: Any, *, rid: str, schemas: tuple[str, ...] = ()) -> dict[str, Any]:
    """``doc`` with every operation of ``body`` applied (all or nothing: a copy is changed). ``schemas``: the
    extension URNs whose objects a path-less value may carry whole."""
    out = copy.deepcopy(dict(doc))
    extensions = {s.lower() for s in schemas}
    for i, op in enumerate(operations(body)):
        name = lookup(op, "op")[1]
        if not isinstance(name, str) or name.lower() not in ("add", "replace", "remove"):
            raise bad(f"Operations[{i}].op must be add, replace or remove", "invalidSyntax")
        name = name.lower()
        path, value = lookup(op, "path")[1], lookup(op, "value")[1]
        if path is not None and not isinstance(path, str):
            raise bad(f"Operations[{i}].path must be a string", "invalidPath")
        if not path:
            if name == "remove":
                raise ScimError(400, f"Operations[{i}]: remove needs a path", "noTarget")
            if not isinstance(value, Mapping):
                raise bad(f"Operations[{i}]: without a path, value must be an object")
            for key, v in value.items():
                if str(key).lower() in extensions and isinstance(v, Mapping):
                    _set_extension(out, str(key), v, name, rid)
                elif str(key).lower() != "schemas":
                    _set(out, parse_path(str(key)), v, name, rid)
            continue
        if path.lower() in extensions:  # the extension's object itself
            if name == "remove":
                out.pop(lookup(out, path)[0] or path, None)
            elif not isinstance(value, Mapping):
                raise bad(f"Operations[{i}]: the value for {path} must be an object")
            else:
                _set_extension(out, path, value, name, rid)
            continue
        p = parse_path(path)
        if name == "remove":
            _remove(out, p, value)
        else:
            if value is None:
                raise bad(f"Operations[{i}]: {name} needs a value")
            _set(out, p, value, name, rid)
    return out


def _set_extension(doc: dict[str, Any], urn: str, value: Mapping[str, Any], op: str, rid: str) -> None:
    """Each attribute of an extension's object (its own ``schemas`` aside); added even when empty."""
    _container(doc, Path("schemas", schema=urn), create=True)
    for sub, v in value.items():
        if str(sub).lower() != "schemas":
            _set(doc, Path(str(sub), schema=urn), v, op, rid)


def _container(doc: dict[str, Any], p: Path, create: bool) -> dict[str, Any] | None:
    if p.attr.lower() in READ_ONLY and p.schema is None:
        raise ScimError(400, f"{p.attr} is read-only", "mutability")
    if p.schema is None:
        return doc
    key, ext = lookup(doc, p.schema)
    if not isinstance(ext, dict):
        if not create:
            return None
        ext = {}
        doc[key or p.schema] = ext
    return ext


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping) and "value" in a and "value" in b:
        return bool(a["value"] == b["value"])
    return bool(a == b)


def _set(doc: dict[str, Any], p: Path, value: Any, op: str, rid: str) -> None:
    if p.attr.lower() == "id" and p.schema is None:
        if value != rid:  # Okta sends the group's own id with a rename: only a different one is a change
            raise ScimError(400, "id is read-only", "mutability")
        return
    box = _container(doc, p, create=True)
    assert box is not None
    key, cur = lookup(box, p.attr)
    key = key or p.attr
    if p.where is not None:
        _set_matching(box, key, cur, p, value)
    elif p.sub is not None:
        if cur is None:
            cur = box[key] = {}
        if not isinstance(cur, dict):
            raise ScimError(400, f"{p.attr} has no sub-attribute {p.sub}", "invalidPath")
        cur[lookup(cur, p.sub)[0] or p.sub] = value
    elif op == "add" and isinstance(cur, list):
        for item in value if isinstance(value, list) else [value]:
            if not any(_same(item, have) for have in cur):
                cur.append(item)
    elif isinstance(cur, dict) and isinstance(value, Mapping):
        cur.update(value)  # a complex attribute: the sub-attributes given
    else:
        box[key] = value


def _set_matching(box: dict[str, Any], key: str, cur: Any, p: Path, value: Any) -> None:
    """``attr[filter]`` or ``attr[filter].sub``: every element the filter matches."""
    assert p.where is not None
    if cur is None:
        cur = box[key] = []
    if not isinstance(cur, list):
        raise ScimError(400, f"{p.attr} is not multi-valued", "invalidPath")
    hits = [item for item in cur if isinstance(item, dict) and matches(item, p.where)]
    if not hits:
        made = _from_filter(p.where)
        if made is None:
            raise ScimError(400, f"nothing in {p.attr} matches the path's filter", "noTarget")
        cur.append(made)  # Entra ID's emails[type eq "work"].value on a user without one: that element
        hits = [made]
    for item in hits:
        if p.sub is not None:
            item[lookup(item, p.sub)[0] or p.sub] = value
        elif isinstance(value, Mapping):
            item.update(value)
        else:
            raise bad(f"a value for {p.attr}[…] must be an object")


def _from_filter(node: Node) -> dict[str, Any] | None:
    """The element a filter of ``eq``s joined by ``and`` describes, or None."""
    if isinstance(node, Compare) and node.op == "eq" and node.path.sub is None and node.path.where is None:
        return {node.path.attr: node.value}
    if isinstance(node, Logical) and node.op == "and":
        left, right = _from_filter(node.left), _from_filter(node.right)
        return None if left is None or right is None else {**left, **right}
    return None


def _remove(doc: dict[str, Any], p: Path, value: Any) -> None:
    if p.attr.lower() == "id" and p.schema is None:
        raise ScimError(400, "id is read-only", "mutability")
    box = _container(doc, p, create=False)
    key, cur = lookup(box, p.attr) if box is not None else (None, None)
    if box is None or key is None:
        return  # nothing there: removed already
    if p.where is not None:
        if isinstance(cur, list):
            _remove_matching(box, key, cur, p)
    elif p.sub is not None:
        if isinstance(cur, dict) and (sub := lookup(cur, p.sub)[0]) is not None:
            del cur[sub]
    elif isinstance(cur, list) and value is not None:  # Entra ID: remove these members
        gone = value if isinstance(value, list) else [value]
        box[key] = [item for item in cur if not any(_same(item, g) for g in gone)]
    else:
        del box[key]


def _remove_matching(box: dict[str, Any], key: str, cur: list[Any], p: Path) -> None:
    """``attr[filter]`` (those elements) or ``attr[filter].sub`` (that sub-attribute of each)."""
    assert p.where is not None
    hit = [isinstance(item, dict) and matches(item, p.where) for item in cur]
    if p.sub is None:
        box[key] = [item for item, h in zip(cur, hit, strict=True) if not h]
        return
    for item, h in zip(cur, hit, strict=True):
        if h and (sub := lookup(item, p.sub)[0]) is not None:
            del item[sub]
