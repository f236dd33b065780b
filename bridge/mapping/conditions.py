"""Compiled match conditions: test an identity view, say why, and yield captures. Pure.

``test(view, explain)`` returns an ``Outcome``: whether the condition holds, the *bindings*
(one capture dict per way it matched — a regex over 1,000 groups can match several, and each
becomes its own grant), and, when ``explain`` is set, a sentence with the values it saw.

Each condition also states, for the compiler: which captures it may set (``possible``) and
always sets when it holds (``guaranteed``), and for the index, a set of *requirements* one of
which an identity must meet for it to hold (``keys``; None when there is no such finite set):
``("=", path, v)`` a value equal to v, ``("^", path, p)`` one starting with p, ``("$", path, s)``
one ending with s, ``("=f", path, v)`` one whose ``casefold`` equals v, ``("~", path, t)`` one containing
t (``"~f"``/``"~a"``: once folded, see ``factors``), ``("?", path, "")`` any value at all.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from bridge.mapping.factors import Requirement, pattern_requirement
from bridge.mapping.paths import ClaimPath, View, show

Binding = dict[str, str]
EMPTY: tuple[Binding, ...] = ({},)
MAX_BINDINGS = 1000        # ways one rule may match (= grants one rule may produce) per identity
MAX_MATCH_LEN = 1024       # longer values are not run through regex/glob (bounded work per login)
IndexKeys = frozenset[tuple[str, str, str]]


class Outcome(NamedTuple):
    ok: bool
    bindings: tuple[Binding, ...]
    reason: str


NO = Outcome(False, (), "")
YES = Outcome(True, EMPTY, "")


def _top_level_alternation(pattern: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "^":
                i += 1
            if pattern[i + 1:i + 2] == "]":  # a ] right after [ or [^ is a literal
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
        i += 1
    return False


def literal_prefix(pattern: str) -> str:
    """A prefix every full match of ``pattern`` starts with ("" when unsure). Lets a regex over
    1,000 sorted groups look only at the few that share its prefix, and the index find it."""
    if pattern.startswith("(?") or _top_level_alternation(pattern):
        return ""
    out: list[str] = []
    i = 1 if pattern.startswith("^") else 0  # redundant in a full match (no MULTILINE: that starts with "(?")
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1:i + 2]
            if not nxt or nxt.isalnum():
                break
            out.append(nxt)
            i += 2
            continue
        if ch in ".^$*+?{}[]()":
            if ch in "*?{" and out:
                out.pop()  # the last literal may repeat zero times
            break
        out.append(ch)
        i += 1
    return "".join(out)


def glob_prefix(pattern: str) -> str:
    return re.split(r"[*?\[]", pattern, maxsplit=1)[0]


def _factor_keys(path: ClaimPath, reqs: tuple[Requirement | None, ...]) -> IndexKeys | None:
    """A pattern leaf filed under the literal text its matches contain (None: a pattern has none)."""
    if not reqs or any(r is None for r in reqs):
        return None
    return frozenset((f"~{how}", path.text, t) for r in reqs for how, t in r or ())


def _shortest(keys: IndexKeys) -> int:
    return min(len(v) for _, _, v in keys)


def _index_keys(op: str, path: ClaimPath, wanted: tuple[str, ...], prefixes: tuple[str, ...],
                reqs: tuple[Requirement | None, ...], ignore_case: bool) -> IndexKeys | None:
    """What a leaf is filed under in the index (None: no finite set of requirements)."""
    if op == "exists":
        return None
    if op in ("regex", "glob"):
        by_factor = _factor_keys(path, reqs)
        by_prefix = frozenset(("^", path.text, p) for p in prefixes) if prefixes and all(prefixes) else None
        if by_prefix is None or (by_factor is not None and _shortest(by_factor) > _shortest(by_prefix)):
            return by_factor  # e.g. `t.*-admins`: "-admins" narrows far more than "t"
        return by_prefix
    if op in ("equals", "in"):
        return frozenset(("=f" if ignore_case else "=", path.text, v) for v in wanted)
    if not all(wanted):
        return None
    if ignore_case:  # starts_with, ends_with, contains: the folded operand is inside the folded value
        return frozenset(("~f", path.text, v) for v in wanted)
    kind = {"starts_with": "^", "ends_with": "$", "contains": "~"}[op]
    return frozenset((kind, path.text, v) for v in wanted)


class Leaf:
    """``{claim: PATH, <op>: operand}`` (and the ``group`` shorthand).

    With ``ignore_case`` values and operands are compared case-folded (``str.casefold``; regex and glob
    compile with ``re.IGNORECASE``), and the leaf is filed under folded keys (``factors``).
    A regex or glob is tried only on the values that can match it: those with its literal prefix,
    or else those holding its literal factor (``factors``); the others cannot match.
    """

    def __init__(self, path: ClaimPath, op: str, operand: object, *, regexes: Iterable[re.Pattern[str]] = (),
                 group_form: bool = False, ignore_case: bool = False) -> None:
        self.path, self.op, self.group_form, self.ignore_case = path, op, group_form, ignore_case
        self.operands: tuple[str, ...] = tuple(operand) if isinstance(operand, list | tuple) else (str(operand),)
        self.wanted = tuple(o.casefold() for o in self.operands) if ignore_case else self.operands  # compared
        self.operand_set = frozenset(self.wanted)
        self.note = " (ignoring case)" if ignore_case else ""
        self.regexes = tuple(regexes)
        # A prefix narrows the (sorted, case-sensitive) values a pattern is tried on: none when ignoring case.
        self.prefixes = tuple("" if ignore_case else glob_prefix(o) if op == "glob" else literal_prefix(o)
                              for o in self.operands) if op in ("regex", "glob") else ()
        self.requirements = tuple(pattern_requirement(rx) for rx in self.regexes)
        self.exists = bool(operand) if op == "exists" else False
        names = set(self.regexes[0].groupindex) if op == "regex" else set()
        self.possible = self.guaranteed = frozenset(names)
        self.keys: IndexKeys | None = _index_keys(op, path, self.wanted, self.prefixes, self.requirements,
                                                  ignore_case)
        if op == "exists" and self.exists:
            self.keys = frozenset({("?", path.text, "")})

    def test(self, view: View, explain: bool) -> Outcome:
        op = self.op
        if op in ("equals", "in"):
            return self._test_equals(view, explain)
        if op == "exists":
            return self._test_exists(view, explain)
        if op in ("regex", "glob"):
            return self._test_patterns(view, explain)
        return self._test_text(view, explain)

    def _test_equals(self, view: View, explain: bool) -> Outcome:
        values = view.folded_set(self.path) if self.ignore_case else view.text_set(self.path)
        ok = self.wanted[0] in values if self.op == "equals" else not self.operand_set.isdisjoint(values)
        if not explain:
            return YES if ok else NO
        return self._explain_equals(view, ok)

    def _test_exists(self, view: View, explain: bool) -> Outcome:
        ok = bool(view.values(self.path)) == self.exists
        if not explain:
            return YES if ok else NO
        seen = view.texts(self.path)
        state = f"has {show(seen)}" if view.values(self.path) else "is missing"
        return Outcome(ok, EMPTY if ok else (), f"{self.path.text} {state}")

    def _test_text(self, view: View, explain: bool) -> Outcome:
        """``starts_with``, ``ends_with``, ``contains``: the first value that fits."""
        op = self.op
        texts = view.texts(self.path)
        pairs = zip(texts, view.folded(self.path) if self.ignore_case else texts, strict=True)
        if op == "starts_with":
            hit = next((v for v, f in pairs if f.startswith(self.wanted)), None)
        elif op == "ends_with":
            hit = next((v for v, f in pairs if f.endswith(self.wanted)), None)
        else:  # contains
            hit = next((v for v, f in pairs if any(o in f for o in self.wanted)), None)
        if not explain:
            return YES if hit is not None else NO
        words = op.replace("_", " ")
        operand = self.operands[0] if len(self.operands) == 1 else list(self.operands)
        if hit is not None:
            return Outcome(True, EMPTY, f"{self.path.text} {show([hit])} {words} {operand!r}{self.note}")
        return Outcome(False, (), f"{self.path.text} is {show(texts)}; nothing {words} {operand!r}{self.note}")

    def _explain_equals(self, view: View, ok: bool) -> Outcome:
        texts = view.texts(self.path)
        if self.group_form:
            g = self.operands[0]
            if ok:
                return Outcome(True, EMPTY, f"member of group {g!r}")
            return Outcome(False, (), f"not in group {g!r} (groups: {show(texts)})")
        note = self.note
        if self.op == "equals":
            if ok:
                return Outcome(True, EMPTY, f"{self.path.text} equals {self.operands[0]!r}{note}")
            return Outcome(False, (), f"{self.path.text} is {show(texts)}, not {self.operands[0]!r}{note}")
        if ok:
            fold = str.casefold if self.ignore_case else str
            hit = next(v for v in texts if fold(v) in self.operand_set)
            return Outcome(True, EMPTY, f"{self.path.text} {show([hit])} is in {list(self.operands)!r}{note}")
        return Outcome(False, (), f"{self.path.text} is {show(texts)}, none in {list(self.operands)!r}{note}")

    def _test_patterns(self, view: View, explain: bool) -> Outcome:
        bindings: list[Binding] = []
        hits: list[str] = []
        for rx, prefix, req in zip(self.regexes, self.prefixes, self.requirements, strict=True):
            tried = view.with_prefix(self.path, prefix) if prefix or req is None else view.containing(self.path, req)
            for v in tried:
                if len(v) > MAX_MATCH_LEN:
                    continue
                m = rx.fullmatch(v)
                if m is None:
                    continue
                hits.append(v)
                if self.possible:
                    bindings.append({k: s for k, s in m.groupdict().items() if s is not None})
                    if len(bindings) >= MAX_BINDINGS:
                        break
                elif not explain:
                    return YES
        ok = bool(hits)
        out = tuple(bindings) if self.possible else EMPTY
        if not explain:
            return Outcome(True, out, "") if ok else NO
        return self._explain_patterns(view, hits, out)

    def _explain_patterns(self, view: View, hits: list[str], out: tuple[Binding, ...]) -> Outcome:
        ok = bool(hits)
        what = "matches regex" if self.op == "regex" else "matches glob"
        pattern = self.operands[0] if len(self.operands) == 1 else list(self.operands)
        if ok:
            return Outcome(True, out, f"{self.path.text} {show(hits, limit=5)} {what} {pattern!r}{self.note}")
        too_long = any(len(v) > MAX_MATCH_LEN for p in self.prefixes for v in view.with_prefix(self.path, p))
        note = f" (values over {MAX_MATCH_LEN} characters are not tried)" if too_long else ""
        return Outcome(False, (), f"{self.path.text} is {show(view.texts(self.path))}; none {what} "
                                  f"{pattern!r}{self.note}{note}")


class Mfa:
    keys: IndexKeys | None = None
    possible = guaranteed = frozenset[str]()

    def __init__(self, want: bool) -> None:
        self.want = want

    def test(self, view: View, explain: bool) -> Outcome:
        used = view.identity.mfa
        ok = used == self.want
        if not explain:
            return YES if ok else NO
        return Outcome(ok, EMPTY if ok else (), "the sign-in used MFA" if used else "the sign-in did not use MFA")


class Cond(Protocol):
    keys: IndexKeys | None
    possible: frozenset[str]
    guaranteed: frozenset[str]

    def test(self, view: View, explain: bool) -> Outcome: ...



class All:
    def __init__(self, children: list[Cond]) -> None:
        self.children = children
        self.possible = frozenset().union(*(c.possible for c in children))
        self.guaranteed = frozenset().union(*(c.guaranteed for c in children))
        indexed = [c.keys for c in children if c.keys is not None]
        # the most selective requirement: exact values first, then the fewest
        self.keys: IndexKeys | None = min(indexed, key=lambda k: (any(kind != "=" for kind, _, _ in k), len(k))) \
            if indexed else None

    def test(self, view: View, explain: bool) -> Outcome:
        bindings: list[Binding] = [{}]
        reasons: list[str] = []
        for c in self.children:
            o = c.test(view, explain)
            if not o.ok:
                return o
            if c.possible:
                bindings = [{**b, **b2} for b in bindings for b2 in o.bindings][:MAX_BINDINGS]
            reasons.append(o.reason)
        return Outcome(True, tuple(bindings), " and ".join(reasons) if explain else "")


class Any_:
    def __init__(self, children: list[Cond]) -> None:
        self.children = children
        self.possible = frozenset().union(*(c.possible for c in children))
        self.guaranteed = frozenset.intersection(*(c.guaranteed for c in children))
        if all(c.keys is not None for c in children):
            self.keys: IndexKeys | None = frozenset().union(*(c.keys or () for c in children))
        else:
            self.keys = None

    def test(self, view: View, explain: bool) -> Outcome:
        matched: list[Outcome] = []
        failed: list[str] = []
        for c in self.children:
            o = c.test(view, explain)
            if o.ok:
                if not self.possible:
                    return o
                matched.append(o)
            else:
                failed.append(o.reason)
        if not matched:
            return NO if not explain else Outcome(False, (), "none of: " + "; ".join(f"({r})" for r in failed))
        seen: set[frozenset[tuple[str, str]]] = set()
        bindings: list[Binding] = []
        for o in matched:
            for b in o.bindings:
                k = frozenset(b.items())
                if k not in seen:
                    seen.add(k)
                    bindings.append(b)
        more = f" (and {len(matched) - 1} more)" if len(matched) > 1 else ""
        return Outcome(True, tuple(bindings[:MAX_BINDINGS]), matched[0].reason + more if explain else "")


class Not:
    keys: IndexKeys | None = None
    possible = guaranteed = frozenset[str]()

    def __init__(self, child: Cond) -> None:
        self.child = child

    def test(self, view: View, explain: bool) -> Outcome:
        o = self.child.test(view, explain)
        if o.ok:
            return NO if not explain else Outcome(False, (), f"excluded because {o.reason}")
        return YES if not explain else Outcome(True, EMPTY, o.reason)


def compile_glob(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.S | (re.IGNORECASE if ignore_case else 0))
