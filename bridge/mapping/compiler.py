"""Rules → an indexed, compiled rule set (``ruleset.RuleSet``), checking meaning and reporting EVERY
problem with its path.

Input is the validated schema (``model.MappingSpec``: shape is pydantic's job, see ``settings.load_mapping``);
here: regexes and globs compile, templates parse and name only known filters and captures the match
really sets, durations fit the role's ``max_session_duration``, constant tag keys and values obey
AWS's rules (docs/aws-rules.md §1.7), and rules granting the same role do not give
the same tag two different constant values (they merge; see ``engine``). Grants and denies are
compiled by ``grants.GrantCompiler``; this module adds the catalog, conditions, rules, conflicts
and the index.

Imports only the schema (``model``) and the compiled structures — never ``settings``, which holds
the result: the dependency runs one way (settings → compiler → model).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from bridge.aws.arn import PARTITIONS
from bridge.mapping.catalog_match import picked_accounts
from bridge.mapping.chains import catalog_chains, compile_chain, hub_arn
from bridge.mapping.conditions import All, Any_, Cond, Leaf, Mfa, Not, compile_glob
from bridge.mapping.gcpause import gc_paused
from bridge.mapping.grants import GrantCompiler
from bridge.mapping.model import (
    AllCond,
    AnyCond,
    ClaimCond,
    GrantSpec,
    GroupCond,
    MappingSpec,
    MfaCond,
    NotCond,
    Rule,
)
from bridge.mapping.paths import ClaimPath, parse_path
from bridge.mapping.ruleset import (
    ACCOUNT_RE,
    NO_CHAIN,
    ROLE_NAME_RE,
    AccountInfo,
    AffixIndex,
    CRule,
    FactorIndex,
    RoleInfo,
    RuleSet,
)

__all__ = ["RuleSet", "compile_mapping", "gc_paused"]


class _Compiler(GrantCompiler):
    def __init__(self, ms: MappingSpec, partition: str, connectors: Collection[str] | None) -> None:
        super().__init__(partition)
        self.ms = ms
        self.connectors = connectors

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
        self.catalog.max_hops = self.ms.max_hops
        self.compile_catalog_chains()

    def compile_catalog_chains(self) -> None:
        """Second pass, once every account is known: each catalog role's hub, ExternalId and policies."""
        unresolved: set[str] = set()
        for acct_id, entry in self.ms.accounts.items():
            info = self.catalog.by_id.get(acct_id)
            for name, r in entry.roles.items():
                where = f"accounts.{acct_id}.roles.{name}"
                via = None
                if r.via is not None:
                    hub = hub_arn(r.via, self.catalog, self.partition)
                    if isinstance(hub, str):
                        self.problem(f"{where}.via", hub)
                        unresolved.add(f"{acct_id}/{name}")
                    else:
                        via = hub
                chain = compile_chain(r, via, where, lambda text, at: self.tmpl(text, at, None), self.problem,
                                      catalog=True)
                if info is not None and name in info.roles and chain is not NO_CHAIN:
                    old = info.roles[name]
                    info.roles[name] = RoleInfo(old.label, old.max_session_duration, chain)
        catalog_chains(self.catalog, self.partition, self.problem, unresolved)


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
            return self.combined(c, where)
        assert isinstance(c, ClaimCond)
        return self.leaf(c, where)

    def combined(self, c: AllCond | AnyCond, where: str) -> Cond | None:
        """``all``/``any``: every child must compile; in an ``all`` each capture has one setter."""
        kind = "all" if isinstance(c, AllCond) else "any"
        children = [self.cond(x, f"{where}.{kind}[{i}]") for i, x in enumerate(getattr(c, kind))]
        if any(ch is None for ch in children):
            return None
        kids = [ch for ch in children if ch is not None]
        if kind == "any":
            return Any_(kids)
        seen: dict[str, int] = {}
        for i, ch in enumerate(kids):
            for name in sorted(ch.possible):
                if name in seen:
                    self.problem(f"{where}.all[{i}]", f"capture {name!r} is also set by all[{seen[name]}]; "
                                                     "give each capture one name")
                seen[name] = i
        return All(kids)

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

    # ------------------------------------------------------------ rules

    def rule(self, r: Rule, pos: int) -> CRule | None:
        where = f"rules[{pos}]"
        self.rule_name = r.name
        n = len(self.problems)
        if r.connectors is not None and self.connectors is not None:
            for cid in r.connectors:
                if cid not in self.connectors:
                    self.problem(f"{where}.connectors", f"no connector with id {cid!r}")
        cond = self.cond(r.match, f"{where}.match")
        grants = [self.grant(one, f"{where}.grants[{i}]", cond) for i, g in enumerate(r.grants or [])
                  for one in self.expand(g)]
        deny = self.deny(r.deny, where) if r.deny is not None else None
        if len(self.problems) > n or cond is None:
            return None
        return CRule(pos, r.name, r.description, frozenset(r.connectors) if r.connectors is not None else None,
                     cond, [g for g in grants if g is not None], deny)

    def expand(self, g: GrantSpec) -> list[GrantSpec]:
        """A grant with ``where:``: the same grant once per catalog account it picks (none: nothing)."""
        if g.where is None:
            return [g]
        return [g.model_copy(update={"where": None, "account": acct})
                for acct in picked_accounts(self.ms.accounts, g.where)]

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


@dataclass
class _Index:
    exact: dict[str, tuple[ClaimPath, dict[str, list[int]]]] = field(default_factory=dict)
    folded: dict[str, tuple[ClaimPath, dict[str, list[int]]]] = field(default_factory=dict)
    prefixes: dict[str, AffixIndex] = field(default_factory=dict)
    suffixes: dict[str, AffixIndex] = field(default_factory=dict)
    factors: dict[tuple[str, str], FactorIndex] = field(default_factory=dict)
    present: dict[str, tuple[ClaimPath, list[int]]] = field(default_factory=dict)
    unindexed: list[int] = field(default_factory=list)


def _index(rules: list[CRule]) -> _Index:
    ix = _Index()
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
            ix.unindexed.append(pos)
            continue
        for kind, path_text, value in sorted(r.cond.keys):
            path = paths[path_text]
            if kind in ("=", "=f"):
                table = ix.exact if kind == "=" else ix.folded
                table.setdefault(path_text, (path, {}))[1].setdefault(value, []).append(pos)
            elif kind in ("^", "$"):
                affixes = ix.prefixes if kind == "^" else ix.suffixes
                affixes.setdefault(path_text, AffixIndex(path)).add(value, pos)
            elif kind == "?":
                ix.present.setdefault(path_text, (path, []))[1].append(pos)
            else:  # "~", "~f", "~a": a literal factor, folded as the kind says
                ix.factors.setdefault((kind[1:], path_text), FactorIndex(path, kind[1:])).add(value, pos)
    for affix in (*ix.prefixes.values(), *ix.suffixes.values()):
        affix.freeze()
    for fx in ix.factors.values():
        fx.freeze()
    return ix


def compile_mapping(ms: MappingSpec, *, partition: str = "aws", connectors: Collection[str] | None = None,
                    positions: list[int] | None = None, workloads: Collection[str] = ()) -> tuple[RuleSet, list[str]]:
    """Compile validated settings; return the rule set and every problem (paths relative to ``mapping``).
    ``workloads``: the workload connectors' ids (only rules naming one in ``connectors:`` match its identities)."""
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
    ix = _index(rules)
    # What decides access, not how it is loaded or guarded: the same rules keep the same version.
    options = {"reload_interval", "rules_file", "max_shrink", "expected_rules"}
    text = ms.model_dump_json(exclude=options)
    if workloads:  # which connectors are workloads decides too (configs without any keep their version)
        text += json.dumps(sorted(workloads))
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    return RuleSet(rules, c.catalog, c.partition, ix.exact, ix.prefixes, ix.suffixes, ix.unindexed, version,
                   ix.folded, ix.factors, ix.present, workloads=frozenset(workloads)), c.problems
