"""What the bridge sends for each role, read off the rules without any identity. Pure.

``roles_sent(rules, defaults)`` lists every role the rules and the catalog name — static role ARNs,
``account`` + ``role`` constants, catalog roles — plus any ``extra`` ARN, each with the rules that can
grant it and what those rules send (path, audience, SAML provider, tags, transitive keys, source
identity, longest session): a ``bridge.aws.iam_setup.RoleSent``. A templated grant
(``role_arn: "arn:aws:iam::{match.account}:role/{match.role}"``) counts for every listed role its
template can produce; the roles only claims name cannot be listed, and a note says so.

A role reached through a hub (role chaining, docs/many-accounts.md) is not assumed with the bridge's
token: its trust policy names the hub role, so it is not listed (a note says so); what its grants send
is counted for the chain's first hub instead, which the bridge's token or assertion reaches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.aws.arn import RoleArn, parse_role_arn
from bridge.aws.iam_setup import RoleSent
from bridge.aws.limits import HUB_DURATION
from bridge.mapping.render import provider_arn_for
from bridge.mapping.results import GrantDefaults
from bridge.mapping.ruleset import DEFAULT_ROLE_MAX, CGrant, RuleSet
from bridge.mapping.settings import MappingSettings
from bridge.mapping.template import Placeholder, Template


def _pattern(t: Template) -> re.Pattern[str]:
    """What ``t`` can render to: its constant parts, anything for each placeholder."""
    return re.compile("".join(".+" if isinstance(p, Placeholder) else re.escape(p) for p in t.parts), re.S)


def can_grant(cg: CGrant, rs: RuleSet, arn: RoleArn) -> bool:
    """Whether some identity could make ``cg`` render to ``arn``."""
    if cg.static_arn is not None:
        return str(cg.static_arn) == str(arn)
    if cg.role_arn is not None:
        return bool(_pattern(cg.role_arn).fullmatch(str(arn)))
    if cg.account is None or cg.role is None:
        return False
    entry = rs.catalog.by_id.get(arn.account_id)
    if arn.partition != ((entry.partition if entry else None) or rs.partition):
        return False
    if cg.account.constant is not None:
        if rs.catalog.account_id(cg.account.constant) != arn.account_id:
            return False
    elif not _pattern(cg.account).fullmatch(arn.account_id) and not any(
            _pattern(cg.account).fullmatch(a.alias) for a in rs.catalog.by_id.values() if a.id == arn.account_id):
        return False
    return bool(_pattern(cg.role).fullmatch(arn.path + arn.name))


@dataclass
class _Acc:
    """What the grants of one role send, gathered grant by grant."""

    rules: list[str]
    paths: set[str]
    audiences: set[str]
    providers: set[str]
    tag_keys: dict[str, str]  # lower-cased -> as written
    always: dict[str, str | None] | None  # None until the first grant
    constant_keys: bool
    transitive: dict[str, str]
    source_identity: bool
    max_duration: int
    mfa: bool | None = None  # whether every grant of the role itself (not as a hub) requires MFA; None: none yet


def _always_tags(cg: CGrant) -> dict[str, str | None]:
    """Tags this grant sends whenever it grants: constant key, and a constant or required value."""
    return {t.key.constant: t.value.constant for t in cg.tags
            if t.key.constant is not None and (t.value.constant is not None or t.required)}


def _add_path(acc: _Acc, rule: str, cg: CGrant, arn: RoleArn, d: GrantDefaults, notes: list[str]) -> None:
    path = cg.path or d.path
    acc.paths.add(path)
    if path == "jwt":
        acc.audiences.add(cg.audience or d.audience)
        return
    text = cg.provider.constant if cg.provider is not None else None
    if cg.provider is not None and text is None:
        notes.append(f"rule {rule}: the SAML provider of {arn} comes from claims ({cg.provider.source}); "
                     f"the default {d.saml_provider} is assumed")
    acc.providers.add(provider_arn_for(text, arn, d)[0] or provider_arn_for(None, arn, d)[0])


def _add_tags(acc: _Acc, cg: CGrant) -> None:
    for t in cg.tags:
        key = t.key.constant if t.key.constant is not None else t.key.source
        acc.tag_keys.setdefault(key.lower(), key)
        acc.constant_keys = acc.constant_keys and t.key.constant is not None
    for k in cg.transitive:
        key = k.constant if k.constant is not None else k.source
        acc.transitive.setdefault(key.lower(), key)
    mine = _always_tags(cg)
    if acc.always is None:
        acc.always = mine
    else:  # a tag is always sent only if every granting rule always sends it (any one may be the only match)
        acc.always = {k: (v if mine.get(k) == v else None) for k, v in acc.always.items() if k in mine}


def _add(acc: _Acc, rule: str, cg: CGrant, arn: RoleArn, rs: RuleSet, d: GrantDefaults, notes: list[str],
         *, as_hub: bool = False) -> None:
    if rule not in acc.rules:
        acc.rules.append(rule)
    _add_path(acc, rule, cg, arn, d, notes)
    _add_tags(acc, cg)
    acc.source_identity = acc.source_identity or cg.source_identity is not None
    if as_hub:  # the bridge holds a hub's session only for the next call: the shortest AWS allows
        acc.max_duration = max(acc.max_duration, HUB_DURATION)
        acc.mfa = False  # a hub is only a means: the target's own trust policy checks MFA (docs/step-up-mfa.md)
        return
    acc.mfa = cg.mfa_required and acc.mfa is not False
    info = rs.catalog.role(arn)
    role_max = info.max_session_duration if info else None
    max_d = cg.duration_max or role_max or DEFAULT_ROLE_MAX
    acc.max_duration = max(acc.max_duration, min(max_d, role_max) if role_max else max_d)


def _hubs(cg: CGrant, rs: RuleSet, arn: RoleArn) -> tuple[RoleArn, ...]:
    """The hubs before ``arn`` when ``cg`` grants it (first to last; none when it is assumed directly)."""
    info = rs.catalog.role(arn)
    via = cg.chain.via or (info.chain.via if info else None)
    return (*rs.catalog.chains.get(str(via), ()), via) if via is not None else ()


def _candidates(rs: RuleSet, extra: Iterable[str]) -> dict[str, RoleArn]:
    found: dict[str, RoleArn] = {}
    for r in rs.rules:
        for cg in r.grants:
            if cg.static_arn is not None:
                found.setdefault(str(cg.static_arn), cg.static_arn)
    for acct in rs.catalog.by_id.values():
        for role in acct.roles:
            arn = parse_role_arn(f"arn:{acct.partition or rs.partition}:iam::{acct.id}:role/{role}")
            found.setdefault(str(arn), arn)
    for text in extra:
        found.setdefault(str(parse_role_arn(text)), parse_role_arn(text))
    return found


def _sent(arn: RoleArn, acc: _Acc, rs: RuleSet) -> RoleSent:
    info = rs.catalog.role(arn)
    return RoleSent(
        arn=str(arn), partition=arn.partition, account=arn.account_id, path="/" + arn.path, name=arn.name,
        rules=tuple(acc.rules), label=(info.label or "") if info else "", paths=tuple(sorted(acc.paths)),
        audiences=tuple(sorted(acc.audiences)), saml_providers=tuple(sorted(acc.providers)),
        tag_keys=tuple(acc.tag_keys.values()), always_tags=dict(acc.always or {}), all_keys_constant=acc.constant_keys,
        transitive_keys=tuple(acc.transitive.values()), source_identity=acc.source_identity,
        max_duration=acc.max_duration, declared_max=info.max_session_duration if info else None,
        mfa_required=bool(acc.mfa))


def _reaches(rs: RuleSet, candidates: dict[str, RoleArn], account: str | None, used: set[tuple[int, int]],
             notes: list[str]) -> dict[str, list[tuple[str, CGrant, bool]]]:
    """Who the bridge's token reaches for each role: the role itself, or the first hub of its chain
    (rule name, grant, whether as a hub); grants used are added to ``used``, chained roles noted."""
    reaches: dict[str, list[tuple[str, CGrant, bool]]] = {}
    for text, arn in candidates.items():
        for r in rs.rules:
            for i, cg in enumerate(r.grants):
                if not can_grant(cg, rs, arn):
                    continue
                used.add((r.index, i))
                hubs = _hubs(cg, rs, arn)
                if hubs and (account is None or account in (arn.account_id, hubs[0].account_id)):
                    notes.append(f"{text}: reached through {' → '.join(str(h) for h in hubs)} (role chaining): its "
                                 "trust policy names the hub's role, not the bridge (docs/many-accounts.md); not set "
                                 "up here")
                if hubs:
                    reaches.setdefault(str(hubs[0]), []).append((r.name, cg, True))
                else:
                    reaches.setdefault(text, []).append((r.name, cg, False))
    return reaches


def requires_mfa(mapping: MappingSettings | RuleSet, role_arn: str) -> bool:
    """Whether some rule grants ``role_arn`` and every rule that can grant it requires MFA (a role reached through
    a hub included): then its trust policy may require ``bridge:mfa`` = ``true``."""
    rs = mapping.compiled if isinstance(mapping, MappingSettings) else mapping
    arn = parse_role_arn(role_arn)
    grants = [cg for r in rs.rules for cg in r.grants if can_grant(cg, rs, arn)]
    return bool(grants) and all(cg.mfa_required for cg in grants)


def roles_sent(mapping: MappingSettings | RuleSet, defaults: GrantDefaults, extra: Iterable[str] = (),
               account: str | None = None) -> tuple[list[RoleSent], list[str]]:
    """Every role the rules and the catalog name (and ``extra`` ARNs), in ``account`` if given, with what
    the bridge sends for it; and notes (catalog roles no rule grants, roles only claims name)."""
    rs = mapping.compiled if isinstance(mapping, MappingSettings) else mapping
    notes: list[str] = []
    out: list[RoleSent] = []
    used: set[tuple[int, int]] = set()
    candidates = _candidates(rs, extra)
    reaches = _reaches(rs, candidates, account, used, notes)
    for text, arn in candidates.items():
        if account is not None and arn.account_id != account:
            continue
        acc = _Acc([], set(), set(), set(), {}, None, True, {}, False, 0)
        for rule, cg, as_hub in reaches.get(text, []):
            _add(acc, rule, cg, arn, rs, defaults, notes, as_hub=as_hub)
        if not acc.rules:
            if not any(n.startswith(f"{text}: reached through") for n in notes):
                notes.append(f"{text}: no rule grants it; not set up")
            continue
        out.append(_sent(arn, acc, rs))
    for r in rs.rules:
        for i, cg in enumerate(r.grants):
            if cg.static_arn is None:
                what = cg.role_arn.source if cg.role_arn else f"account {getattr(cg.account, 'source', '')}, " \
                                                             f"role {getattr(cg.role, 'source', '')}"
                also = "also " if (r.index, i) in used else ""
                notes.append(f"rule {r.name} {also}grants roles named by claims ({what}): roles outside the "
                             "catalog are not set up; list them in the catalog or pass --role ARN")
    return out, list(dict.fromkeys(notes))
