"""Grant templates: ``"arn:aws:iam::{match.account}:role/{match.role}"``, ``"{email|local_part|slug}"``. Pure.

Syntax: text with ``{path|filter|filter(arg)…}`` placeholders; ``{{`` and ``}}`` are literal braces.
A path is a claim path (see ``paths``) or ``match.<capture>`` (a named regex capture of the rule's
match). A placeholder's value is a list (multi-valued claims); filters apply to each value, then
the result must be exactly one value — ``join`` or ``first`` make one of many, ``default(x)``
fills in a missing or empty value. A placeholder without a value makes the whole template
*missing* (with a reason), never an empty string.

Filters: ``lower``, ``upper``, ``local_part`` (before the last ``@``), ``domain`` (after it),
``slug`` (ASCII, lowercase, runs of other characters → ``-``), ``truncate(n)``, ``first``,
``join(sep)`` (default ``:``), ``default(text)``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from bridge.mapping.paths import ClaimPath, View, parse_path

Values = list[str]


class Missing(NamedTuple):
    """A template that could not be rendered, and why (the why never includes claim values)."""

    reason: str


def _slug(v: str) -> str:
    folded = unicodedata.normalize("NFKD", v).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")


def _each(fn: Callable[[str], str]) -> Callable[[Values, tuple[str, ...]], Values]:
    return lambda values, args: [fn(v) for v in values]


def _truncate(values: Values, args: tuple[str, ...]) -> Values:
    n = int(args[0])
    return [v[:n] for v in values]


def _default(values: Values, args: tuple[str, ...]) -> Values:
    return values if any(values) else [args[0]]


def _join(values: Values, args: tuple[str, ...]) -> Values:
    return [(args[0] if args else ":").join(values)] if values else []


# name -> (function, allowed argument counts, argument check)
FILTERS: dict[str, tuple[Callable[[Values, tuple[str, ...]], Values], tuple[int, ...]]] = {
    "lower": (_each(str.lower), (0,)),
    "upper": (_each(str.upper), (0,)),
    "local_part": (_each(lambda v: v.rsplit("@", 1)[0]), (0,)),
    "domain": (_each(lambda v: v.rsplit("@", 1)[1] if "@" in v else ""), (0,)),
    "slug": (_each(_slug), (0,)),
    "truncate": (_truncate, (1,)),
    "first": (lambda values, args: values[:1], (0,)),
    "join": (_join, (0, 1)),
    "default": (_default, (1,)),
}


@dataclass(frozen=True)
class Filter:
    name: str
    args: tuple[str, ...]

    def apply(self, values: Values) -> Values:
        return FILTERS[self.name][0](values, self.args)


@dataclass(frozen=True)
class Placeholder:
    source: str
    path: ClaimPath
    filters: tuple[Filter, ...]

    @property
    def defaulted(self) -> bool:
        return any(f.name == "default" for f in self.filters)


class Template:
    """A parsed template. ``constant`` is its text when it has no placeholder (else None)."""

    __slots__ = ("source", "parts", "placeholders", "constant", "captures", "uses_match")

    def __init__(self, source: str, parts: tuple[str | Placeholder, ...]) -> None:
        self.source = source
        self.parts = parts
        self.placeholders = tuple(p for p in parts if isinstance(p, Placeholder))
        self.constant: str | None = None if self.placeholders else "".join(p for p in parts if isinstance(p, str))
        # capture names used -> whether every use of it has a default
        self.captures: dict[str, bool] = {}
        for p in self.placeholders:
            if p.path.capture:
                self.captures[p.path.capture] = self.captures.get(p.path.capture, True) and p.defaulted
        self.uses_match = any(p.path.root == "match" for p in self.placeholders)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, view: View, binding: Mapping[str, str]) -> str | Missing:
        """Render for one identity and one set of captures."""
        if self.constant is not None:
            return self.constant
        cacheable = not self.uses_match
        if cacheable:
            hit: str | Missing | None = view.cache.get(id(self))
            if hit is not None:
                return hit
        out: list[str] = []
        result: str | Missing | None = None
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if part.path.root == "match":
                cap = binding.get(part.path.keys[0])
                values = [cap] if cap is not None else []
            else:
                values = list(view.texts(part.path))
            for f in part.filters:
                values = f.apply(values)
            if len(values) != 1:
                what = "has no value" if not values else f"has {len(values)} values (use |first or |join)"
                result = Missing(f"{{{part.source}}} {what}")
                break
            out.append(values[0])
        if result is None:
            result = "".join(out)
        if cacheable:
            view.cache[id(self)] = result
        return result


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quotes and parentheses."""
    parts: list[str] = []
    buf: list[str] = []
    quote, depth = "", 0
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return parts


def _unquote(arg: str) -> str:
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"'":
        return arg[1:-1]
    return arg


def _parse_filter(text: str, problems: list[str]) -> Filter | None:
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*", text, re.S)
    if not m:
        problems.append(f"{text.strip()!r} is not a filter (write name or name(arg))")
        return None
    name, raw_args = m[1], m[2]
    if name not in FILTERS:
        problems.append(f"unknown filter {name!r}; use one of {', '.join(FILTERS)}")
        return None
    args = tuple(_unquote(a) for a in _split_top(raw_args, ",")) if raw_args is not None else ()
    if args == ("",) and name != "default":
        args = ()
    if len(args) not in FILTERS[name][1]:
        want = " or ".join(str(n) for n in FILTERS[name][1])
        problems.append(f"filter {name!r} takes {want} argument(s), got {len(args)}")
        return None
    if name == "truncate" and not (args[0].isascii() and args[0].isdigit() and 1 <= int(args[0]) <= 10000):
        problems.append(f"truncate({args[0]}) needs a whole number 1..10000")
        return None
    return Filter(name, args)


def parse_template(text: str) -> tuple[Template | None, list[str]]:
    """Parse ``text``; return the template (None if broken) and every problem found in it."""
    problems: list[str] = []
    parts: list[str | Placeholder] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "{}" and text.startswith(ch * 2, i):
            buf.append(ch)
            i += 2
            continue
        if ch == "}":
            problems.append(f"unmatched '}}' at position {i} (write '}}}}' for a literal brace)")
            i += 1
            continue
        if ch != "{":
            buf.append(ch)
            i += 1
            continue
        # find the closing brace outside quotes
        j, quote = i + 1, ""
        while j < len(text) and (quote or text[j] != "}"):
            if quote:
                quote = "" if text[j] == quote else quote
            elif text[j] in "\"'":
                quote = text[j]
            j += 1
        if j >= len(text):
            problems.append(f"unclosed '{{' at position {i} (write '{{{{' for a literal brace)")
            break
        inner = text[i + 1:j]
        if buf:
            parts.append("".join(buf))
            buf = []
        pieces = _split_top(inner, "|")
        try:
            path = parse_path(pieces[0], allow_match=True)
        except ValueError as e:
            problems.append(f"{{{inner}}}: {e}")
            i = j + 1
            continue
        filters = [_parse_filter(p, problems) for p in pieces[1:]]
        parts.append(Placeholder(inner.strip(), path, tuple(f for f in filters if f is not None)))
        i = j + 1
    if buf:
        parts.append("".join(buf))
    if problems:
        return None, problems
    return Template(text, tuple(parts)), []


_CACHE: dict[str, tuple[Template | None, tuple[str, ...]]] = {}


def template(text: str) -> tuple[Template | None, list[str]]:
    """``parse_template`` with a cache: thousands of rules share a handful of templates."""
    hit = _CACHE.get(text)
    if hit is None:
        t, problems = parse_template(text)
        if len(_CACHE) < 100_000:
            _CACHE[text] = (t, tuple(problems))
        return t, problems
    return hit[0], list(hit[1])
