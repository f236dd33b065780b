"""``MappingSettings``: the validated ``mapping:`` document together with its compiled rule set — and
``load_mapping``, the one entry point that builds it (shape, then meaning, every problem at once).

The layers, one way only: ``model`` (the pydantic schema) ← ``compiler`` (schema → ``ruleset.RuleSet``)
← this module (holds both). ``load_mapping`` compiles explicitly and stores the result; settings
built any other way (``MappingSettings()`` as a config default, ``model_validate`` in a test)
compile on first use of ``compiled``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import PrivateAttr, ValidationError

from bridge.domain.errors import ConfigError
from bridge.mapping.compiler import compile_mapping, gc_paused
from bridge.mapping.model import AccountEntry, MappingSpec, Rule, is_legacy_rule, upgrade_legacy_rule
from bridge.mapping.ruleset import RuleSet


class MappingSettings(MappingSpec):
    """``mapping:`` — rules in file order, the accounts catalog, where rules live and reload — and the
    compiled, indexed rule set the engine runs."""

    _compiled: RuleSet | None = PrivateAttr(default=None)
    _legacy: list[str] = PrivateAttr(default_factory=list)
    _stamps: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def compiled(self) -> RuleSet:
        """The compiled, indexed rule set (built by ``load_mapping``, or on first use)."""
        if self._compiled is None:
            ruleset, problems = compile_mapping(self)
            if problems:
                raise ValueError("; ".join(problems))
            self._compiled = ruleset
        return self._compiled

    @property
    def file_stamps(self) -> dict[str, Any]:
        """Stamps of the files these settings were read from, taken before reading (set by the loader;
        the rule book compares them to tell a changed file)."""
        return self._stamps

    @property
    def scanned_rules(self) -> list[str]:
        """Names of the rules the index cannot serve, tested for every identity (warned about at startup)."""
        rs = self.compiled
        return [rs.rules[pos].name for pos in rs.unindexed]

    def scanned_warnings(self) -> list[str]:
        """The load-time warning naming the rules the index cannot serve (none: no warning)."""
        names = self.scanned_rules
        if not names:
            return []
        shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return [f"mapping: {len(names)} rule(s) cannot be indexed ({shown}): each is tested for every identity at "
                "every decision, because its match holds no text to look up (a regex or glob of only wildcards and "
                "classes, exists: false, a lone not or mfa). Add a literal every match contains, or an all: with "
                "a group or equals condition (docs/rules.md, \"How rules are indexed\")."]

    @property
    def legacy_rules(self) -> list[str]:
        """Names of rules written in the old flat form (warned about by check-config)."""
        return list(self._legacy)


# --------------------------------------------------------------------------- loading


def load_mapping(raw: Any, *, partition: str = "aws", connectors: Collection[str] | None = None,
                 workloads: Collection[str] = ()) -> MappingSettings:
    """Validate and compile a ``mapping:`` document; raise ConfigError listing every problem.

    Problem paths are relative to the document (``rules[3].grants[0].tags.Team: …``). ``workloads``: the ids of
    the workload connectors, whose identities only rules naming them in ``connectors:`` match.
    """
    with gc_paused():
        return _load_mapping(raw, partition, connectors, workloads)


def _load_mapping(raw: Any, partition: str, connectors: Collection[str] | None,
                  workloads: Collection[str]) -> MappingSettings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping with rules (and accounts, rules_file, …)"])
    problems: list[str] = []
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        problems.append("rules: must be a list of rules")
        rules_raw = []
    # Options, then each catalog entry, then each rule on its own: a broken one must not hide the
    # problems of the others, so compiling below goes on with stand-ins for what did not validate.
    ms = _options(raw, problems)
    accounts = _accounts(raw.get("accounts") or {}, problems)
    rules = _rules(rules_raw, problems)
    if ms.expected_rules is not None and ms.expected_rules != len(rules_raw):
        problems.append(f"expected_rules: says {ms.expected_rules} rule(s), found {len(rules_raw)} "
                        "(a truncated or half-written file?)")
    ms = ms.model_copy(update={"rules": rules.valid, "accounts": accounts})
    ruleset, semantic = compile_mapping(ms, partition=partition, connectors=connectors, positions=rules.positions,
                                       workloads=workloads)
    for p in semantic:
        pos = re.match(r"rules\[(\d+)\]", p)
        problems.append(_legacy_path(p) if pos and int(pos[1]) in rules.legacy_pos else p)
    if problems:
        raise ConfigError(problems)
    ms._compiled = ruleset
    ms._legacy = rules.legacy
    return ms


def _options(raw: dict[str, Any], problems: list[str]) -> MappingSettings:
    """Everything but rules and accounts (defaults when broken)."""
    try:
        return MappingSettings.model_validate({k: v for k, v in raw.items() if k not in ("rules", "accounts")})
    except ValidationError as e:
        problems += _shape(e, "")
        return MappingSettings()


def _accounts(accounts_raw: Any, problems: list[str]) -> dict[str, AccountEntry]:
    """The catalog, entry by entry; a broken entry stands in with its alias (if any) and no roles."""
    accounts: dict[str, AccountEntry] = {}
    try:
        MappingSettings.model_validate({"accounts": {k: {} for k in accounts_raw}} if isinstance(accounts_raw, dict)
                                       else {"accounts": accounts_raw})
    except ValidationError as e:
        problems += _shape(e, "")
        accounts_raw = {}
    for key, entry in accounts_raw.items():
        try:
            accounts[key] = AccountEntry.model_validate(entry)
        except ValidationError as e:
            problems += _shape(e, f".accounts.{key}")
            alias = entry.get("alias") if isinstance(entry, dict) else None
            accounts[key] = AccountEntry.model_construct(alias=alias if isinstance(alias, str) else None,
                                                         label=None, partition=None, roles={})
    return accounts


def account_problems(accounts_raw: Any) -> list[str]:
    """Every shape problem of a catalog (``accounts:`` of an accounts file), paths from ``accounts.``; the
    references between accounts (hubs, aliases) are checked once the catalogs are merged."""
    problems: list[str] = []
    _accounts(accounts_raw, problems)
    return problems


@dataclass
class _Rules:
    valid: list[Rule] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # of each valid rule in the document
    legacy: list[str] = field(default_factory=list)  # names of flat-form rules
    legacy_pos: set[int] = field(default_factory=set)


def _rules(rules_raw: list[Any], problems: list[str]) -> _Rules:
    """Each rule on its own (flat-form rules converted first; their problems worded as written)."""
    out = _Rules()
    for i, item in enumerate(rules_raw):
        if is_legacy_rule(item):
            item, flat = upgrade_legacy_rule(item)
            problems += [_flat_problem(i, p) for p in flat]
            out.legacy.append(str(item.get("name", f"rules[{i}]")))
            out.legacy_pos.add(i)
        try:
            out.valid.append(Rule.model_validate(item))
            out.positions.append(i)
        except ValidationError as e:
            for err in e.errors():
                line = f"rules[{i}]{_loc(err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
                problems.append(_legacy_path(line) if i in out.legacy_pos else line)
    return out


def _shape(e: ValidationError, prefix: str) -> list[str]:
    return [f"{(prefix + _loc(err['loc']))[1:] or '(top level)'}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()]


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


def _flat_problem(i: int, p: str) -> str:
    return f"rules[{i}].{p}" if re.match(r"\w+: ", p) else f"rules[{i}]: {p}"
