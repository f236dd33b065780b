"""SCIM filters (RFC 7644 §3.4.2.2) and attribute paths (§3.5.2): parsed into a small tree, evaluated against a
resource's JSON. Attribute names are case-insensitive; string comparisons ignore case except for ``id`` and
``externalId`` (caseExact in RFC 7643; a member's ``value`` is one of our ids, which have no case)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.scim.errors import ScimError

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
OPERATORS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")
CASE_EXACT = frozenset({"id", "externalid"})
MAX_FILTER = 1000  # characters

_TOKEN = re.compile(r"""\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<lb>\[)|(?P<rb>\])|(?P<str>"(?:[^"\\]|\\.)*")
                    |(?P<word>[A-Za-z0-9_:.$\-]+))""", re.VERBOSE)


def bad_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


@dataclass(frozen=True)
class Path:
    """``attr``, ``attr.sub``, ``attr[filter]``, ``attr[filter].sub``; ``schema``: an extension URN prefix."""

    attr: str
    sub: str | None = None
    where: Node | None = None
    schema: str | None = None


@dataclass(frozen=True)
class Compare:
    path: Path
    op: str  # eq ne co sw ew gt ge lt le pr, or match (a value path alone: some element matches)
    value: Any = None


@dataclass(frozen=True)
class Logical:
    op: str  # and | or
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    inner: Node


Node = Compare | Logical | Not


def split_attr(text: str) -> tuple[str | None, str]:
    """``urn:…:User:name.givenName`` → (the extension URN or None for the core schemas, ``name.givenName``)."""
    if text.lower().startswith("urn:"):
        for core in (CORE_USER, CORE_GROUP):
            if text.lower().startswith(core.lower() + ":"):
                return None, text[len(core) + 1:]
        urn, _, attr = text.rpartition(":")
        if not urn or not attr:
            raise ScimError(400, f"bad attribute path {text[:80]!r}", "invalidPath")
        return urn, attr
    return None, text


def _simple_path(text: str) -> Path:
    schema, rest = split_attr(text)
    attr, _, sub = rest.partition(".")
    if not re.fullmatch(r"[A-Za-z$][\w$-]*", attr) or (sub and not re.fullmatch(r"[A-Za-z$][\w$-]*", sub)):
        raise ScimError(400, f"bad attribute path {text[:80]!r}", "invalidPath")
    return Path(attr, sub or None, None, schema)


class _Parser:
    def __init__(self, text: str, what: str = "filter") -> None:
        if len(text) > MAX_FILTER:
            raise bad_filter(f"{what} longer than {MAX_FILTER} characters")
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise bad_filter(f"cannot read the {what} at {text[pos:pos + 20]!r}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind is not None and tok[0] != kind):
            raise bad_filter(f"unexpected {'end' if tok is None else repr(tok[1])} in {self.text[:80]!r}")
        self.i += 1
        return tok

    def word_is(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() in words

    def expr(self) -> Node:
        node = self.term()
        while self.word_is("or"):
            self.take()
            node = Logical("or", node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.word_is("and"):
            self.take()
            node = Logical("and", node, self.factor())
        return node

    def factor(self) -> Node:
        if self.word_is("not"):
            self.take()
            self.take("lp")
            inner = self.expr()
            self.take("rp")
            return Not(inner)
        if self.peek() is not None and self.peek()[0] == "lp":  # type: ignore[index]
            self.take()
            inner = self.expr()
            self.take("rp")
            return inner
        path = self.path()
        if path.where is not None and path.sub is None and not self.word_is(*OPERATORS, "pr"):
            return Compare(path, "match")  # ``emails[type eq "work"]`` on its own: some element matches
        op = self.take("word")[1].lower()
        if op == "pr":
            return Compare(path, "pr")
        if op not in OPERATORS:
            raise bad_filter(f"unknown operator {op[:20]!r} (use one of {', '.join(OPERATORS)}, pr)")
        return Compare(path, op, self.value())

    def path(self) -> Path:
        text = self.take("word")[1]
        base = _simple_path(text)
        if self.peek() is not None and self.peek()[0] == "lb":  # type: ignore[index]
            if base.sub:
                raise ScimError(400, f"bad attribute path {text[:80]!r}", "invalidPath")
            self.take()
            where = self.expr()
            self.take("rb")
            sub = None
            tok = self.peek()
            if tok is not None and tok[0] == "word" and tok[1].startswith("."):
                self.take()
                sub = tok[1][1:]
                if not re.fullmatch(r"[A-Za-z$][\w$-]*", sub):
                    raise ScimError(400, f"bad sub-attribute {tok[1][:40]!r}", "invalidPath")
            return Path(base.attr, sub, where, base.schema)
        return base

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            try:
                return json.loads(text)
            except ValueError:
                raise bad_filter(f"bad string {text[:40]}") from None
        if kind == "word":
            low = text.lower()
            if low in ("true", "false"):
                return low == "true"
            if low == "null":
                return None
            try:
                return float(text) if "." in text or "e" in low else int(text)
            except ValueError:
                pass
        raise bad_filter(f"expected a value (\"text\", true, false, null or a number), got {text[:40]!r}")

    def done(self) -> None:
        if self.peek() is not None:
            raise bad_filter(f"unexpected {self.peek()[1][:40]!r} in {self.text[:80]!r}")  # type: ignore[index]


def parse_filter(text: str) -> Node:
    """A ``filter=`` query; ScimError(invalidFilter) saying what is wrong."""
    if not text.strip():
        raise bad_filter("empty filter")
    p = _Parser(text)
    node = p.expr()
    p.done()
    return node


def parse_path(text: str) -> Path:
    """A PATCH operation's ``path`` (§3.5.2): ScimError(invalidPath) when it is not one."""
    try:
        p = _Parser(text, "path")
        path = p.path()
        p.done()
    except ScimError as e:
        raise ScimError(400, e.detail, "invalidPath") from None
    return path


def lookup(doc: Mapping[str, Any], name: str) -> tuple[str | None, Any]:
    """(the key as spelled in ``doc``, its value): attribute names are case-insensitive."""
    if name in doc:
        return name, doc[name]
    low = name.lower()
    for k, v in doc.items():
        if isinstance(k, str) and k.lower() == low:
            return k, v
    return None, None


def _container(doc: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    if path.schema is None:
        return doc
    ext = lookup(doc, path.schema)[1]
    return ext if isinstance(ext, Mapping) else {}


def values_at(doc: Mapping[str, Any], path: Path) -> list[Any]:
    """Every value ``path`` names in ``doc`` (multi-valued attributes flattened)."""
    value = lookup(_container(doc, path), path.attr)[1]
    items = value if isinstance(value, list) else [] if value is None else [value]
    if path.where is not None:
        items = [v for v in items if isinstance(v, Mapping) and matches(v, path.where)]
    if path.sub is not None:
        items = [lookup(v, path.sub)[1] for v in items if isinstance(v, Mapping)]
    elif items and all(isinstance(v, Mapping) for v in items) and path.where is None:
        items = [lookup(v, "value")[1] for v in items]  # ``emails eq "x"``: the elements' value
    return [v for v in items if v is not None]


def _compare(have: Any, op: str, want: Any, exact: bool) -> bool:
    if isinstance(have, bool) or isinstance(want, bool) or want is None:
        return (have == want) if op == "eq" else (have != want) if op == "ne" else False
    if isinstance(have, str) and isinstance(want, str):
        a, b = (have, want) if exact else (have.lower(), want.lower())
        return {"eq": a == b, "ne": a != b, "co": b in a, "sw": a.startswith(b), "ew": a.endswith(b),
                "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
    if isinstance(have, int | float) and isinstance(want, int | float):
        return {"eq": have == want, "ne": have != want, "gt": have > want, "ge": have >= want,
                "lt": have < want, "le": have <= want}.get(op, False)
    return op == "ne"


def matches(doc: Mapping[str, Any], node: Node) -> bool:
    """Whether ``doc`` (a resource's JSON, or one element of a multi-valued attribute) matches ``node``."""
    if isinstance(node, Logical):
        return (matches(doc, node.left) and matches(doc, node.right)) if node.op == "and" else (
            matches(doc, node.left) or matches(doc, node.right))
    if isinstance(node, Not):
        return not matches(doc, node.inner)
    values = values_at(doc, node.path)
    if node.op in ("pr", "match"):
        return bool(values) and any(v not in ("", [], {}) for v in values)
    if node.op == "ne" and not values:
        return True
    exact = (node.path.sub or node.path.attr).lower() in CASE_EXACT
    if node.op == "ne":
        return all(_compare(v, "ne", node.value, exact) for v in values)
    return any(_compare(v, node.op, node.value, exact) for v in values)


def equality(node: Node) -> tuple[str, Any] | None:
    """``attr eq value`` (no sub-filter, core schema): (attr lower-cased, with ``.sub``, value) — the lookups
    an index answers (``userName eq "…"``, ``displayName eq "…"``); None for anything else."""
    if isinstance(node, Compare) and node.op == "eq" and node.path.schema is None and node.path.where is None:
        name = node.path.attr.lower() + (f".{node.path.sub.lower()}" if node.path.sub else "")
        return name, node.value
    return None
