"""Rendering one compiled grant for one identity and one binding of captures. Pure.

In this order (notes are appended as each step goes, so their order is the explanation's):
the role (ARN, or account + role via the catalog), durations (never above the role's declared
maximum), label, session name and source identity (sanitized to ``[\\w+=,.@-]{2,64}``), tags
(key, value, sanitizing, case-duplicates), transitive keys, the SAML provider, and finally
``mfa_required``. What cannot be rendered or made valid is dropped with a note — or, for the role
itself, a ``required`` tag or a SAML grant's provider, withholds the grant with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from functools import lru_cache
from typing import Any

from bridge.aws.arn import RoleArn, parse_role_arn
from bridge.aws.limits import (
    CHAINED_MAX_DURATION,
    reserved_tag_problem,
    sanitize_session_name,
    sanitize_tag_value,
    tag_key_problem,
)
from bridge.domain.identity import Grant, Hop, Identity, grant_id_for
from bridge.mapping.chains import render_chain
from bridge.mapping.paths import View
from bridge.mapping.results import GrantDefaults, Withheld
from bridge.mapping.ruleset import (
    DEFAULT_ROLE_MAX,
    NO_CHAIN,
    PROVIDER_ARN_RE,
    PROVIDER_NAME_RE,
    ROLE_NAME_RE,
    CGrant,
    RoleInfo,
    RuleSet,
    TagT,
)
from bridge.mapping.template import Missing, Template

MAX_LABEL = 200


@dataclass(slots=True)
class Candidate:
    """A rendered grant, before merging: the rule that gave it, its role and the required tag keys."""

    rule: int
    arn: RoleArn
    grant: Grant
    required: set[str]  # lower-cased keys of required tags


@dataclass(frozen=True, slots=True)
class _Role:
    """What a grant's role decides: its ARN, catalog entry, chain, durations and provider — and the
    notes and reasons to withhold that go with them, in the places they come in the explanation."""

    arn: RoleArn
    role_info: RoleInfo | None
    fields: dict[str, Any]  # every Grant field in order (those the role sets, defaults for the others), then its id
    duration_notes: tuple[str, ...]
    provider_notes: tuple[str, ...]
    late: Withheld | None  # withholds the grant once its tags rendered (passthrough, provider)


def _role(cg: CGrant, rs: RuleSet, view: View, binding: Mapping[str, str], d: GrantDefaults) -> _Role | Withheld:
    arn = _role_arn(cg, rs, view, binding)
    if isinstance(arn, Withheld):
        return arn
    account = rs.catalog.by_id.get(arn.account_id)
    arn_text = str(arn)
    if account is not None and account.partition and arn.partition != account.partition:
        return Withheld(arn_text, "invalid", f"role is in partition {arn.partition}, but the catalog puts account "
                                             f"{arn.account_id} in {account.partition}")
    role_info = rs.catalog.role(arn)
    chained = render_chain(cg.chain, role_info, arn, rs.catalog, view, binding)
    if isinstance(chained, Withheld):
        return chained
    hubs, external_id, policy, policy_arns = chained
    duration_notes: list[str] = []
    default_d, max_d = _durations(cg, arn, role_info, duration_notes, chained=bool(hubs))
    path = cg.path or d.path
    provider_notes: list[str] = []
    late = _passthrough_problem(arn_text, d, hubs) if path == "passthrough" else None
    provider_arn: str | Withheld = ""
    if late is None:
        # A chain's first role is the one assumed with the bridge's token or assertion: its account holds the provider.
        provider_arn = _provider(cg, view, binding, parse_role_arn(hubs[0].role_arn) if hubs else arn, d, path,
                                 provider_notes)
        if isinstance(provider_arn, Withheld):
            late, provider_arn = provider_arn, ""
    fields_ = {**_GRANT_FIELDS, "role_arn": arn_text, "account_id": arn.account_id,
               "audience": cg.audience or d.audience, "provider_arn": provider_arn, "default_duration": default_d,
               "max_duration": max_d, "mfa_required": cg.mfa_required, "path": path,
               "account_alias": account.alias if account else "", "account_label": account.label if account else "",
               "console": cg.console or "", "hubs": hubs, "external_id": external_id, "policy": policy,
               "policy_arns": policy_arns,
               # Grant.id (a cached property: the instance's dict answers it): one digest per role and rule
               # set for a constant role, not one per grant shown (the portal asks for every one)
               "id": grant_id_for(arn_text)}
    return _Role(arn, role_info, fields_, tuple(duration_notes), tuple(provider_notes), late)


def _fixed_role(cg: CGrant, rs: RuleSet, view: View, d: GrantDefaults) -> _Role | Withheld | None:
    """``_role`` once per rule set and defaults when nothing in it depends on the identity (a constant role
    with no chain or templated provider: the 5,000 grants of a catalog); None otherwise."""
    table = view.roles
    if table is None:  # once per decision: the defaults are the same for all its grants
        table = view.roles = rs.fixed.setdefault(d, {})
    hit: _Role | Withheld | bool | None = table.get(id(cg))
    if hit is None:
        role_info = rs.catalog.role(cg.static_arn) if cg.static_arn is not None else None
        fixed = (cg.static_arn is not None and cg.chain is NO_CHAIN
                 and (cg.provider is None or cg.provider.constant is not None)
                 and (role_info is None or role_info.chain is NO_CHAIN))
        hit = table[id(cg)] = _role(cg, rs, view, {}, d) if fixed else False  # False: worked out per identity
    return None if isinstance(hit, bool) else hit


def warm_fixed_roles(rs: RuleSet, d: GrantDefaults) -> int:
    """Work out every identity-independent role of ``rs`` under ``d`` now (``_fixed_role``'s table), so the
    first decision after a rules reload or a worker's start does not: 5,000 catalog roles are ~40 % of a
    cold 5,000-grant decision. Called off the request path (at startup, after each reload); returns how many."""
    view = View(Identity(connector_id="", subject="warm", issuer=""))  # a fixed role reads nothing of it
    for r in rs.rules:
        for cg in r.grants:
            _fixed_role(cg, rs, view, d)
    return len(view.roles or {})


def render_grant(cg: CGrant, rs: RuleSet, view: View, binding: Mapping[str, str], d: GrantDefaults,
                 rule_name: str, notes: list[str]) -> Candidate | Withheld:
    """``cg`` for ``view`` with ``binding``: a candidate grant, or what withholds it. Appends to ``notes``."""
    ident = view.identity
    role = _fixed_role(cg, rs, view, d) or _role(cg, rs, view, binding, d)
    if isinstance(role, Withheld):
        return role
    notes += role.duration_notes
    arn_text = role.fields["role_arn"]
    label = _label(cg, view, binding, role.arn, role.role_info, notes)
    session_name, source_identity = _session_fields(cg, view, binding, ident, notes)
    rendered = _tags(cg, view, binding, arn_text, notes)
    if isinstance(rendered, Withheld):
        return rendered
    tags, lower, required = rendered
    transitive = _transitive(cg, view, binding, lower, notes)
    if role.late is not None:
        return role.late
    notes += role.provider_notes
    grant = _grant({**role.fields, "label": label, "session_name": session_name, "via": rule_name,
                    "source_identity": source_identity, "tags": tags, "transitive_keys": tuple(transitive)})
    if cg.mfa_required and not ident.mfa:
        return Withheld(arn_text, "mfa", "this role needs a sign-in with MFA; this sign-in did not use MFA", grant,
                        cg.request)  # on request: the rule still offers it (an approval lives on)
    if cg.request is not None:
        return Withheld(arn_text, "request", "granted on request: ask for it with a reason; an approver decides "
                                             "(an approved request gives it for its window)", grant, cg.request)
    return Candidate(-1, role.arn, grant, required)


# Every field of Grant in order, with its default (the five without one are always given).
_GRANT_FIELDS = {f.name: None if f.default is MISSING else f.default for f in fields(Grant)}
_FIRST = next(iter(_GRANT_FIELDS))
_new, _set = object.__new__, object.__setattr__


def new_grant(**values: Any) -> Grant:
    """``Grant(**values)``, at a sixth of the cost. Grant is frozen, so its ``__init__`` sets each of its
    24 fields through ``object.__setattr__`` (4 µs a grant: 20 ms of a 5,000-grant decision). Here the
    first field is set so, then the rest at once, in field order, which keeps the instance's dict the
    compact one ``__init__`` makes (keys shared by every Grant). ``test_mapping`` checks both build the same."""
    return _grant({**_GRANT_FIELDS, "tags": {}, **values})


def _grant(state: dict[str, Any]) -> Grant:
    """A Grant of ``state``: every field, in field order."""
    g = _new(Grant)
    _set(g, _FIRST, state[_FIRST])
    g.__dict__.update(state)
    return g


def _passthrough_problem(arn_text: str, d: GrantDefaults, hubs: tuple[Hop, ...]) -> Withheld | None:
    """Why a ``path: passthrough`` grant cannot be given: nothing to redeem, or a hub on the way."""
    if not d.passthrough:
        return Withheld(arn_text, "no_passthrough", "this grant redeems the identity provider's own ID token "
                                                    "(path: passthrough), but this sign-in's connector has no "
                                                    "aws_passthrough: AWS would have nothing to redeem")
    if hubs:
        return Withheld(arn_text, "invalid", "a path: passthrough grant redeems the IdP's own token and cannot be "
                                             f"reached through a hub ({hubs[-1].label})")
    return None


def _text(t: Template | None, view: View, binding: Mapping[str, str]) -> str | Missing | None:
    return None if t is None else t.render(view, binding)


# --------------------------------------------------------------------------- the role


def _role_arn(cg: CGrant, rs: RuleSet, view: View, binding: Mapping[str, str]) -> RoleArn | Withheld:
    if cg.static_arn is not None:
        return cg.static_arn
    if cg.role_arn is None:
        return _catalog_arn(cg, rs, view, binding)
    text = cg.role_arn.render(view, binding)
    if isinstance(text, Missing):
        return Withheld(None, "invalid", f"role_arn: {text.reason}")
    try:
        return parse_role_arn(text)
    except ValueError:
        return Withheld(None, "invalid", f"role_arn rendered to {text[:200]!r}, which is not an IAM role ARN")


def _catalog_arn(cg: CGrant, rs: RuleSet, view: View, binding: Mapping[str, str]) -> RoleArn | Withheld:
    """``account`` (id or alias) + ``role`` → the role's ARN, in the account's partition."""
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
    return parse_role_arn(f"arn:{(entry.partition if entry else None) or rs.partition}:iam::{acct}:role/{role}")


# --------------------------------------------------------------------------- durations, label, session fields


def _durations(cg: CGrant, arn: RoleArn, role_info: RoleInfo | None, notes: list[str], *,
               chained: bool = False) -> tuple[int, int]:
    """(default, max): never above the role's declared maximum, nor above 1 h when reached through a hub."""
    role_max = role_info.max_session_duration if role_info else None
    max_d = cg.duration_max or role_max or DEFAULT_ROLE_MAX
    if role_max is not None and max_d > role_max:
        notes.append(f"{arn.name}: max duration lowered to the role's max_session_duration {role_max}s")
        max_d = role_max
    if chained and max_d > CHAINED_MAX_DURATION:
        notes.append(f"{arn.name}: reached through a hub (role chaining), so AWS allows at most "
                     f"{CHAINED_MAX_DURATION}s: max duration lowered from {max_d}s")
        max_d = CHAINED_MAX_DURATION
    default_d = cg.duration_default or min(3600, max_d)
    if default_d > max_d:
        notes.append(f"{arn.name}: default duration lowered to the maximum {max_d}s")
        default_d = max_d
    return default_d, max_d


def _label(cg: CGrant, view: View, binding: Mapping[str, str], arn: RoleArn, role_info: RoleInfo | None,
           notes: list[str]) -> str:
    label = _text(cg.label, view, binding)
    if isinstance(label, Missing):
        notes.append(f"label: {label.reason}; using the role name")
        label = None
    return (label or (role_info.label if role_info else None) or arn.name)[:MAX_LABEL]


def _session_fields(cg: CGrant, view: View, binding: Mapping[str, str], ident: Identity,
                    notes: list[str]) -> tuple[str, str | None]:
    """Session name (the subject when it cannot render) and source identity (none then), sanitized."""
    raw_name = cg.session_name.render(view, binding)
    if isinstance(raw_name, Missing):
        notes.append(f"session name: {raw_name.reason}; using the subject")
        raw_name = ident.subject
    session_name = _sanitized(view, raw_name)
    if session_name != raw_name:
        notes.append(f"session name from {cg.session_name.source} was sanitized")
    source_identity: str | None = None
    raw_source = _text(cg.source_identity, view, binding)
    if isinstance(raw_source, Missing):
        notes.append(f"source identity: {raw_source.reason}; none sent")
    elif raw_source is not None:
        source_identity = _sanitized(view, raw_source)
        if source_identity != raw_source:
            notes.append(f"source identity from {cg.source_identity.source if cg.source_identity else ''} "
                         "was sanitized")
    return session_name, source_identity


def _sanitized(view: View, raw: str) -> str:
    """``raw`` made a valid session name (the subject's when too little is left), once per identity: the
    5,000 grants of one person mostly share one session name."""
    hit = view.sanitized.get(("name", raw))
    if hit is None:
        fallback = sanitize_session_name(view.identity.subject)
        hit = view.sanitized["name", raw] = sanitize_session_name(raw, fallback=fallback)
    return hit


def _tag_text(view: View, raw: str) -> str:
    """``sanitize_tag_value(raw)``, once per identity (its grants mostly carry the same tag values)."""
    hit = view.sanitized.get(("tag", raw))
    if hit is None:
        hit = view.sanitized["tag", raw] = sanitize_tag_value(raw)
    return hit


# --------------------------------------------------------------------------- tags


# (tags, lower-cased key -> key as kept, lower-cased keys of required tags)
_Tags = tuple[dict[str, str], dict[str, str], set[str]]


def _tags(cg: CGrant, view: View, binding: Mapping[str, str], arn_text: str, notes: list[str]) -> _Tags | Withheld:
    """The grant's tags; a tag that cannot be rendered is dropped (noted) — or withholds the grant when required.
    A key set twice (ignoring case) keeps the first value."""
    tags: dict[str, str] = {}
    lower: dict[str, str] = {}
    required: set[str] = set()
    for t in cg.tags:
        key = t.key.constant if t.key.constant is not None else _tag_key(t, view, binding, arn_text, notes)
        if key is None:
            continue
        if isinstance(key, Withheld):
            return key
        clean = _tag_value(t, key, view, binding, arn_text, notes)
        if clean is None:
            continue
        if isinstance(clean, Withheld):
            return clean
        if key.lower() in lower:
            if tags[lower[key.lower()]] != clean:
                notes.append(f"tag {key!r} is set twice with different values; kept the first")
            continue
        lower[key.lower()] = key
        tags[key] = clean
        if t.required:
            required.add(key.lower())
    return tags, lower, required


def _tag_key(t: TagT, view: View, binding: Mapping[str, str], arn_text: str,
             notes: list[str]) -> str | Withheld | None:
    """A templated key, rendered and made valid; None: the tag is dropped (noted)."""
    rendered = t.key.render(view, binding)
    if isinstance(rendered, Missing):
        why = f"tag key {t.key.source!r}: {rendered.reason}"
        if t.required:
            return Withheld(arn_text, "required_tag", f"required {why}")
        notes.append(f"{why}; tag dropped")
        return None
    key = _tag_text(view, rendered)[:128]
    if problem := tag_key_problem(key) or reserved_tag_problem(key):  # a claim may not forge bridge:mfa
        if t.required:
            return Withheld(arn_text, "required_tag", f"required tag {t.key.source!r}: {problem}")
        notes.append(f"tag key from {t.key.source!r} dropped: it cannot be made valid")
        return None
    return key


def _tag_value(t: TagT, key: str, view: View, binding: Mapping[str, str], arn_text: str,
               notes: list[str]) -> str | Withheld | None:
    """The value, sanitized; None: the tag is dropped (noted)."""
    value = t.value.render(view, binding)
    if isinstance(value, Missing):
        if t.required:
            return Withheld(arn_text, "required_tag", f"required tag {key!r}: {value.reason}")
        notes.append(f"tag {key!r} dropped: {value.reason}")
        return None
    clean = _tag_text(view, value)
    if t.required and not clean:
        return Withheld(arn_text, "required_tag", f"required tag {key!r} is empty")
    if clean != value:
        notes.append(f"tag {key!r}: value from {t.value.source} was sanitized")
    return clean


def _transitive(cg: CGrant, view: View, binding: Mapping[str, str], lower: dict[str, str],
                notes: list[str]) -> list[str]:
    """Transitive keys among this grant's tags (spelled as the tag keys are)."""
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
    return transitive


# --------------------------------------------------------------------------- SAML provider


def _provider(cg: CGrant, view: View, binding: Mapping[str, str], arn: RoleArn, d: GrantDefaults, path: str,
              notes: list[str]) -> str | Withheld:
    """A broken provider withholds a SAML grant; a JWT grant never uses it (noted, default kept)."""
    provider_arn, provider_problem = provider_arn_for(_text(cg.provider, view, binding), arn, d)
    if provider_problem is None:
        return provider_arn
    if path == "saml":
        return Withheld(str(arn), "invalid", provider_problem)
    notes.append(f"{provider_problem}; the default provider is kept (this grant uses jwt)")
    return provider_arn_for(None, arn, d)[0]


def provider_arn_for(text: str | Missing | None, arn: RoleArn, d: GrantDefaults) -> tuple[str, str | None]:
    """The SAML provider ARN for ``text`` (a name in the role's account, or an ARN), or why not."""
    if isinstance(text, Missing):
        return "", f"provider: {text.reason}"
    text = text or d.saml_provider
    if text.startswith("arn:"):
        if PROVIDER_ARN_RE.match(text):
            return text, None
        return "", f"provider rendered to {text[:200]!r}, not a SAML provider ARN"
    if _provider_name(text):
        return f"arn:{arn.partition}:iam::{arn.account_id}:saml-provider/{text}", None
    return "", f"provider rendered to {text[:128]!r}, not a SAML provider name"


@lru_cache(maxsize=256)
def _provider_name(text: str) -> bool:
    """Whether ``text`` is a SAML provider name (asked once per grant: mostly the one default name)."""
    return PROVIDER_NAME_RE.match(text) is not None
