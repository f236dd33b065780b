"""Literal factors: text every match of a condition must contain, so the index serves a regex or glob with
no literal prefix, and case-insensitive conditions, by looking an identity's values up instead of
testing every such rule. Pure.

A *requirement* is a set of ``(fold, text)`` pairs: every value the condition matches holds one of the
texts once folded. Folds: ``""`` the value as it is; ``"f"`` ``str.casefold`` (what an ``ignore_case``
``equals``/``contains``/``starts_with``/``ends_with`` compares); ``"a"`` ASCII letters lower-cased, with
the four non-ASCII letters Python's ``re.IGNORECASE`` equates with ASCII ones (``ſ``, Kelvin ``K``,
``İ``, ``ı``) folded to them: what an ignore-case regex or glob compares, so only ASCII literals go
into its factors (a non-ASCII one ends the factor). A requirement is only ever a necessary condition:
the rule is still tested, so a result never depends on it.

Factors come from Python's own parse of the pattern (the tree ``re`` compiles), so flags, escapes,
verbose mode and groups mean exactly what they mean to ``re``: a run of literals is required when
every construct around it is (groups flatten, a repeat of at least one keeps its body's requirement,
an alternation requires one of its branches' requirements, zero-width assertions are transparent).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

with warnings.catch_warnings():  # the parser ``re`` itself uses (re._parser), under its public alias
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_constants as sc
    import sre_parse

Requirement = frozenset[tuple[str, str]]
MIN_FACTOR = 2  # characters: a pattern whose literals are all shorter files no factor

# What re.IGNORECASE equates with an ASCII letter (checked against all of Unicode by the unit tests).
ASCII_FOLD = str.maketrans({**{chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)},
                            "\u017f": "s", "\u212a": "k", "\u0130": "i", "\u0131": "i"})


def fold(text: str, how: str) -> str:
    """``text`` as a requirement of fold ``how`` compares it."""
    if how == "f":
        return text.casefold()
    if how == "a":
        return text.translate(ASCII_FOLD)
    return text


_Token = tuple[str, Any]  # ("lit", (fold, char)) | ("req", Requirement) | ("break", None)
_BREAK: _Token = ("break", None)
_REPEATS = {sc.MAX_REPEAT, sc.MIN_REPEAT, getattr(sc, "POSSESSIVE_REPEAT", sc.MAX_REPEAT)}
_FLATTEN = {sc.SUBPATTERN, getattr(sc, "ATOMIC_GROUP", sc.SUBPATTERN)}
_ZERO_WIDTH = {sc.AT, sc.ASSERT, sc.ASSERT_NOT}


def _tokens(items: Iterable[tuple[Any, Any]], icase: bool) -> Iterator[_Token]:
    for op, av in items:
        if op is sc.LITERAL:
            ch = chr(av)
            if not icase:
                yield "lit", ("", ch)
            elif ch.isascii():
                yield "lit", ("a", ch.translate(ASCII_FOLD))
            else:
                yield _BREAK
        elif op in _FLATTEN:  # a group: its content, once, in place (with its own flags)
            if op is sc.SUBPATTERN:
                _, add, remove, body = av
                inner = (icase or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE
            else:
                body, inner = av, icase
            yield from _tokens(body, inner)
        elif op in _ZERO_WIDTH:
            continue  # consumes nothing: the literals on either side are adjacent in the value
        elif op in _REPEATS and av[0] >= 1:
            yield _BREAK
            if (req := best(_requirements(av[2], icase))) is not None:
                yield "req", req
            yield _BREAK
        elif op is sc.BRANCH:
            yield _BREAK
            each = [best(_requirements(alt, icase)) for alt in av[1]]
            if each and all(r is not None for r in each):
                yield "req", frozenset().union(*each)  # type: ignore[arg-type]
            yield _BREAK
        else:
            yield _BREAK


def _requirements(items: Iterable[tuple[Any, Any]], icase: bool) -> list[Requirement]:
    """Every requirement a sequence of the parse tree has: each run of literals, each nested one."""
    found: list[Requirement] = []
    run: list[str] = []
    mode = ""

    def flush() -> None:
        if run:
            found.append(frozenset({(mode, "".join(run))}))
            run.clear()

    for kind, value in _tokens(items, icase):
        if kind == "lit":
            if run and value[0] != mode:
                flush()
            mode = value[0]
            run.append(value[1])
            continue
        flush()
        if kind == "req":
            found.append(value)
    flush()
    return found


def best(reqs: list[Requirement]) -> Requirement | None:
    """The most selective requirement: the longest shortest text, then the fewest texts."""
    return max(reqs, key=lambda r: (min(len(t) for _, t in r), -len(r)), default=None)


def pattern_requirement(rx: re.Pattern[str]) -> Requirement | None:
    """What every full match of ``rx`` contains (None: nothing found, e.g. ``\\w+``)."""
    try:
        parsed = sre_parse.parse(rx.pattern, rx.flags & ~re.UNICODE)
    except (re.error, TypeError, ValueError, RecursionError):  # compiled already: never expected
        return None
    icase = bool((rx.flags | parsed.state.flags) & re.IGNORECASE)
    found = best(_requirements(parsed.data, icase))
    # One character (the "-" of `\w+-\d+`) is in nearly every value: such a rule is as good as unindexed.
    return found if found is not None and min(len(t) for _, t in found) >= MIN_FACTOR else None
