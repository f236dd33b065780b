"""Rules as tested code: expectation cases (``bridge rules test``) and the difference two rule sets make to
a set of identities (``bridge rules diff``). Pure: documents and rule sets in, results out.

A cases document is a list of cases, or ``{cases: [...]}``. Each case::

    - name: alice administers the sandbox            # optional; default: case N
      identity: {subject: alice, email: …, groups: [...], claims: {...}, mfa: true}
      # or identity_file: alice.json                  (the format `bridge explain --identity` reads)
      # or, for a workload connector, the token's claims, read as the connector reads them:
      # connector: github
      # token_claims: {sub: "repo:octo-org/app:ref:refs/heads/main", repository: octo-org/app, …}
      # or token_claims_file: main-branch.json
      roles: [arn:aws:iam::123456789012:role/Admin]   # the exact set of usable roles, or:
      includes: [arn:…]                               # these roles, at least
      excludes: [arn:…]                               # none of these
      tags:                                           # per role: these tags with these values
        arn:aws:iam::123456789012:role/Admin: {Department: Platform, Email: null}   # null: not sent
      hubs:                                           # per role: reached through these hubs, first to last
        arn:aws:iam::210987654321:role/Developer: [arn:aws:iam::111111111111:role/BridgeHub]   # []: directly

Usable roles are the grants of ``decide`` — MFA-locked roles are not usable (``mfa: true`` unlocks them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bridge.domain.errors import ConfigError
from bridge.domain.identity import Grant, Identity, identity_from_sample
from bridge.mapping.engine import decide, workload_skip_reason
from bridge.mapping.results import GrantDefaults
from bridge.mapping.settings import MappingSettings

CASE_KEYS = {"name", "identity", "identity_file", "connector", "token_claims", "token_claims_file", "roles", "includes",
             "excludes", "tags", "hubs"}
IDENTITY_KEYS = ("identity", "identity_file", "token_claims", "token_claims_file")
# (connector id, a token's claims) → the identity that connector makes of them; ValueError saying what is wrong
FromClaims = Callable[[str, Mapping[str, Any]], Identity]


@dataclass(frozen=True)
class Case:
    name: str
    where: str
    identity: Identity
    roles: frozenset[str] | None = None
    includes: frozenset[str] = frozenset()
    excludes: frozenset[str] = frozenset()
    tags: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    hubs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseResult:
    case: Case
    differences: tuple[str, ...]
    granted: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.differences


def _arns(v: Any, where: str, problems: list[str]) -> frozenset[str]:
    if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
        problems.append(f"{where}: must be a list of role ARNs")
        return frozenset()
    return frozenset(v)


def _tags(v: Any, where: str, problems: list[str]) -> dict[str, dict[str, str | None]]:
    ok = isinstance(v, dict) and all(isinstance(t, dict) and all(isinstance(k, str) for k in t) for t in v.values())
    if not ok:
        problems.append(f"{where}: must map role ARNs to {{tag: value}}")
        return {}
    return {arn: {k: (None if x is None else str(x)) for k, x in t.items()} for arn, t in v.items()}


def _hubs(v: Any, where: str, problems: list[str]) -> dict[str, tuple[str, ...]]:
    ok = isinstance(v, dict) and all(isinstance(h, list) and all(isinstance(a, str) for a in h) for h in v.values())
    if not ok:
        problems.append(f"{where}: must map role ARNs to the list of hub role ARNs ([] for none)")
        return {}
    return {arn: tuple(h) for arn, h in v.items()}


def _document(raw: Mapping[str, Any], key: str, where: str, base: Path | None, problems: list[str]) -> Any:
    """The case's document at ``key``; read from the file it names for a ``*_file`` key (relative to ``base``)."""
    if not key.endswith("_file"):
        return raw.get(key)
    path = Path(str(raw[key]))
    path = path if path.is_absolute() or base is None else base / path
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{where}.{key}: cannot read {path} ({e})")
        return None


def _identity(raw: Mapping[str, Any], where: str, base: Path | None, problems: list[str],
              from_claims: FromClaims | None) -> Identity | None:
    key = next(k for k in IDENTITY_KEYS if k in raw)
    doc = _document(raw, key, where, base, problems)
    if doc is None:
        return None
    if key.startswith("token_claims"):
        if not isinstance(raw.get("connector"), str):
            problems.append(f"{where}: {key} needs connector: <the workload connector's id>")
            return None
        if from_claims is None or not isinstance(doc, Mapping):
            problems.append(f"{where}.{key}: " + ("must be an object (the token's claims)" if from_claims else
                                                   "token claims need the config's connectors (bridge rules test)"))
            return None
        try:
            return from_claims(raw["connector"], doc)
        except ValueError as e:
            problems.append(f"{where}.{key}: {e}")
            return None
    try:
        return identity_from_sample(doc)
    except ValueError as e:
        problems.append(f"{where}.identity: {e}")
        return None


def _case(raw: Any, where: str, index: int, base: Path | None, problems: list[str],
          from_claims: FromClaims | None) -> Case | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a case must be a mapping")
        return None
    before = len(problems)
    problems += [f"{where}: unknown key {k!r} ({', '.join(sorted(CASE_KEYS))})" for k in raw if k not in CASE_KEYS]
    if sum(k in raw for k in IDENTITY_KEYS) != 1:
        problems.append(f"{where}: give exactly one of {', '.join(IDENTITY_KEYS)}")
        return None
    if not {"roles", "includes", "excludes", "tags", "hubs"} & set(raw):
        problems.append(f"{where}: expects nothing (give roles, or includes/excludes, and optionally tags, hubs)")
    if "connector" in raw and not {"token_claims", "token_claims_file"} & set(raw):
        problems.append(f"{where}: connector goes with token_claims (an identity names its own connector)")
    if "roles" in raw and ("includes" in raw or "excludes" in raw):
        problems.append(f"{where}: roles is the exact set; do not combine it with includes/excludes")
    ident = _identity(raw, where, base, problems, from_claims)
    roles = _arns(raw["roles"], f"{where}.roles", problems) if "roles" in raw else None
    case = Case(str(raw.get("name") or f"case {index + 1}"), where, ident,  # type: ignore[arg-type]
                roles, _arns(raw.get("includes", []), f"{where}.includes", problems),
                _arns(raw.get("excludes", []), f"{where}.excludes", problems),
                _tags(raw.get("tags", {}), f"{where}.tags", problems),
                _hubs(raw.get("hubs", {}), f"{where}.hubs", problems))
    return case if len(problems) == before else None


def load_cases(doc: Any, source: str = "cases", base: Path | None = None,
               from_claims: FromClaims | None = None) -> list[Case]:
    """The cases of one document; raises ConfigError with every problem (``<source>:cases[2].roles: …``).
    ``from_claims`` reads the ``token_claims`` of a case as its workload connector would."""
    items = doc.get("cases") if isinstance(doc, dict) else doc
    problems: list[str] = []
    if isinstance(doc, dict) and set(doc) - {"cases"}:
        problems.append(f"{source}: unknown top-level key(s) {sorted(set(doc) - {'cases'})} (cases)")
    if not isinstance(items, list):
        raise ConfigError([f"{source}: expected a list of cases, or {{cases: [...]}}"])
    cases = [_case(raw, f"{source}:cases[{i}]", i, base, problems, from_claims) for i, raw in enumerate(items)]
    if problems:
        raise ConfigError(problems)
    return [c for c in cases if c is not None]


def _tag_differences(arn: str, want: Mapping[str, str | None], grant: Grant | None) -> list[str]:
    if grant is None:
        return [f"{arn}: tags expected, but the role is not granted"]
    have = {k.lower(): (k, v) for k, v in grant.tags.items()}
    out = []
    for key, value in want.items():
        got = have.get(key.lower())
        if value is None and got is not None:
            out.append(f"{arn}: tag {key} expected absent, got {got[1]!r}")
        elif value is not None and got is None:
            out.append(f"{arn}: tag {key} expected {value!r}, not sent")
        elif value is not None and got is not None and got[1] != value:
            out.append(f"{arn}: tag {key} expected {value!r}, got {got[1]!r}")
    return out


def run_case(mapping: MappingSettings, case: Case, defaults: GrantDefaults) -> CaseResult:
    decision = decide(mapping, case.identity, defaults)
    grants = {g.role_arn: g for g in decision.grants}
    granted = set(grants)
    locked = {g.role_arn for g in decision.locked}
    diffs: list[str] = []

    missing = (case.roles - granted if case.roles is not None else set()) | (case.includes - granted)
    skipped = _skipped_for_workload(mapping, case.identity, defaults, granted) if missing else {}

    def why_missing(arn: str) -> str:
        if arn in skipped:
            return f" (rule {skipped[arn]} {workload_skip_reason(case.identity.connector_id)})"
        return " (locked: needs a sign-in with MFA)" if arn in locked else ""

    if case.roles is not None:
        diffs += [f"missing role {a}{why_missing(a)}" for a in sorted(case.roles - granted)]
        diffs += [f"unexpected role {a} (rule {grants[a].via})" for a in sorted(granted - case.roles)]
    diffs += [f"missing role {a}{why_missing(a)}" for a in sorted(case.includes - granted)]
    diffs += [f"unexpected role {a} (rule {grants[a].via})" for a in sorted(case.excludes & granted)]
    for arn, want in case.tags.items():
        diffs += _tag_differences(arn, want, grants.get(arn))
    for arn, hubs in case.hubs.items():
        got = grants.get(arn)
        have = tuple(h.role_arn for h in got.hubs) if got is not None else None
        if have is None:
            diffs.append(f"{arn}: hubs expected, but the role is not granted")
        elif have != hubs:
            diffs.append(f"{arn}: reached through {list(have) or 'no hub'}, expected {list(hubs) or 'no hub'}")
    return CaseResult(case, tuple(diffs), tuple(grants))


def _skipped_for_workload(mapping: MappingSettings, identity: Identity, defaults: GrantDefaults,
                          granted: set[str]) -> dict[str, str]:
    """Roles a workload's identity would get if rules without ``connectors:`` applied to it → the rule granting
    each (to say why a case misses them); nothing for other identities."""
    rs = mapping.compiled
    if identity.connector_id not in rs.workloads:
        return {}
    loose = decide(replace(rs, workloads=frozenset()), identity, defaults)
    return {g.role_arn: g.via for g in loose.grants if g.role_arn not in granted}


def run_cases(mapping: MappingSettings, cases: Iterable[Case], defaults: GrantDefaults) -> list[CaseResult]:
    return [run_case(mapping, c, defaults) for c in cases]


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    """One identity's change for one role: ``gain``, ``lose`` or ``tags`` (old → new values)."""

    who: str
    role_arn: str
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        sign = {"gain": "+", "lose": "-", "tags": "~"}[self.kind]
        return f"{sign} {self.role_arn}" + (f" {self.detail}" if self.detail else "")


def describe(identity: Identity) -> str:
    return f"{identity.email or identity.subject} ({identity.connector_id}:{identity.subject})"


def _tag_change(old: Grant, new: Grant) -> str:
    keys = list(dict.fromkeys([*old.tags, *new.tags]))
    parts = [f"{k} {old.tags.get(k, '(none)')!r} -> {new.tags.get(k, '(none)')!r}" for k in keys
             if old.tags.get(k) != new.tags.get(k)]
    return "tags: " + ", ".join(parts) if parts else ""


def diff_identity(old: MappingSettings, new: MappingSettings, identity: Identity,
                  defaults: GrantDefaults) -> list[Change]:
    """What ``identity`` gains and loses (roles, tag values) going from ``old`` to ``new``."""
    before = {g.role_arn: g for g in decide(old, identity, defaults).grants}
    after = {g.role_arn: g for g in decide(new, identity, defaults).grants}
    who = describe(identity)
    out = [Change(who, a, "gain", f"(rule {after[a].via})") for a in after if a not in before]
    out += [Change(who, a, "lose", f"(was rule {before[a].via})") for a in before if a not in after]
    for a in (a for a in after if a in before):
        hubs = [[h.role_arn for h in g.hubs] for g in (before[a], after[a])]
        detail = "; ".join(x for x in (_tag_change(before[a], after[a]),
                                       f"hubs: {hubs[0]} -> {hubs[1]}" if hubs[0] != hubs[1] else "") if x)
        if detail:
            out.append(Change(who, a, "tags", detail))
    return out


def diff(old: MappingSettings, new: MappingSettings, identities: Iterable[Identity], defaults: GrantDefaults,
         on_each: Callable[[Identity, list[Change]], None] | None = None) -> list[Change]:
    """Every change, identity by identity (in the order given)."""
    out: list[Change] = []
    for ident in identities:
        changes = diff_identity(old, new, ident, defaults)
        if on_each is not None:
            on_each(ident, changes)
        out += changes
    return out


def audit_subjects(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The distinct ``who`` of the sign-ins and grant decisions in an audit trail (JSON lines), in order."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        who = rec.get("who") if isinstance(rec, dict) else None
        if isinstance(who, dict) and rec.get("type") in ("sign_in", "grant_decision", "credentials", "console"):
            key = (who.get("connector"), who.get("issuer"), who.get("subject"))
            seen.setdefault(key, who)
    return list(seen.values())
