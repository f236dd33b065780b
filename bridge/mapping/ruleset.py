"""The compiled rule set the engine runs: rules in file order, the accounts catalog and the index.

Built by ``compiler.compile_mapping``; held by ``MappingSettings.compiled`` (``settings``). Only
data and lookups live here — no checking, no pydantic — so the engine depends on this module, not
on the compiler.

The index: a rule whose match requires one of a finite set of exact ``(path, value)`` pairs
(``group: x``, ``equals``, ``in``, an ``all`` containing one, an ``any`` of such) is filed under
those pairs (prefixes and suffixes likewise), so evaluating 10,000 rules looks up an identity's
values instead of scanning. Case-insensitive ``equals``/``in`` are filed under folded values; a regex
or glob with no literal prefix, ``contains`` and the other case-insensitive conditions under the
literal text every match holds (``factors``), found with one pass over the identity's values whatever
the number of rules. What is left (``unindexed``: e.g. a regex of only classes, ``exists: false``, a lone ``not``) is
tested for every identity, and ``load_mapping`` names those rules in a warning.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from bridge.aws.arn import RoleArn
from bridge.mapping.conditions import Cond
from bridge.mapping.paths import ClaimPath, View
from bridge.mapping.template import Template

ACCOUNT_RE = re.compile(r"\A\d{12}\Z", re.ASCII)
ROLE_NAME_RE = re.compile(r"\A(?:[\x21-\x7e]+/)*[A-Za-z0-9_+=,.@-]{1,64}\Z")
PROVIDER_NAME_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,128}\Z")
PROVIDER_ARN_RE = re.compile(r"\Aarn:(aws|aws-us-gov|aws-cn):iam::\d{12}:saml-provider/[A-Za-z0-9_.-]{1,128}\Z",
                             re.ASCII)
DEFAULT_ROLE_MAX = 3600  # IAM's default MaxSessionDuration


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class PolicyT:
    """A session policy compiled: the JSON tree with a ``Template`` for each string value (keys stay as
    written), and its compact JSON when nothing in it is templated."""

    tree: Any
    constant: str | None


@dataclass(frozen=True)
class ChainT:
    """What a grant or a catalog role says about reaching it: the hub (``via``, resolved to a catalog
    role), the ExternalId of its trust policy (secret) and session policies."""

    via: RoleArn | None = None
    external_id: str | None = field(default=None, repr=False)
    policy: PolicyT | None = None
    policy_arns: tuple[str, ...] = ()


NO_CHAIN = ChainT()


@dataclass(frozen=True)
class RoleInfo:
    label: str | None
    max_session_duration: int
    chain: ChainT = NO_CHAIN


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
    # role ARN → the hubs before it, first to last, for every catalog role with a ``via`` (checked at
    # load: each hub in the catalog, no loop, at most ``max_hops`` AssumeRole calls)
    chains: dict[str, tuple[RoleArn, ...]] = field(default_factory=dict)
    max_hops: int = 2

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


@dataclass(frozen=True)
class RequestPolicy:
    """A grant given on request: who may approve (a condition over the approver), the longest window,
    whether a reason is required, and whether the requester may break the glass alone."""

    approvers: Cond
    max_duration: int
    reason_required: bool
    break_glass: bool

    def may_approve(self, view: View) -> bool:
        return self.approvers.test(view, False).ok


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
    request: RequestPolicy | None = None
    chain: ChainT = NO_CHAIN


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


GRAM = 4  # factors are found through one of their 4-character substrings (the rarest among all factors)


@dataclass
class FactorIndex:
    """Rules by the literal text (``factors``) some value of one path holds, once folded as ``how``."""

    path: ClaimPath
    how: str
    factors: dict[str, list[int]] = field(default_factory=dict)
    by_gram: dict[int, dict[str, list[tuple[str, list[int]]]]] = field(default_factory=dict)

    def add(self, factor: str, pos: int) -> None:
        self.factors.setdefault(factor, []).append(pos)

    def freeze(self) -> None:
        """File each factor under its rarest gram, so one common gram never leads to most factors."""
        def grams(f: str) -> set[str]:
            n = min(GRAM, len(f))
            return {f[i:i + n] for i in range(len(f) - n + 1)}

        counts: dict[str, int] = {}
        for f in self.factors:
            for g in grams(f):
                counts[g] = counts.get(g, 0) + 1
        self.by_gram = {}
        for f, rules in sorted(self.factors.items()):
            g = min(sorted(grams(f)), key=counts.__getitem__)
            self.by_gram.setdefault(len(g), {}).setdefault(g, []).append((f, rules))

    def hits(self, view: View, hits: set[int]) -> None:
        """Rules whose factor some value holds: every gram of the values looked up once, then the factor
        searched for in all values at once."""
        text = view.joined(self.path, self.how)
        if not text:
            return
        for n, table in self.by_gram.items():
            seen = {text[i:i + n] for i in range(len(text) - n + 1)}
            for g in seen.intersection(table) if len(seen) < len(table) else [g for g in table if g in seen]:
                for factor, rules in table[g]:
                    if len(factor) == n or factor in text:
                        hits.update(rules)


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
    folded: dict[str, tuple[ClaimPath, dict[str, list[int]]]] = field(default_factory=dict)
    factors: dict[tuple[str, str], FactorIndex] = field(default_factory=dict)
    present: dict[str, tuple[ClaimPath, list[int]]] = field(default_factory=dict)
    # defaults → grant → what its role decides when that does not depend on the identity (``render``)
    fixed: dict[Any, dict[int, Any]] = field(default_factory=dict)
    # ids of the workload connectors (``type: workload``): their identities are matched only by rules that name
    # them in ``connectors:``; a rule without ``connectors:`` is for people signing in, not any repository's job
    workloads: frozenset[str] = frozenset()

    def candidates(self, view: View) -> list[int]:
        """Positions of the rules that can match ``view`` (a superset), in file order."""
        hits: set[int] = set(self.unindexed)
        for path, table in self.exact.values():
            _exact_hits(table, view.text_set(path), hits)
        for ix in self.prefixes.values():
            _prefix_hits(ix, view, hits)
        for ix in self.suffixes.values():
            _suffix_hits(ix, view.text_set(ix.path), hits)
        for path, table in self.folded.values():
            _exact_hits(table, view.folded_set(path), hits)
        for fx in self.factors.values():
            fx.hits(view, hits)
        for path, found in self.present.values():
            if view.values(path):
                hits.update(found)
        return sorted(hits)


def _exact_hits(table: dict[str, list[int]], values: frozenset[str], hits: set[int]) -> None:
    """Rules filed under one of ``values`` (walking whichever of the two is smaller)."""
    if len(values) <= len(table):
        for v in values:
            found = table.get(v)
            if found:
                hits.update(found)
    else:
        for v, found in table.items():
            if v in values:
                hits.update(found)


def _prefix_hits(ix: AffixIndex, view: View, hits: set[int]) -> None:
    """Rules filed under a prefix of one of the view's values at ``ix.path``: look each value's prefixes
    up (few values), or bisect the sorted values for each prefix (many values)."""
    values = view.text_set(ix.path)
    if not values:
        return
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


def _suffix_hits(ix: AffixIndex, values: frozenset[str], hits: set[int]) -> None:
    for v in values:
        for n, table in ix.by_len.items():
            found = table.get(v[-n:]) if len(v) >= n else None
            if found:
                hits.update(found)
