"""Rules → an indexed, compiled rule set, checking meaning and reporting EVERY problem with its path.

``load_mapping(raw)`` is the one entry point for a ``mapping:`` document: shape (pydantic, one
rule at a time so one broken rule does not hide the problems of the others), then meaning:
regexes and globs compile, templates parse and name only known filters and captures the match
really sets, durations fit the role's ``max_session_duration``, constant tag keys and values obey
AWS's rules (docs/aws-rules.md §1.7), and rules granting the same role do not give
the same tag two different constant values (they merge; see ``engine``).

The index: a rule whose match requires one of a finite set of exact ``(path, value)`` pairs
(``group: x``, ``equals``, ``in``, an ``all`` containing one, an ``any`` of such) is filed under
those pairs, so evaluating 10,000 rules looks up an identity's values instead of scanning.
"""

from __future__ import annotations

import gc
import hashlib
import re
from bisect import bisect_left
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bridge.aws.arn import PARTITIONS, RoleArn, parse_role_arn
from bridge.aws.limits import (
    MAX_DURATION,
    MAX_TAGS,
    MIN_DURATION,
    SESSION_NAME_RE,
    tag_key_problem,
    tag_value_problem,
)
from bridge.errors import ConfigError
from bridge.mapping.conditions import All, Any_, Cond, Leaf, Mfa, Not, compile_glob
from bridge.mapping.model import (
    AccountEntry,
    AllCond,
    AnyCond,
    ClaimCond,
    DenySpec,
    GrantSpec,
    GroupCond,
    MappingSettings,
    MfaCond,
    NotCond,
    Rule,
    is_legacy_rule,
    upgrade_legacy_rule,
)
from bridge.mapping.paths import ClaimPath, View, parse_path
from bridge.mapping.template import Template, template

ACCOUNT_RE = re.compile(r"\A\d{12}\Z", re.ASCII)
ROLE_NAME_RE = re.compile(r"\A(?:[\x21-\x7e]+/)*[A-Za-z0-9_+=,.@-]{1,64}\Z")
PROVIDER_NAME_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,128}\Z")
PROVIDER_ARN_RE = re.compile(r"\Aarn:(aws|aws-us-gov|aws-cn):iam::\d{12}:saml-provider/[A-Za-z0-9_.-]{1,128}\Z",
                             re.ASCII)
DEFAULT_ROLE_MAX = 3600  # IAM's default MaxSessionDuration
DEFAULT_SESSION_NAME = "{email}"


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class RoleInfo:
    label: str | None
    max_session_duration: int


@dataclass(frozen=True)
class AccountInfo:
    id: str
    alias: str
    label: str
    partition: str | None
    roles: dict[str, RoleInfo]


@dataclass
class Catalog:
    by_id: dict[str, AccountInfo] = field(default_factory=dict)
    by_alias: dict[str, str] = field(default_factory=dict)

    def account_id(self, ref: str) -> str | None:
        """``ref`` as a 12-digit id, or the id of the alias ``ref``; None when neither."""
        if ACCOUNT_RE.match(ref):
            return ref
        return self.by_alias.get(ref)

    def role(self, arn: RoleArn) -> RoleInfo | None:
        acct = self.by_id.get(arn.account_id)
        return acct.roles.get(arn.path + arn.name) if acct else None


# --------------------------------------------------------------------------- compiled rules


@dataclass(frozen=True)
class TagT:
    key: Template
    value: Template
    required: bool
    where: str


@dataclass
class CGrant:
    where: str
    role_arn: Template | None
    account: Template | None
    role: Template | None
    static_arn: RoleArn | None
    provider: Template | None
    label: Template | None
    session_name: Template
    source_identity: Template | None
    tags: list[TagT]
    transitive: list[Template]
    duration_default: int | None
    duration_max: int | None
    mfa_required: bool
    path: str | None
    audience: str | None
    console: str | None = None


@dataclass
class CDeny:
    all: bool
    accounts: frozenset[str]
    roles: tuple[tuple[str, re.Pattern[str], bool], ...]  # (pattern, regex, matches the whole ARN)

    def denies(self, arn: RoleArn) -> bool:
        if self.all or arn.account_id in self.accounts:
            return True
        text = str(arn)
        return any(rx.fullmatch(text if whole else arn.path + arn.name) or (not whole and rx.fullmatch(arn.name))
                   for _, rx, whole in self.roles)

    def describe(self) -> str:
        if self.all:
            return "every role"
        parts = []
        if self.accounts:
            parts.append(f"accounts {sorted(self.accounts)}")
        if self.roles:
            parts.append(f"roles {[p for p, _, _ in self.roles]}")
        return " and ".join(parts)


@dataclass
class CRule:
    index: int
    name: str
    description: str
    connectors: frozenset[str] | None
    cond: Cond
    grants: list[CGrant]
    deny: CDeny | None


@dataclass
class AffixIndex:
    """Rules by the prefixes (or suffixes) of one path's values, grouped by length."""

    path: ClaimPath
    by_len: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    entries: list[tuple[str, list[int]]] = field(default_factory=list)  # sorted, for bisecting

    def add(self, affix: str, pos: int) -> None:
        self.by_len.setdefault(len(affix), {}).setdefault(affix, []).append(pos)

    def freeze(self) -> None:
        self.entries = sorted((a, rules) for table in self.by_len.values() for a, rules in table.items())


@dataclass
class RuleSet:
    """What the engine runs: rules in file order, the catalog, and the index."""

    rules: list[CRule]
    catalog: Catalog
    partition: str
    exact: dict[str, tuple[ClaimPath, dict[str, list[int]]]]
    prefixes: dict[str, AffixIndex]
    suffixes: dict[str, AffixIndex]
    unindexed: list[int]
    version: str

    def candidates(self, view: View) -> list[int]:
        """Positions of the rules that can match ``view`` (a superset), in file order."""
        hits: set[int] = set(self.unindexed)
        for path, table in self.exact.values():
            values = view.text_set(path)
            if len(values) <= len(table):
                for v in values:
                    found = table.get(v)
                    if found:
                        hits.update(found)
            else:
                for v, found in table.items():
                    if v in values:
                        hits.update(found)
        for ix in self.prefixes.values():
            values = view.text_set(ix.path)
            if not values:
                continue
            if len(values) * len(ix.by_len) <= len(ix.entries):
                for n, table in ix.by_len.items():
                    for v in values:
                        found = table.get(v[:n]) if len(v) >= n else None
                        if found:
                            hits.update(found)
            else:
                ordered = view.sorted_texts(ix.path)
                for affix, found in ix.entries:
                    i = bisect_left(ordered, affix)
                    if i < len(ordered) and ordered[i].startswith(affix):
                        hits.update(found)
        for ix in self.suffixes.values():
            for v in view.text_set(ix.path):
                for n, table in ix.by_len.items():
                    found = table.get(v[-n:]) if len(v) >= n else None
                    if found:
                        hits.update(found)
        return sorted(hits)


# --------------------------------------------------------------------------- compiling


def _checked_template(text: str, cond: Cond | None) -> tuple[Template | None, list[str]]:
    """Parse ``text`` and check the captures it names against what ``cond`` sets."""
    t, problems = template(text)
    if t is None or cond is None:
        return t, problems
    for name, defaulted in t.captures.items():
        if name not in cond.possible:
            have = ", ".join(sorted(cond.possible)) or "none"
            problems.append(f"{{match.{name}}}: the match sets no capture {name!r} (captures: {have}); "
                            "name one with (?P<name>…) in a regex")
        elif name not in cond.guaranteed and not defaulted:
            problems.append(f"{{match.{name}}}: not every way the match can hold sets {name!r} "
                            "(an any branch or an optional group); add |default(…)")
    return t, problems


class _Compiler:
    def __init__(self, ms: MappingSettings, partition: str, connectors: Collection[str] | None) -> None:
        self.ms = ms
        self.partition = partition
        self.connectors = connectors
        self.problems: list[str] = []
        self.catalog = Catalog()
        self._tag_memo: dict[Any, tuple[Template | None, Template | None, list[str]]] = {}

    def problem(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    # ------------------------------------------------------------ catalog

    def compile_catalog(self) -> None:
        for acct_id, entry in self.ms.accounts.items():
            where = f"accounts.{acct_id}"
            if not ACCOUNT_RE.match(acct_id):
                self.problem(where, "an account id is 12 digits")
                continue
            roles = {}
            for name, r in entry.roles.items():
                if not ROLE_NAME_RE.match(name):
                    self.problem(f"{where}.roles.{name}", "not a role name ([path/]name, name [\\w+=,.@-]{1,64})")
                roles[name] = RoleInfo(r.label, r.max_session_duration)
            if entry.alias:
                if entry.alias in self.catalog.by_alias:
                    self.problem(f"{where}.alias", f"alias {entry.alias!r} is already used by account "
                                                   f"{self.catalog.by_alias[entry.alias]}")
                self.catalog.by_alias[entry.alias] = acct_id
            self.catalog.by_id[acct_id] = AccountInfo(acct_id, entry.alias or "", entry.label or "",
                                                      entry.partition, roles)

    def account_partition(self, account_id: str) -> str:
        acct = self.catalog.by_id.get(account_id)
        return (acct.partition if acct else None) or self.partition

    # ------------------------------------------------------------ conditions

    def cond(self, c: Any, where: str) -> Cond | None:
        if isinstance(c, list):
            return self.cond(AllCond.model_construct(all=c), where)
        if isinstance(c, GroupCond):
            return Leaf(parse_path("groups"), "equals", c.group, group_form=True)
        if isinstance(c, MfaCond):
            return Mfa(c.mfa)
        if isinstance(c, NotCond):
            inner = self.cond(c.not_, f"{where}.not")
            return Not(inner) if inner else None
        if isinstance(c, AllCond | AnyCond):
            kind = "all" if isinstance(c, AllCond) else "any"
            children = [self.cond(x, f"{where}.{kind}[{i}]") for i, x in enumerate(getattr(c, kind))]
            if any(ch is None for ch in children):
                return None
            kids = [ch for ch in children if ch is not None]
            if kind == "all":
                seen: dict[str, int] = {}
                for i, ch in enumerate(kids):
                    for name in sorted(ch.possible):
                        if name in seen:
                            self.problem(f"{where}.all[{i}]", f"capture {name!r} is also set by all[{seen[name]}]; "
                                                             "give each capture one name")
                        seen[name] = i
                return All(kids)
            return Any_(kids)
        assert isinstance(c, ClaimCond)
        return self.leaf(c, where)

    def leaf(self, c: ClaimCond, where: str) -> Leaf | None:
        try:
            path = parse_path(c.claim)
        except ValueError as e:
            self.problem(f"{where}.claim", str(e))
            return None
        op, operand = c.operator, c.operand
        at = f"{where}.{op}"
        if op in ("equals", "in"):
            values = operand if isinstance(operand, list) else [operand]
            if not values:
                self.problem(at, "needs at least one value")
                return None
            texts = ["true" if v is True else "false" if v is False else str(v) for v in values]
            return Leaf(path, op, texts if op == "in" else texts[0], ignore_case=c.ignore_case)
        if op == "exists":
            return Leaf(path, op, operand)
        patterns = operand if isinstance(operand, list) else [operand]
        if not patterns:
            self.problem(at, "needs at least one value")
            return None
        if op == "regex":
            try:
                rx = re.compile(operand, re.IGNORECASE if c.ignore_case else 0)
            except re.error as e:
                self.problem(at, f"bad regex {operand!r}: {e}")
                return None
            return Leaf(path, op, operand, regexes=[rx], ignore_case=c.ignore_case)
        if op == "glob":
            return Leaf(path, op, patterns, regexes=[compile_glob(p, ignore_case=c.ignore_case) for p in patterns],
                        ignore_case=c.ignore_case)
        return Leaf(path, op, patterns, ignore_case=c.ignore_case)

    # ------------------------------------------------------------ templates

    def tmpl(self, text: str | None, where: str, cond: Cond | None) -> Template | None:
        if text is None:
            return None
        t, problems = _checked_template(text, cond)
        for p in problems:
            self.problem(where, p)
        return t

    # ------------------------------------------------------------ grants

    def grant(self, g: GrantSpec, where: str, cond: Cond | None) -> CGrant | None:
        n = len(self.problems)
        role_arn = self.tmpl(g.role_arn, f"{where}.role_arn", cond)
        account = self.tmpl(g.account, f"{where}.account", cond)
        role = self.tmpl(g.role, f"{where}.role", cond)
        static: RoleArn | None = None
        if role_arn is not None and role_arn.constant is not None:
            try:
                static = parse_role_arn(role_arn.constant)
            except ValueError as e:
                self.problem(f"{where}.role_arn", str(e))
            else:
                want = self.account_partition(static.account_id)
                if static.partition != want:
                    self.problem(f"{where}.role_arn", f"not in the configured partition {want}")
        acct_id: str | None = None
        if account is not None and account.constant is not None:
            acct_id = self.catalog.account_id(account.constant)
            if acct_id is None:
                self.problem(f"{where}.account", f"{account.constant!r} is neither a 12-digit account id nor an "
                                                 "alias in the accounts catalog")
        if role is not None and role.constant is not None and not ROLE_NAME_RE.match(role.constant):
            self.problem(f"{where}.role", f"{role.constant!r} is not a role name ([path/]name, name [\\w+=,.@-])")
        elif acct_id and role is not None and role.constant is not None:
            static = parse_role_arn(f"arn:{self.account_partition(acct_id)}:iam::{acct_id}:role/{role.constant}")
        provider = self.tmpl(g.provider, f"{where}.provider", cond)
        if provider is not None and provider.constant is not None:
            p = provider.constant
            if not (PROVIDER_ARN_RE.match(p) if p.startswith("arn:") else PROVIDER_NAME_RE.match(p)):
                self.problem(f"{where}.provider", f"{p!r} is neither a SAML provider name ([\\w.-]{{1,128}}) nor "
                                                  "its ARN")
        label = self.tmpl(g.label, f"{where}.label", cond)
        session = self.tmpl(g.session_name or DEFAULT_SESSION_NAME, f"{where}.session_name", cond)
        source = self.tmpl(g.source_identity, f"{where}.source_identity", cond)
        for field_name, t in (("session_name", session), ("source_identity", source)):
            if t is not None and t.constant is not None and not SESSION_NAME_RE.match(t.constant):
                self.problem(f"{where}.{field_name}", f"{t.constant!r} is not allowed by AWS "
                                                      "([\\w+=,.@-]{2,64})")
        tags = self.tags(g, where, cond)
        parsed = [self.tmpl(k, f"{where}.transitive_tags[{i}]", cond) for i, k in enumerate(g.transitive_tags)]
        transitive = [t for t in parsed if t is not None]
        if len(g.transitive_tags) > MAX_TAGS:
            self.problem(f"{where}.transitive_tags", f"{len(g.transitive_tags)} keys; AWS allows at most {MAX_TAGS}")
        if tags is not None and all(t.key.constant is not None for t in tags):
            keys = {t.key.constant.lower() for t in tags if t.key.constant is not None}
            for i, t in enumerate(parsed):
                if t is not None and t.constant is not None and t.constant.lower() not in keys:
                    self.problem(f"{where}.transitive_tags[{i}]", f"transitive tag key {t.constant!r} is not one "
                                                                  "of the session tags")
        self.durations(g, where, static)
        if len(self.problems) > n or session is None or tags is None:
            return None
        return CGrant(where, role_arn, account, role, static, provider, label, session, source, tags, transitive,
                      g.duration_default, g.duration_max, g.mfa_required, g.path, g.audience, g.console)

    def tag(self, key_text: str, value_text: str, cond: Cond | None) -> tuple[Template | None, Template | None,
                                                                              list[str]]:
        """One tag's templates and problems (memoized: thousands of rules repeat the same tags)."""
        memo_key = (key_text, value_text, cond.possible if cond else None, cond.guaranteed if cond else None)
        hit = self._tag_memo.get(memo_key)
        if hit is not None:
            return hit
        key, problems = _checked_template(key_text, cond)
        value, more = _checked_template(value_text, cond)
        problems += more
        key_problem = tag_key_problem(key.constant) if key is not None and key.constant is not None else None
        value_problem = tag_value_problem(value.constant) if value is not None and value.constant is not None else None
        problems += [p for p in (key_problem or value_problem,) if p]
        result = (key, value, problems)
        self._tag_memo[memo_key] = result
        return result

    def tags(self, g: GrantSpec, where: str, cond: Cond | None) -> list[TagT] | None:
        out: list[TagT] = []
        ok = True
        if len(g.tags) > MAX_TAGS:
            self.problem(f"{where}.tags", f"{len(g.tags)} tags; AWS allows at most {MAX_TAGS} per session")
        lower: dict[str, str] = {}
        for key_text, spec in g.tags.items():
            at = f"{where}.tags.{key_text}"
            value_text, required = (spec, False) if isinstance(spec, str) else (spec.value, spec.required)
            key, value, problems = self.tag(key_text, value_text, cond)
            for p in problems:
                self.problem(at, p)
            if key is None or value is None or problems:
                ok = False
                continue
            if key.constant is not None:
                if key.constant.lower() in lower:
                    self.problem(at, f"tag keys {lower[key.constant.lower()]!r} and {key.constant!r} differ only "
                                     "in case (AWS keys are case-insensitive)")
                lower[key.constant.lower()] = key.constant
            out.append(TagT(key, value, required, at))
        return out if ok else None

    def durations(self, g: GrantSpec, where: str, static: RoleArn | None) -> None:
        d, m = g.duration_default, g.duration_max
        at = f"{where}.duration"
        for what, v in (("default", d), ("max", m)):
            if v is not None and not MIN_DURATION <= v <= MAX_DURATION:
                self.problem(at, f"{what} {v}s is outside AWS's {MIN_DURATION}..{MAX_DURATION} seconds")
                return
        role = self.catalog.role(static) if static else None
        if role is not None and m is not None and m > role.max_session_duration:
            self.problem(at, f"max {m}s is above the role's max_session_duration {role.max_session_duration}s "
                             "(accounts catalog); AWS would refuse it")
        effective_max = m or (role.max_session_duration if role else DEFAULT_ROLE_MAX)
        if d is not None and d > effective_max:
            hint = "" if m else " (set duration.max, or declare the role's max_session_duration in the catalog)"
            self.problem(at, f"default {d}s is above the max {effective_max}s{hint}")

    # ------------------------------------------------------------ deny

    def deny(self, spec: DenySpec, where: str) -> CDeny | None:
        if spec.all:
            return CDeny(True, frozenset(), ())
        accounts = set()
        for i, ref in enumerate(spec.accounts):
            acct = self.catalog.account_id(ref)
            if acct is None:
                self.problem(f"{where}.deny.accounts[{i}]", f"{ref!r} is neither a 12-digit account id nor an alias "
                                                           "in the accounts catalog")
            else:
                accounts.add(acct)
        roles = tuple((p, compile_glob(p), p.startswith("arn:")) for p in spec.roles)
        return CDeny(False, frozenset(accounts), roles)

    # ------------------------------------------------------------ rules

    def rule(self, r: Rule, pos: int) -> CRule | None:
        where = f"rules[{pos}]"
        n = len(self.problems)
        if r.connectors is not None and self.connectors is not None:
            for cid in r.connectors:
                if cid not in self.connectors:
                    self.problem(f"{where}.connectors", f"no connector with id {cid!r}")
        cond = self.cond(r.match, f"{where}.match")
        grants = [self.grant(g, f"{where}.grants[{i}]", cond) for i, g in enumerate(r.grants or [])]
        deny = self.deny(r.deny, where) if r.deny is not None else None
        if len(self.problems) > n or cond is None:
            return None
        return CRule(pos, r.name, r.description, frozenset(r.connectors) if r.connectors is not None else None,
                     cond, [g for g in grants if g is not None], deny)

    def conflicts(self, rules: list[CRule]) -> None:
        """Two rules granting the same role must not give one tag two different constant values."""
        seen: dict[tuple[str, str], list[tuple[frozenset[str] | None, str, str, str]]] = {}
        for r in rules:
            for g in r.grants:
                if g.static_arn is None:
                    continue
                arn = str(g.static_arn)
                for t in g.tags:
                    if t.key.constant is None or t.value.constant is None:
                        continue
                    slot = seen.setdefault((arn, t.key.constant.lower()), [])
                    for connectors, value, first_where, first_rule in slot:
                        overlap = connectors is None or r.connectors is None or bool(connectors & r.connectors)
                        if overlap and value != t.value.constant and first_rule != r.name:
                            self.problem(t.where, f"conflicts with {first_where} (rule {first_rule!r}): both grant "
                                                  f"{arn} and set tag {t.key.constant!r} to different values "
                                                  f"({value!r} vs {t.value.constant!r}); tags of rules granting "
                                                  "the same role merge")
                            break
                    else:
                        slot.append((r.connectors, t.value.constant, t.where, r.name))


def _index(rules: list[CRule]) -> tuple[dict[str, tuple[ClaimPath, dict[str, list[int]]]],
                                        dict[str, AffixIndex], dict[str, AffixIndex], list[int]]:
    exact: dict[str, tuple[ClaimPath, dict[str, list[int]]]] = {}
    prefixes: dict[str, AffixIndex] = {}
    suffixes: dict[str, AffixIndex] = {}
    unindexed: list[int] = []
    paths: dict[str, ClaimPath] = {}

    def collect(c: Cond) -> None:
        if isinstance(c, Leaf):
            paths.setdefault(c.path.text, c.path)
        for child in getattr(c, "children", ()):
            collect(child)
        if isinstance(c, Not):
            collect(c.child)

    for pos, r in enumerate(rules):
        collect(r.cond)
        if r.cond.keys is None:
            unindexed.append(pos)
            continue
        for kind, path_text, value in sorted(r.cond.keys):
            if kind == "=":
                exact.setdefault(path_text, (paths[path_text], {}))[1].setdefault(value, []).append(pos)
            else:
                affixes = prefixes if kind == "^" else suffixes
                affixes.setdefault(path_text, AffixIndex(paths[path_text])).add(value, pos)
    for ix in (*prefixes.values(), *suffixes.values()):
        ix.freeze()
    return exact, prefixes, suffixes, unindexed


def compile_mapping(ms: MappingSettings, *, partition: str = "aws", connectors: Collection[str] | None = None,
                    positions: list[int] | None = None) -> tuple[RuleSet, list[str]]:
    """Compile validated settings; return the rule set and every problem (paths relative to ``mapping``)."""
    c = _Compiler(ms, partition if partition in PARTITIONS else "aws", connectors)
    c.compile_catalog()
    rules: list[CRule] = []
    names: dict[str, int] = {}
    for i, r in enumerate(ms.rules):
        pos = positions[i] if positions else i
        if r.name in names:
            c.problem(f"rules[{pos}].name", f"rule names must be unique; {r.name!r} is also rules[{names[r.name]}]")
        names.setdefault(r.name, pos)
        compiled = c.rule(r, pos)
        if compiled is not None:
            rules.append(compiled)
    c.conflicts(rules)
    exact, prefixes, suffixes, unindexed = _index(rules)
    # What decides access, not how it is loaded or guarded: the same rules keep the same version.
    options = {"reload_interval", "rules_file", "max_shrink", "expected_rules"}
    version = hashlib.sha256(ms.model_dump_json(exclude=options).encode()).hexdigest()[:16]
    return RuleSet(rules, c.catalog, c.partition, exact, prefixes, suffixes, unindexed, version), c.problems


# --------------------------------------------------------------------------- loading


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk load: parsing and compiling 10,000 rules makes
    hundreds of thousands of objects, and the collector re-scanning the growing heap triples the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif not item.startswith("cond:"):
            out += f".{item}"
    return out


# Where a problem of a converted flat-form rule is, in the words the admin wrote it.
_LEGACY_PATHS = ((".grants[0].session_name", ".session_name_from"),
                 (".grants[0].source_identity", ".source_identity_from"),
                 (".grants[0].provider", ".saml_provider"), (".grants[0].duration.max", ".max_duration"),
                 (".grants[0].duration.default", ".duration"), (".grants[0].", "."), (".match.", "."))


def _legacy_path(problem: str) -> str:
    head, sep, msg = problem.partition(": ")
    for old, new in _LEGACY_PATHS:
        head = head.replace(old, new)
    return head + sep + msg


def load_mapping(raw: Any, *, partition: str = "aws", connectors: Collection[str] | None = None) -> MappingSettings:
    """Validate and compile a ``mapping:`` document; raise ConfigError listing every problem.

    Problem paths are relative to the document (``rules[3].grants[0].tags.Team: …``).
    """
    with gc_paused():
        return _load_mapping(raw, partition, connectors)


def _load_mapping(raw: Any, partition: str, connectors: Collection[str] | None) -> MappingSettings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping with rules (and accounts, rules_file, …)"])
    problems: list[str] = []
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        problems.append("rules: must be a list of rules")
        rules_raw = []
    def shape(e: ValidationError, prefix: str) -> list[str]:
        return [f"{(prefix + _loc(err['loc']))[1:] or '(top level)'}: {err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()]

    # Options, then each catalog entry, then each rule on its own: a broken one must not hide the
    # problems of the others, so compiling below goes on with stand-ins for what did not validate.
    try:
        ms = MappingSettings.model_validate({k: v for k, v in raw.items() if k not in ("rules", "accounts")})
    except ValidationError as e:
        problems += shape(e, "")
        ms = MappingSettings()
    accounts_raw = raw.get("accounts") or {}
    accounts: dict[str, AccountEntry] = {}
    try:
        MappingSettings.model_validate({"accounts": {k: {} for k in accounts_raw}} if isinstance(accounts_raw, dict)
                                       else {"accounts": accounts_raw})
    except ValidationError as e:
        problems += shape(e, "")
        accounts_raw = {}
    for key, entry in accounts_raw.items():
        try:
            accounts[key] = AccountEntry.model_validate(entry)
        except ValidationError as e:
            problems += shape(e, f".accounts.{key}")
            alias = entry.get("alias") if isinstance(entry, dict) else None
            accounts[key] = AccountEntry.model_construct(alias=alias if isinstance(alias, str) else None,
                                                         label=None, partition=None, roles={})
    rules: list[Rule] = []
    positions: list[int] = []
    legacy: list[str] = []
    legacy_pos: set[int] = set()
    for i, item in enumerate(rules_raw):
        if is_legacy_rule(item):
            item, flat = upgrade_legacy_rule(item)
            problems += [_flat_problem(i, p) for p in flat]
            legacy.append(str(item.get("name", f"rules[{i}]")))
            legacy_pos.add(i)
        try:
            rules.append(Rule.model_validate(item))
            positions.append(i)
        except ValidationError as e:
            for err in e.errors():
                line = f"rules[{i}]{_loc(err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
                problems.append(_legacy_path(line) if i in legacy_pos else line)
    if ms.expected_rules is not None and ms.expected_rules != len(rules_raw):
        problems.append(f"expected_rules: says {ms.expected_rules} rule(s), found {len(rules_raw)} "
                        "(a truncated or half-written file?)")
    ms = ms.model_copy(update={"rules": rules, "accounts": accounts})
    ruleset, semantic = compile_mapping(ms, partition=partition, connectors=connectors, positions=positions)
    for p in semantic:
        pos = re.match(r"rules\[(\d+)\]", p)
        problems.append(_legacy_path(p) if pos and int(pos[1]) in legacy_pos else p)
    if problems:
        raise ConfigError(problems)
    ms._compiled = ruleset
    ms._legacy = legacy
    return ms


def _flat_problem(i: int, p: str) -> str:
    return f"rules[{i}].{p}" if re.match(r"\w+: ", p) else f"rules[{i}]: {p}"
