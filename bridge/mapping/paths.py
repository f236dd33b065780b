"""Claim paths (``email``, ``groups``, ``claims.org.teams[]``, ``claims["https://x/roles"]``) and the
per-identity view that resolves them once. Pure.

A path resolves to a *list* of values: lists anywhere along the way are searched (``[]`` may be
written to say so explicitly), ``null`` values are dropped. Matching and templates work on the
*text* of each value: strings as they are, ``true``/``false`` for booleans, numbers in decimal;
objects have no text (they only count for ``exists``).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.domain.identity import Identity
from bridge.mapping.factors import Requirement, fold

IDENTITY_ROOTS = ("subject", "email", "name", "groups", "issuer", "connector_id", "amr", "acr", "mfa", "claims")
ROOT_ALIASES = {"connector": "connector_id"}
_NAME_RE = re.compile(r"[^.\[\]\"'\s]+")
_CAPTURE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_DEPTH = 32  # nested lists deeper than this are not searched (claims come from a bounded token)


@dataclass(frozen=True)
class ClaimPath:
    """A parsed path. ``root`` is an identity attribute, ``claims`` or ``match`` (a capture)."""

    text: str
    root: str
    keys: tuple[str, ...] = ()

    @property
    def capture(self) -> str | None:
        return self.keys[0] if self.root == "match" else None


def _roots_hint(allow_match: bool) -> str:
    roots = "subject, email, name, groups, issuer, connector_id, amr, acr, mfa, claims.<name>"
    return roots + (" or match.<capture>" if allow_match else "")


def parse_path(text: str, *, allow_match: bool = False) -> ClaimPath:
    """Parse ``text`` or raise ValueError saying what is wrong and what is allowed."""
    text = text.strip()
    m = re.match(r"[A-Za-z_]+", text)
    root = ROOT_ALIASES.get(m[0], m[0]) if m else ""
    rest = text[m.end():] if m else text
    if root == "match" and allow_match:
        cap = rest[1:] if rest.startswith(".") else ""
        if not _CAPTURE_RE.fullmatch(cap):
            raise ValueError(f"{text!r}: write match.<capture name>, e.g. match.account")
        return ClaimPath(text, "match", (cap,))
    if root not in IDENTITY_ROOTS:
        raise ValueError(f"{text!r} is not a claim path; use {_roots_hint(allow_match)}")
    keys: list[str] = []
    i = 0
    while i < len(rest):
        if rest.startswith("[]", i):
            i += 2
            continue
        if rest[i] == "." and root == "claims":
            n = _NAME_RE.match(rest, i + 1)
            if not n:
                break
            keys.append(n[0])
            i = n.end()
            continue
        if rest[i] == "[" and root == "claims":
            q = re.compile(r"\[(\"[^\"]+\"|'[^']+')\]").match(rest, i)
            if not q:
                break
            keys.append(q[1][1:-1])
            i = q.end()
            continue
        break
    if i < len(rest) or (root == "claims" and not keys):
        if root == "claims":
            raise ValueError(f"{text!r} is not a claim path; write claims.<name>[.<name>…] "
                             '(claims["name.with.dots"] for odd names; [] after a name searches a list)')
        raise ValueError(f"{text!r} is not a claim path; {root} has no parts (use {_roots_hint(allow_match)})")
    return ClaimPath(text, root, tuple(keys))


def _flatten(value: Any, depth: int = 0) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        if depth < _MAX_DEPTH:
            for v in value:
                yield from _flatten(v, depth + 1)
    elif value is not None:
        yield value


def resolve(identity: Identity, path: ClaimPath) -> list[Any]:
    """Every value at ``path`` (lists searched, nulls dropped). ``match`` paths resolve to []."""
    if path.root == "match":
        return []
    if path.root != "claims":
        return list(_flatten(getattr(identity, path.root, None)))
    current: list[Any] = [identity.claims]
    for key in path.keys:
        current = [item[key] for c in current for item in _flatten(c)
                   if isinstance(item, Mapping) and key in item]
        if not current:
            return []
    return [v for c in current for v in _flatten(c)]


def as_text(value: Any) -> str | None:
    """The text a value matches and renders as; None for objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def show(values: tuple[str, ...] | list[str], limit: int = 10, width: int = 80) -> str:
    """Values for an explanation: one value as repr, several as a short list, none as 'missing'."""
    def one(v: str) -> str:
        return repr(v if len(v) <= width else v[:width] + "…")

    if not values:
        return "missing"
    if len(values) == 1:
        return one(values[0])
    shown = ", ".join(one(v) for v in values[:limit])
    more = f", … (+{len(values) - limit} more)" if len(values) > limit else ""
    return f"[{shown}{more}]"


class View:
    """One identity, with each path resolved at most once (rules share paths; 1,000 groups are common)."""

    __slots__ = ("identity", "_values", "_texts", "_sets", "_sorted", "_folded", "_folded_sets", "_aligned",
                 "_joined", "_containing", "cache", "sanitized", "roles")

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._values: dict[str, list[Any]] = {}
        self._texts: dict[str, tuple[str, ...]] = {}
        self._sets: dict[str, frozenset[str]] = {}
        self._sorted: dict[str, list[str]] = {}
        self._folded: dict[str, tuple[str, ...]] = {}
        self._folded_sets: dict[str, frozenset[str]] = {}
        self._aligned: dict[tuple[str, str], tuple[str, ...]] = {}
        self._joined: dict[tuple[str, str], str] = {}
        self._containing: dict[tuple[str, Requirement], list[str]] = {}
        self.cache: dict[int, Any] = {}  # rendered templates that do not depend on captures
        self.sanitized: dict[tuple[str, str], str] = {}  # (kind, text) → made valid (render: names, tag values)
        self.roles: dict[int, Any] | None = None  # what constant roles decide under this decision's defaults

    def values(self, path: ClaimPath) -> list[Any]:
        v = self._values.get(path.text)
        if v is None:
            v = self._values[path.text] = resolve(self.identity, path)
        return v

    def texts(self, path: ClaimPath) -> tuple[str, ...]:
        t = self._texts.get(path.text)
        if t is None:
            t = self._texts[path.text] = tuple(s for s in map(as_text, self.values(path)) if s is not None)
        return t

    def text_set(self, path: ClaimPath) -> frozenset[str]:
        s = self._sets.get(path.text)
        if s is None:
            s = self._sets[path.text] = frozenset(self.texts(path))
        return s

    def folded(self, path: ClaimPath) -> tuple[str, ...]:
        """``texts`` case-folded, in the same order (for ``ignore_case`` conditions)."""
        f = self._folded.get(path.text)
        if f is None:
            f = self._folded[path.text] = tuple(t.casefold() for t in self.texts(path))
        return f

    def folded_set(self, path: ClaimPath) -> frozenset[str]:
        s = self._folded_sets.get(path.text)
        if s is None:
            s = self._folded_sets[path.text] = frozenset(self.folded(path))
        return s

    def sorted_texts(self, path: ClaimPath) -> list[str]:
        """Distinct texts, sorted: what regex/glob/starts_with walk, so results never depend on claim order."""
        s = self._sorted.get(path.text)
        if s is None:
            s = self._sorted[path.text] = sorted(self.text_set(path))
        return s

    def with_prefix(self, path: ClaimPath, prefix: str) -> list[str]:
        """Distinct sorted texts starting with ``prefix`` (bisect: cheap with 1,000 groups)."""
        values = self.sorted_texts(path)
        if not prefix:
            return values
        i = bisect_left(values, prefix)
        j = i
        while j < len(values) and values[j].startswith(prefix):
            j += 1
        return values[i:j]

    def aligned(self, path: ClaimPath, how: str) -> tuple[str, ...]:
        """``sorted_texts`` folded as ``how`` (``factors.fold``), in the same order."""
        key = (path.text, how)
        a = self._aligned.get(key)
        if a is None:
            a = self._aligned[key] = tuple(self.sorted_texts(path)) if not how else tuple(
                fold(v, how) for v in self.sorted_texts(path))
        return a

    def joined(self, path: ClaimPath, how: str) -> str:
        """Every value at ``path``, folded as ``how``, in one string (NUL between values): what the
        index looks literal factors up in, one substring search for all values at once."""
        key = (path.text, how)
        j = self._joined.get(key)
        if j is None:
            j = self._joined[key] = "\0".join(self.aligned(path, how))
        return j

    def containing(self, path: ClaimPath, req: Requirement) -> list[str]:
        """Distinct sorted texts holding one of ``req``'s factors once folded: all a pattern can match."""
        key = (path.text, req)
        hit = self._containing.get(key)
        if hit is not None:
            return hit
        values = self.sorted_texts(path)
        if len(req) == 1:
            ((how, text),) = req
            out = [v for v, f in zip(values, self.aligned(path, how), strict=True) if text in f]
        else:
            folds = {how: self.aligned(path, how) for how, _ in req}
            out = [v for i, v in enumerate(values) if any(text in folds[how][i] for how, text in req)]
        self._containing[key] = out
        return out
