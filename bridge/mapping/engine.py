"""The rules engine: identity → grants, with a reason for every rule. Pure: values in, values out.

Order of work for one identity:

1. **Match.** Candidate rules come from the index (exact matches) plus the unindexed rules; each
   is tested in file order. A rule for other ``connectors`` does not apply. A match may hold in
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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.aws.arn import RoleArn, parse_role_arn
from bridge.aws.limits import (
    MAX_TAGS,
    SESSION_NAME_RE,
    SOURCE_IDENTITY_RE,
    sanitize_session_name,
    sanitize_tag_value,
    tag_key_problem,
    tags_problems,
)
from bridge.identity import Grant, Identity
from bridge.mapping.compiler import (
    DEFAULT_ROLE_MAX,
    PROVIDER_ARN_RE,
    PROVIDER_NAME_RE,
    ROLE_NAME_RE,
    CGrant,
    RuleSet,
)
from bridge.mapping.model import MappingSettings
from bridge.mapping.paths import ClaimPath, View, parse_path, resolve
from bridge.mapping.template import Missing, Template

MAX_LABEL = 200


@dataclass(frozen=True)
class GrantDefaults:
    """What a rule does not say itself: token audience, AWS path, IAM SAML provider name."""

    audience: str
    path: str = "jwt"
    saml_provider: str = "FederationBridge"


@dataclass(frozen=True)
class Withheld:
    """A grant a matching rule would give but does not, and why.

    ``code``: ``mfa`` (sign in with MFA to get it; ``grant`` is what you would get), ``denied``
    (a deny rule), ``required_tag``, ``invalid`` (role or provider did not render to something
    AWS accepts), ``limits`` (the final AWS-limits check failed).
    """

    role_arn: str | None
    code: str
    reason: str
    grant: Grant | None = None

    def to_json(self) -> dict[str, Any]:
        return {"role_arn": self.role_arn, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class RuleResult:
    """What one rule did for one identity: matched or not, why, the grants it owns, notes."""

    rule: str
    matched: bool
    reason: str
    grants: tuple[Grant, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    withheld: tuple[Withheld, ...] = ()
    kind: str = "grant"  # or "deny"
    description: str = ""

    @property
    def grant(self) -> Grant | None:
        """The first grant this rule owns (most rules grant one role)."""
        return self.grants[0] if self.grants else None

    @property
    def outcome(self) -> str:
        """``no match`` | ``deny`` | ``granted`` | ``withheld`` | ``merged`` (its roles were already granted)."""
        if not self.matched:
            return "no match"
        if self.kind == "deny":
            return "deny"
        if self.grants:
            return "granted"
        return "withheld" if self.withheld else "merged"

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "matched": self.matched, "outcome": self.outcome, "reason": self.reason,
                "grants": [g.to_json() for g in self.grants], "withheld": [w.to_json() for w in self.withheld],
                "notes": list(self.notes)}


@dataclass
class Decision:
    """``results``: every rule (explain) or only the rules that matched (evaluate), in file order."""

    results: list[RuleResult]

    @property
    def grants(self) -> list[Grant]:
        return [g for r in self.results for g in r.grants]

    @property
    def withheld(self) -> list[tuple[str, Withheld]]:
        return [(r.rule, w) for r in self.results for w in r.withheld]

    @property
    def locked(self) -> list[Grant]:
        """Roles the identity would get by signing in with MFA (not granted otherwise, not denied)."""
        granted = {g.role_arn for g in self.grants}
        out: dict[str, Grant] = {}
        for _, w in self.withheld:
            if w.code == "mfa" and w.grant is not None and w.role_arn not in granted:
                out.setdefault(w.grant.role_arn, w.grant)
        return list(out.values())


# --------------------------------------------------------------------------- rendering one grant


@dataclass
class _Cand:
    rule: int
    arn: RoleArn
    grant: Grant
    required: set[str]  # lower-cased keys of required tags


def _text(t: Template | None, view: View, binding: Mapping[str, str]) -> str | Missing | None:
    return None if t is None else t.render(view, binding)


def _render(cg: CGrant, rs: RuleSet, view: View, binding: Mapping[str, str], d: GrantDefaults,
            rule_name: str, notes: list[str]) -> _Cand | Withheld:
    ident = view.identity
    # -- the role
    if cg.static_arn is not None:
        arn = cg.static_arn
    elif cg.role_arn is not None:
        text = cg.role_arn.render(view, binding)
        if isinstance(text, Missing):
            return Withheld(None, "invalid", f"role_arn: {text.reason}")
        try:
            arn = parse_role_arn(text)
        except ValueError:
            return Withheld(None, "invalid", f"role_arn rendered to {text[:200]!r}, which is not an IAM role ARN")
    else:
        assert cg.account is not None and cg.role is not None
        acct_ref, role = cg.account.render(view, binding), cg.role.render(view, binding)
        if isinstance(acct_ref, Missing):
            return Withheld(None, "invalid", f"account: {acct_ref.reason}")
        if isinstance(role, Missing):
            return Withheld(None, "invalid", f"role: {role.reason}")
        acct = rs.catalog.account_id(acct_ref)
        if acct is None:
            return Withheld(None, "invalid", f"account rendered to {acct_ref[:100]!r}: neither a 12-digit account id "
                                             "nor an alias in the catalog")
        if not ROLE_NAME_RE.match(role):
            return Withheld(None, "invalid", f"role rendered to {role[:100]!r}, which is not a role name")
        entry = rs.catalog.by_id.get(acct)
        arn = parse_role_arn(f"arn:{(entry.partition if entry else None) or rs.partition}:iam::{acct}:role/{role}")
    account = rs.catalog.by_id.get(arn.account_id)
    arn_text = str(arn)
    if account is not None and account.partition and arn.partition != account.partition:
        return Withheld(arn_text, "invalid", f"role is in partition {arn.partition}, but the catalog puts account "
                                             f"{arn.account_id} in {account.partition}")
    role_info = rs.catalog.role(arn)
    # -- durations: never above the role's declared maximum
    role_max = role_info.max_session_duration if role_info else None
    max_d = cg.duration_max or role_max or DEFAULT_ROLE_MAX
    if role_max is not None and max_d > role_max:
        notes.append(f"{arn.name}: max duration lowered to the role's max_session_duration {role_max}s")
        max_d = role_max
    default_d = cg.duration_default or min(3600, max_d)
    if default_d > max_d:
        notes.append(f"{arn.name}: default duration lowered to the maximum {max_d}s")
        default_d = max_d
    # -- label
    label = _text(cg.label, view, binding)
    if isinstance(label, Missing):
        notes.append(f"label: {label.reason}; using the role name")
        label = None
    label = (label or (role_info.label if role_info else None) or arn.name)[:MAX_LABEL]
    # -- session name and source identity (sanitized to [\w+=,.@-]{2,64})
    fallback = sanitize_session_name(ident.subject)
    raw_name = cg.session_name.render(view, binding)
    if isinstance(raw_name, Missing):
        notes.append(f"session name: {raw_name.reason}; using the subject")
        raw_name = ident.subject
    session_name = sanitize_session_name(raw_name, fallback=fallback)
    if session_name != raw_name:
        notes.append(f"session name from {cg.session_name.source} was sanitized")
    source_identity: str | None = None
    raw_source = _text(cg.source_identity, view, binding)
    if isinstance(raw_source, Missing):
        notes.append(f"source identity: {raw_source.reason}; none sent")
    elif raw_source is not None:
        source_identity = sanitize_session_name(raw_source, fallback=fallback)
        if source_identity != raw_source:
            notes.append(f"source identity from {cg.source_identity.source if cg.source_identity else ''} "
                         "was sanitized")
    # -- tags
    tags: dict[str, str] = {}
    lower: dict[str, str] = {}
    required: set[str] = set()
    for t in cg.tags:
        key = t.key.constant
        if key is None:
            rendered = t.key.render(view, binding)
            if isinstance(rendered, Missing):
                why = f"tag key {t.key.source!r}: {rendered.reason}"
                if t.required:
                    return Withheld(arn_text, "required_tag", f"required {why}")
                notes.append(f"{why}; tag dropped")
                continue
            key = sanitize_tag_value(rendered)[:128]
            if problem := tag_key_problem(key):
                if t.required:
                    return Withheld(arn_text, "required_tag", f"required tag {t.key.source!r}: {problem}")
                notes.append(f"tag key from {t.key.source!r} dropped: it cannot be made valid")
                continue
        value = t.value.render(view, binding)
        if isinstance(value, Missing):
            if t.required:
                return Withheld(arn_text, "required_tag", f"required tag {key!r}: {value.reason}")
            notes.append(f"tag {key!r} dropped: {value.reason}")
            continue
        clean = sanitize_tag_value(value)
        if t.required and not clean:
            return Withheld(arn_text, "required_tag", f"required tag {key!r} is empty")
        if clean != value:
            notes.append(f"tag {key!r}: value from {t.value.source} was sanitized")
        if key.lower() in lower:
            if tags[lower[key.lower()]] != clean:
                notes.append(f"tag {key!r} is set twice with different values; kept the first")
            continue
        lower[key.lower()] = key
        tags[key] = clean
        if t.required:
            required.add(key.lower())
    transitive: list[str] = []
    for tt in cg.transitive:
        k = tt.render(view, binding)
        if isinstance(k, Missing):
            notes.append(f"transitive key {tt.source!r}: {k.reason}")
        elif k.lower() in lower:
            if lower[k.lower()] not in transitive:
                transitive.append(lower[k.lower()])
        else:
            notes.append(f"transitive key {k[:128]!r} is not among this grant's tags; ignored")
    # -- SAML provider: a broken one withholds a SAML grant; a JWT grant never uses it (noted, default kept)
    path = cg.path or d.path
    provider_arn, provider_problem = _provider_arn(_text(cg.provider, view, binding), arn, d)
    if provider_problem is not None:
        if path == "saml":
            return Withheld(arn_text, "invalid", provider_problem)
        notes.append(f"{provider_problem}; the default provider is kept (this grant uses jwt)")
        provider_arn, _ = _provider_arn(None, arn, d)
    grant = Grant(
        role_arn=arn_text, account_id=arn.account_id, label=label, session_name=session_name, via=rule_name,
        audience=cg.audience or d.audience, provider_arn=provider_arn, source_identity=source_identity,
        tags=tags, transitive_keys=tuple(transitive), default_duration=default_d, max_duration=max_d,
        mfa_required=cg.mfa_required, path=path,
        account_alias=account.alias if account else "", account_label=account.label if account else "",
        console=cg.console or "",
    )
    if cg.mfa_required and not ident.mfa:
        return Withheld(arn_text, "mfa", "this role needs a sign-in with MFA; this sign-in did not use MFA", grant)
    return _Cand(-1, arn, grant, required)


def _provider_arn(text: str | Missing | None, arn: RoleArn, d: GrantDefaults) -> tuple[str, str | None]:
    """The SAML provider ARN for ``text`` (a name in the role's account, or an ARN), or why not."""
    if isinstance(text, Missing):
        return "", f"provider: {text.reason}"
    text = text or d.saml_provider
    if text.startswith("arn:"):
        if PROVIDER_ARN_RE.match(text):
            return text, None
        return "", f"provider rendered to {text[:200]!r}, not a SAML provider ARN"
    if PROVIDER_NAME_RE.match(text):
        return f"arn:{arn.partition}:iam::{arn.account_id}:saml-provider/{text}", None
    return "", f"provider rendered to {text[:128]!r}, not a SAML provider name"


# --------------------------------------------------------------------------- merging


@dataclass
class _Merged:
    owner: int
    arn: RoleArn
    grant: Grant
    tags: dict[str, str]
    lower: dict[str, str]
    transitive: list[str]
    required: set[str]
    contributors: list[int] = field(default_factory=list)


def _final_check(g: Grant) -> list[str]:
    problems = tags_problems(dict(g.tags), g.transitive_keys)
    if not SESSION_NAME_RE.match(g.session_name):
        problems.append("session name breaks AWS's pattern")
    if g.source_identity is not None and (not SOURCE_IDENTITY_RE.match(g.source_identity)
                                          or g.source_identity.lower().startswith("aws:")):
        problems.append("source identity breaks AWS's pattern")
    if not 900 <= g.default_duration <= g.max_duration <= 43200:
        problems.append("durations outside 900..max..43200")
    return problems


def decide(mapping: MappingSettings | RuleSet, identity: Identity, defaults: GrantDefaults, *,
           explain_all: bool = False) -> Decision:
    """Run the rules. ``explain_all`` tests every rule and words every reason (slower; for explain)."""
    rs: RuleSet = mapping if isinstance(mapping, RuleSet) else mapping.compiled
    view = View(identity)
    positions = range(len(rs.rules)) if explain_all else rs.candidates(view)
    reasons: dict[int, str] = {}
    matched: list[int] = []
    matched_set: set[int] = set()
    notes: dict[int, list[str]] = {}
    withheld: dict[int, list[Withheld]] = {}
    cands: list[_Cand] = []
    denies: list[int] = []
    for pos in positions:
        r = rs.rules[pos]
        if r.connectors is not None and identity.connector_id not in r.connectors:
            reasons[pos] = f"applies to connectors {sorted(r.connectors)}, not {identity.connector_id!r}"
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
                out = _render(cg, rs, view, binding, defaults, r.name, rule_notes)
                if isinstance(out, Withheld):
                    withheld.setdefault(pos, []).append(out)
                else:
                    out.rule = pos
                    cands.append(out)
    merged = _merge(rs, cands, notes, withheld)
    _apply_denies(rs, denies, merged, notes, withheld)
    owned: dict[int, list[Grant]] = {}
    for m in merged.values():
        g = _build(m)
        if problems := _final_check(g):
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


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge(rs: RuleSet, cands: list[_Cand], notes: dict[int, list[str]],
           withheld: dict[int, list[Withheld]]) -> dict[str, _Merged]:
    merged: dict[str, _Merged] = {}
    for c in cands:
        key = c.grant.role_arn
        m = merged.get(key)
        if m is None:
            lower = {k.lower(): k for k in c.grant.tags}
            merged[key] = _Merged(c.rule, c.arn, c.grant, dict(c.grant.tags), lower, list(c.grant.transitive_keys),
                                  set(c.required))
            continue
        owner = rs.rules[m.owner].name
        if c.rule != m.owner:
            m.contributors.append(c.rule)
            notes.setdefault(c.rule, []).append(f"{c.arn.name}: merged into the grant from rule {owner!r}")
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
        m.required |= c.required
    for m in list(merged.values()):
        if len(m.tags) > MAX_TAGS:
            keep = list(m.tags)[:MAX_TAGS]
            dropped = [k for k in m.tags if k not in keep]
            if any(k.lower() in m.required for k in dropped):
                del merged[m.grant.role_arn]
                withheld.setdefault(m.owner, []).append(Withheld(
                    m.grant.role_arn, "required_tag",
                    f"{len(m.tags)} tags; AWS allows {MAX_TAGS} and a required tag would be dropped"))
                continue
            notes.setdefault(m.owner, []).append(
                f"{m.arn.name}: {len(m.tags)} tags; AWS allows {MAX_TAGS}, dropped {len(dropped)}")
            m.tags = {k: m.tags[k] for k in keep}
            m.transitive = [k for k in m.transitive if k in m.tags]
    return merged


def _apply_denies(rs: RuleSet, denies: list[int], merged: dict[str, _Merged], notes: dict[int, list[str]],
                  withheld: dict[int, list[Withheld]]) -> None:
    if not denies:
        return
    for pos in denies:
        notes.setdefault(pos, []).append(f"denies {rs.rules[pos].deny.describe()}")  # type: ignore[union-attr]
    for key, m in list(merged.items()):
        by = next((p for p in denies if rs.rules[p].deny.denies(m.arn)), None)  # type: ignore[union-attr]
        if by is not None:
            del merged[key]
            withheld.setdefault(m.owner, []).append(Withheld(key, "denied", f"denied by rule {rs.rules[by].name!r}"))
            notes[by].append(f"denied {key}")
    for items in withheld.values():
        for i, w in enumerate(items):
            if w.code == "mfa" and w.grant is not None:
                arn = parse_role_arn(w.grant.role_arn)
                by = next((p for p in denies if rs.rules[p].deny.denies(arn)), None)  # type: ignore[union-attr]
                if by is not None:
                    items[i] = Withheld(w.role_arn, "denied", f"denied by rule {rs.rules[by].name!r}")


def _build(m: _Merged) -> Grant:
    g = m.grant
    if m.tags == dict(g.tags) and tuple(m.transitive) == g.transitive_keys:
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
