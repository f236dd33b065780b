"""The rules engine: identity → grants, with a reason for every rule. Pure: values in, values out.

Order of work for one identity:

1. **Match.** Candidate rules come from the index (exact matches) plus the unindexed rules; each
   is tested in file order. A rule for other ``connectors`` does not apply; nor does a grant rule
   without ``connectors:`` to a workload connector's identity (``RuleSet.workloads``: a CI job of any
   repository must not match a rule written for people, on a group or a claim), while a ``deny`` rule
   without ``connectors:`` still applies to everyone (skipping it would widen access). A match may hold in
   several ways (a regex over many groups): each way is a *binding* of captures.
2. **Render.** Each grant of a matching rule is rendered once per binding: role ARN (or account +
   role via the catalog), label, session name, source identity, tags, durations. What cannot be
   rendered or made valid is dropped with a note — or, for the role itself or a ``required`` tag,
   withholds that grant with a reason. ``mfa_required`` without MFA withholds it as ``mfa``.
3. **Merge** (deterministic, by role ARN): the first rule in file order that grants a role sets
   its session name, source identity, label, durations, path, audience and provider; tags from
   every rule granting it merge, and a key set twice to different values keeps the first value
   (noted; ``load_mapping`` refuses the conflicts it can see statically). Transitive keys merge.
   More than 50 tags: the first 50 are kept (a dropped ``required`` tag withholds the grant).
4. **Deny.** A matching ``deny`` rule removes the roles it names, wherever it is in the file.
5. **Check** every grant against AWS's limits once more (``bridge.aws.limits``); nothing that
   breaks them leaves this module.

Step 2 lives in ``render``; the answers (``RuleResult``, ``Decision``, ``Withheld``) in ``results``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bridge.aws.arn import RoleArn, parse_role_arn
from bridge.aws.limits import (
    CHAINED_MAX_DURATION,
    MAX_RULE_TAGS,
    SESSION_NAME_RE,
    SOURCE_IDENTITY_RE,
    external_id_problem,
    policy_problems,
    tags_problems,
)
from bridge.domain.identity import Grant, Identity
from bridge.mapping.gcpause import gc_paused
from bridge.mapping.paths import ClaimPath, View, parse_path, resolve
from bridge.mapping.render import Candidate, render_grant
from bridge.mapping.results import Decision, GrantDefaults, RuleResult, Withheld
from bridge.mapping.ruleset import RuleSet
from bridge.mapping.settings import MappingSettings

__all__ = ["Decision", "GrantDefaults", "RuleResult", "Withheld", "decide", "evaluate", "explain", "resolve_claim"]


# --------------------------------------------------------------------------- merging


@dataclass(slots=True)
class _Merged:
    """One role's grant while merging. Most roles come from one rule: the tag bookkeeping is only
    made (``open``) when a second rule's grant merges in or the tags need cutting."""

    owner: int
    arn: RoleArn
    grant: Grant
    required: set[str]
    tags: dict[str, str] = field(default_factory=dict)
    lower: dict[str, str] = field(default_factory=dict)
    transitive: list[str] = field(default_factory=list)
    opened: bool = False
    contributors: list[int] = field(default_factory=list)

    def open(self) -> None:
        if not self.opened:
            self.opened = True
            self.tags = dict(self.grant.tags)
            self.lower = {k.lower(): k for k in self.grant.tags}
            self.transitive = list(self.grant.transitive_keys)


def _final_check(g: Grant, tag_checks: dict[Any, list[str]]) -> list[str]:
    """What about ``g`` breaks AWS's limits. ``tag_checks``: tag sets already checked in this decision
    (checking is per character, and one identity's grants mostly carry the same tags)."""
    problems: list[str] = []
    if g.tags or g.transitive_keys:
        key = (tuple(g.tags.items()), g.transitive_keys)
        found = tag_checks.get(key)
        if found is None:
            found = tag_checks[key] = tags_problems(dict(g.tags), g.transitive_keys)
        problems += found
    if not SESSION_NAME_RE.match(g.session_name):
        problems.append("session name breaks AWS's pattern")
    if g.source_identity is not None and (not SOURCE_IDENTITY_RE.match(g.source_identity)
                                          or g.source_identity.lower().startswith("aws:")):
        problems.append("source identity breaks AWS's pattern")
    if not 900 <= g.default_duration <= g.max_duration <= 43200:
        problems.append("durations outside 900..max..43200")
    if g.hubs and g.max_duration > CHAINED_MAX_DURATION:  # (g.chained, without the property call)
        problems.append("a chained role lasts at most 3600 s")
    # every role the issuance assumes (``g.hops``, without building them): the hubs, then the grant's role
    for hop in g.hubs:
        _hop_problems(hop.role_arn, hop.external_id, hop.policy, hop.policy_arns, problems)
    _hop_problems(g.role_arn, g.external_id, g.policy, g.policy_arns, problems)
    return problems


def _hop_problems(role_arn: str, external_id: str | None, policy: str | None, policy_arns: tuple[str, ...],
                  problems: list[str]) -> None:
    if policy is not None or policy_arns:
        problems += policy_problems(policy, policy_arns)
    if external_id is not None and external_id_problem(external_id):
        problems.append(f"the ExternalId for {role_arn} breaks AWS's pattern")


def decide(mapping: MappingSettings | RuleSet, identity: Identity, defaults: GrantDefaults, *,
           explain_all: bool = False) -> Decision:
    """Run the rules. ``explain_all`` tests every rule and words every reason (slower; for explain)."""
    rs: RuleSet = mapping if isinstance(mapping, RuleSet) else mapping.compiled
    with gc_paused():  # thousands of grants, all kept: collecting meanwhile re-scans the heap for nothing
        return _decide(rs, identity, defaults, explain_all)


def _decide(rs: RuleSet, identity: Identity, defaults: GrantDefaults, explain_all: bool) -> Decision:
    view = View(identity)
    positions = range(len(rs.rules)) if explain_all else rs.candidates(view)
    reasons: dict[int, str] = {}
    matched: list[int] = []
    matched_set: set[int] = set()
    notes: dict[int, list[str]] = {}
    withheld: dict[int, list[Withheld]] = {}
    cands: list[Candidate] = []
    denies: list[int] = []
    for pos in positions:
        r = rs.rules[pos]
        if r.connectors is not None and identity.connector_id not in r.connectors:
            reasons[pos] = f"applies to connectors {sorted(r.connectors)}, not {identity.connector_id!r}"
            continue
        if r.connectors is None and r.deny is None and identity.connector_id in rs.workloads:
            reasons[pos] = workload_skip_reason(identity.connector_id)
            continue
        o = r.cond.test(view, explain_all)
        reasons[pos] = o.reason
        if not o.ok:
            continue
        matched.append(pos)
        matched_set.add(pos)
        if r.deny is not None:
            denies.append(pos)
            continue
        rule_notes = notes.setdefault(pos, [])
        for binding in o.bindings:
            for cg in r.grants:
                out = render_grant(cg, rs, view, binding, defaults, r.name, rule_notes)
                if isinstance(out, Withheld):
                    withheld.setdefault(pos, []).append(out)
                else:
                    out.rule = pos
                    cands.append(out)
    merged = _merge(rs, cands, notes, withheld)
    _apply_denies(rs, denies, merged, notes, withheld)
    owned: dict[int, list[Grant]] = {}
    tag_checks: dict[Any, list[str]] = {}
    for m in merged.values():
        g = _build(m)
        if problems := _final_check(g, tag_checks):
            withheld.setdefault(m.owner, []).append(Withheld(g.role_arn, "limits", "; ".join(problems)))
            continue
        owned.setdefault(m.owner, []).append(g)
    shown = range(len(rs.rules)) if explain_all else matched
    results = []
    for pos in shown:
        r = rs.rules[pos]
        results.append(RuleResult(
            rule=r.name, matched=pos in matched_set, reason=reasons.get(pos, ""),
            grants=tuple(owned.get(pos, ())), notes=tuple(_dedupe(notes.get(pos, []))),
            withheld=tuple(withheld.get(pos, ())), kind="deny" if r.deny is not None else "grant",
            description=r.description))
    return Decision(results)


def workload_skip_reason(connector_id: str) -> str:
    """Why a grant rule without ``connectors:`` did not apply to the identity of workload connector ``connector_id``."""
    return (f"has no connectors:, and {connector_id!r} is a workload connector: a workload's identity is matched "
            f"only by rules that name its connector (add connectors: [{connector_id}])")


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge(rs: RuleSet, cands: list[Candidate], notes: dict[int, list[str]],
           withheld: dict[int, list[Withheld]]) -> dict[str, _Merged]:
    merged: dict[str, _Merged] = {}
    for c in cands:
        key = c.grant.role_arn
        m = merged.get(key)
        if m is None:
            merged[key] = _Merged(c.rule, c.arn, c.grant, c.required)
            continue
        m.open()
        owner = rs.rules[m.owner].name
        if c.rule != m.owner:
            m.contributors.append(c.rule)
            notes.setdefault(c.rule, []).append(f"{c.arn.name}: merged into the grant from rule {owner!r}")
            if _reach(c.grant) != _reach(m.grant):
                notes[c.rule].append(f"{c.arn.name}: its hubs or session policies differ from rule {owner!r}'s; "
                                     "the first rule's are kept")
        for k, v in c.grant.tags.items():
            have = m.lower.get(k.lower())
            if have is None:
                m.lower[k.lower()] = k
                m.tags[k] = v
            elif m.tags[have] != v:
                notes.setdefault(c.rule, []).append(
                    f"{c.arn.name}: tag {k!r} differs from the value rule {owner!r} set; kept the first")
        for k in c.grant.transitive_keys:
            spelled = m.lower[k.lower()]
            if spelled not in m.transitive:
                m.transitive.append(spelled)
        m.required = m.required | c.required  # (not in place: the set is the first candidate's own)
    for m in list(merged.values()):
        if len(m.grant.tags if not m.opened else m.tags) > MAX_RULE_TAGS:  # the bridge's own bridge:mfa takes one
            m.open()
            keep = list(m.tags)[:MAX_RULE_TAGS]
            dropped = [k for k in m.tags if k not in keep]
            if any(k.lower() in m.required for k in dropped):
                del merged[m.grant.role_arn]
                withheld.setdefault(m.owner, []).append(Withheld(
                    m.grant.role_arn, "required_tag",
                    f"{len(m.tags)} tags; rules may send {MAX_RULE_TAGS} and a required tag would be dropped"))
                continue
            notes.setdefault(m.owner, []).append(
                f"{m.arn.name}: {len(m.tags)} tags; rules may send {MAX_RULE_TAGS}, dropped {len(dropped)}")
            m.tags = {k: m.tags[k] for k in keep}
            m.transitive = [k for k in m.transitive if k in m.tags]
    return merged


def _reach(g: Grant) -> tuple[object, ...]:
    """How a grant reaches its role: hubs, ExternalId, session policies (the first rule's are kept)."""
    return tuple((h.role_arn, h.external_id, h.policy, h.policy_arns) for h in g.hops)


def _denied_by(rs: RuleSet, denies: list[int], g: Grant) -> tuple[int, str] | None:
    """The first deny rule that takes ``g``: by its role, or by a hub on its way (then which one)."""
    for p in denies:
        deny = rs.rules[p].deny
        assert deny is not None
        if deny.denies(parse_role_arn(g.role_arn)):
            return p, ""
        hub = next((h for h in g.hubs if deny.denies(parse_role_arn(h.role_arn))), None)
        if hub is not None:
            return p, f" (its hub {hub.role_arn})"
    return None


def _apply_denies(rs: RuleSet, denies: list[int], merged: dict[str, _Merged], notes: dict[int, list[str]],
                  withheld: dict[int, list[Withheld]]) -> None:
    if not denies:
        return
    for pos in denies:
        notes.setdefault(pos, []).append(f"denies {rs.rules[pos].deny.describe()}")  # type: ignore[union-attr]
    for key, m in list(merged.items()):
        found = _denied_by(rs, denies, m.grant)
        if found is not None:
            by, hub = found
            del merged[key]
            withheld.setdefault(m.owner, []).append(Withheld(key, "denied",
                                                             f"denied by rule {rs.rules[by].name!r}{hub}"))
            notes[by].append(f"denied {key}{hub}")
    for items in withheld.values():
        for i, w in enumerate(items):
            if w.code in ("mfa", "request") and w.grant is not None:
                found = _denied_by(rs, denies, w.grant)
                if found is not None:
                    items[i] = Withheld(w.role_arn, "denied", f"denied by rule {rs.rules[found[0]].name!r}{found[1]}")


def _build(m: _Merged) -> Grant:
    g = m.grant
    if not m.opened or (m.tags == dict(g.tags) and tuple(m.transitive) == g.transitive_keys):
        return g
    return replace(g, tags=dict(m.tags), transitive_keys=tuple(m.transitive))


# --------------------------------------------------------------------------- the public functions


def explain(mapping: MappingSettings, identity: Identity, *, default_audience: str, default_path: str = "jwt",
            saml_provider: str = "FederationBridge") -> list[RuleResult]:
    """For every rule in file order: matched or not, why, the grants it owns, what it withheld."""
    return decide(mapping, identity, GrantDefaults(default_audience, default_path, saml_provider),
                  explain_all=True).results


def evaluate(mapping: MappingSettings, identity: Identity, *, default_audience: str, default_path: str = "jwt",
             saml_provider: str = "FederationBridge") -> list[Grant]:
    """The grants ``identity`` gets, one per role, in the file order of the rules that own them."""
    return decide(mapping, identity, GrantDefaults(default_audience, default_path, saml_provider)).grants


def resolve_claim(identity: Identity, path: str) -> Any:
    """Value at ``path`` (``email``, ``groups``, ``claims.org.team``): one value, a tuple of several, or None."""
    p: ClaimPath = parse_path(path)
    values = resolve(identity, p)
    if p.root in ("groups", "amr"):
        return tuple(values)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)
