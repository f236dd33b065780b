"""Role chaining and session policies in the rules (docs/rules.md "Hubs, chains and vendors"). Pure.

At load: ``via`` names a hub, a role of the accounts catalog (``<account id or alias>/<role name>`` or its
ARN); a catalog role may name its own hub, so chains are followed through the catalog (``catalog_chains``:
no loop, at most ``max_hops`` sts:AssumeRole calls). An ExternalId must fit STS's pattern and length
(docs/aws-rules.md §7.1) and is never put in a message. A session policy is a JSON object (a YAML
mapping, or its JSON text) whose string values are templates; constant policies are checked against
§7.3 at load, templated ones again when rendered.

At render (``render_chain``): the hubs of the role a grant rendered to, each a ``Hop``; the target's
ExternalId and session policies (the grant's own, else its catalog role's). A claim value that would put
an IAM wildcard or policy variable (``*``, ``?``, ``$``) into a policy withholds the grant: a user's
e-mail must never widen the S3 prefix it is meant to narrow.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

from bridge.aws.arn import RoleArn, parse_role_arn
from bridge.aws.limits import MAX_POLICY_ARNS, POLICY_ARN_RE, external_id_problem, policy_problems
from bridge.domain.identity import Hop
from bridge.mapping.model import ChainFields
from bridge.mapping.paths import View
from bridge.mapping.results import Withheld
from bridge.mapping.ruleset import NO_CHAIN, Catalog, ChainT, PolicyT, RoleInfo
from bridge.mapping.template import Missing, Template

Problem = Callable[[str, str], None]  # (where, message)
Tmpl = Callable[[str, str], "Template | None"]  # (text, where) → template, problems reported
_WILD = "*?$"  # IAM wildcards and the start of a policy variable


# --------------------------------------------------------------------------- load: hubs


def hub_arn(ref: str, catalog: Catalog, partition: str) -> RoleArn | str:
    """The catalog role a ``via`` names, or why it names none."""
    if "{" in ref:
        return f"{ref!r}: via names one hub, it is not a template"
    if ref.startswith("arn:"):
        try:
            arn = parse_role_arn(ref)
        except ValueError as e:
            return str(e)
    else:
        acct_ref, sep, role = ref.partition("/")
        acct = catalog.account_id(acct_ref) if sep and role else None
        if not sep or not role:
            return f"{ref!r} is neither <account id or alias>/<role name> nor a role ARN"
        if acct is None:
            return f"{acct_ref!r} is neither a 12-digit account id nor an alias in the accounts catalog"
        entry = catalog.by_id.get(acct)
        try:
            arn = parse_role_arn(f"arn:{(entry.partition if entry else None) or partition}:iam::{acct}:role/{role}")
        except ValueError as e:
            return str(e)
    if catalog.role(arn) is None:
        return (f"unknown hub {ref!r}: no role {arn.path}{arn.name} in account {arn.account_id} of the accounts "
                "catalog (declare the hub under accounts.<id>.roles)")
    return arn


def compile_chain(spec: ChainFields, via: RoleArn | None, where: str, tmpl: Tmpl, problem: Problem, *,
                  catalog: bool) -> ChainT:
    """ExternalId, policy and policy ARNs of a grant or a catalog role, with its hub ``via`` (resolved by the
    caller with ``hub_arn``)."""
    if spec.external_id is not None and (why := external_id_problem(spec.external_id)):
        problem(f"{where}.external_id", why)  # never the value itself
    policy = compile_policy(spec.policy, f"{where}.policy", tmpl, problem, catalog=catalog) \
        if spec.policy is not None else None
    if len(spec.policy_arns) > MAX_POLICY_ARNS:
        problem(f"{where}.policy_arns", f"{len(spec.policy_arns)} policy ARNs; AWS takes at most {MAX_POLICY_ARNS}")
    for i, arn in enumerate(spec.policy_arns):
        if not POLICY_ARN_RE.match(arn):
            problem(f"{where}.policy_arns[{i}]", f"{arn[:200]!r} is not a managed policy ARN "
                                                 "(arn:aws:iam::<account id or aws>:policy/Name)")
    if via is None and spec.external_id is None and policy is None and not spec.policy_arns:
        return NO_CHAIN
    return ChainT(via, spec.external_id, policy, tuple(spec.policy_arns))


def catalog_chains(catalog: Catalog, partition: str, problem: Problem, unresolved: set[str]) -> None:
    """Follow every catalog role's ``via`` to the role with none: loops and over-long chains are
    problems; ``catalog.chains`` gets each chain (the hubs, first to last). ``unresolved``: the roles
    (``<account>/<name>``) whose ``via`` named no hub (already a problem)."""
    for acct in catalog.by_id.values():
        for name, info in acct.roles.items():
            if info.chain.via is None:
                if info.chain.external_id is not None and f"{acct.id}/{name}" not in unresolved:
                    problem(f"accounts.{acct.id}.roles.{name}.external_id", _EXTERNAL_ID_WITHOUT_VIA)
                continue
            target = parse_role_arn(f"arn:{acct.partition or partition}:iam::{acct.id}:role/{name}")
            hubs: list[RoleArn] = []
            seen = [str(target)]
            hub: RoleArn | None = info.chain.via
            while hub is not None:
                if str(hub) in seen:
                    problem(f"accounts.{acct.id}.roles.{name}.via",
                            f"the chain loops: {' via '.join([*seen, str(hub)])}")
                    break
                seen.append(str(hub))
                hubs.insert(0, hub)
                hub_info = catalog.role(hub)
                hub = hub_info.chain.via if hub_info is not None else None
            else:
                if len(hubs) > catalog.max_hops:
                    problem(f"accounts.{acct.id}.roles.{name}.via",
                            f"{len(hubs)} sts:AssumeRole calls to reach it; mapping.max_hops allows {catalog.max_hops}")
                catalog.chains[str(target)] = tuple(hubs)


_EXTERNAL_ID_WITHOUT_VIA = ("an ExternalId goes with sts:AssumeRole, so only with a role reached through a hub: "
                            "add via (the hub whose role the vendor's trust policy names)")


def grant_chain_problems(chain: ChainT, static: RoleArn | None, role: RoleInfo | None, catalog: Catalog,
                         *, path: str | None, console: str | None, durations: tuple[int | None, int | None]
                         ) -> list[tuple[str, str]]:
    """What a grant's chain makes wrong, seen at load: (field, message) pairs."""
    via = chain.via or (role.chain.via if role else None)
    out: list[tuple[str, str]] = []
    if via is None:
        if chain.external_id is not None:
            out.append(("external_id", _EXTERNAL_ID_WITHOUT_VIA))
        return out
    if path == "passthrough":
        out.append(("via", "a path: passthrough grant redeems the IdP's own token and cannot be chained"))
    if console == "saml_post":
        out.append(("console", "a chained role signs in to the console through the federation endpoint only "
                               "(AWS's SAML sign-in cannot call sts:AssumeRole): drop console: saml_post"))
    if any(d is not None and d > 3600 for d in durations):
        out.append(("duration", "a role reached through a hub (role chaining) lasts at most 3600 s: AWS refuses more"))
    if static is not None:
        hubs = (*catalog.chains.get(str(via), ()), via)
        if str(static) in {str(h) for h in hubs}:
            out.append(("via", f"the chain loops: {' via '.join(str(h) for h in (static, *reversed(hubs)))}"))
        elif len(hubs) > catalog.max_hops:
            out.append(("via", f"{len(hubs)} sts:AssumeRole calls to reach it; mapping.max_hops allows "
                               f"{catalog.max_hops}"))
    return out


# --------------------------------------------------------------------------- load: policies


def compile_policy(raw: Any, where: str, tmpl: Tmpl, problem: Problem, *, catalog: bool = False) -> PolicyT | None:
    """A session policy (a mapping, or its JSON text) → its tree of templates; problems reported."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as e:
            problem(where, f"not JSON ({getattr(e, 'msg', e)}); write the policy as a YAML mapping or JSON text")
            return None
    if not isinstance(raw, dict):
        problem(where, "a session policy is a JSON object with a Statement")
        return None
    if "Statement" not in raw:
        problem(where, "a session policy needs a Statement")
    broken = [0]  # values that did not compile (each already a problem)

    def walk(node: Any, at: str) -> Any:
        if isinstance(node, str):
            t = tmpl(node, at)
            if t is None or (catalog and t.uses_match):
                if t is not None:
                    problem(at, "a catalog role's policy cannot use {match.…}: no rule's match is at hand")
                broken[0] += 1
            return t
        if isinstance(node, dict):
            bad = [k for k in node if not isinstance(k, str)]
            for k in bad:
                problem(at, f"key {k!r} must be text (quote it)")
                broken[0] += 1
            return {k: walk(v, f"{at}.{k}") for k, v in node.items() if isinstance(k, str)}
        if isinstance(node, list):
            return [walk(v, f"{at}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, datetime.date):
            problem(at, "quote this value (\"2012-10-17\"): YAML reads it as a date")
            broken[0] += 1
        return node

    tree = walk(raw, where)
    if broken[0]:
        return None
    skeleton = _dump(_fill(tree, lambda t: "".join(p for p in t.parts if isinstance(p, str))))
    constant = skeleton if all(_constant(tree)) else None
    for p in policy_problems(skeleton):
        problem(where, p + ("" if constant is not None else " (already before any claim is filled in)"))
    return PolicyT(tree, constant)


def _constant(node: Any) -> list[bool]:
    if isinstance(node, Template):
        return [node.constant is not None]
    if isinstance(node, dict):
        return [c for v in node.values() for c in _constant(v)]
    if isinstance(node, list):
        return [c for v in node for c in _constant(v)]
    return [True]


def _fill(node: Any, text: Callable[[Template], str]) -> Any:
    if isinstance(node, Template):
        return text(node)
    if isinstance(node, dict):
        return {k: _fill(v, text) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, text) for v in node]
    return node


def _dump(doc: Any) -> str:
    """Compact JSON (no whitespace between tokens), as sent to STS."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- render


class _Stop(Exception):
    def __init__(self, missing: Missing) -> None:
        self.missing = missing


def render_policy(p: PolicyT, view: View, binding: Mapping[str, str]) -> str | Missing:
    """The policy's compact JSON for this identity, or why it cannot be made (a value missing, or a claim
    that would put a wildcard or a policy variable into it)."""
    if p.constant is not None:
        return p.constant

    def one(t: Template) -> str:
        out = t.render(view, binding)
        if isinstance(out, Missing):
            raise _Stop(out)
        fixed = sum(part.count(c) for part in t.parts if isinstance(part, str) for c in _WILD)
        if sum(out.count(c) for c in _WILD) != fixed:
            names = ", ".join(f"{{{ph.source}}}" for ph in t.placeholders)
            raise _Stop(Missing(f"the value of {names} holds *, ? or $, which IAM would read as a wildcard or a "
                                "policy variable in the policy"))
        return out

    try:
        return _dump(_fill(p.tree, one))
    except _Stop as e:
        return e.missing


Rendered = tuple[tuple[Hop, ...], str | None, str | None, tuple[str, ...]]
_DIRECT: Rendered = ((), None, None, ())


def render_chain(chain: ChainT, role: RoleInfo | None, arn: RoleArn, catalog: Catalog, view: View,
                 binding: Mapping[str, str]) -> Rendered | Withheld:
    """(hubs, the target's ExternalId, its policy, its policy ARNs) for a grant that rendered to ``arn``."""
    own = role.chain if role is not None else NO_CHAIN
    if chain is NO_CHAIN and own is NO_CHAIN:
        return _DIRECT  # the common case: no hub, no session policy — nothing to render or check
    via = chain.via or own.via
    policy_t = chain.policy or own.policy
    arns = chain.policy_arns or own.policy_arns
    policy = render_policy(policy_t, view, binding) if policy_t is not None else None
    if isinstance(policy, Missing):
        return Withheld(str(arn), "invalid", f"session policy: {policy.reason}")
    if problems := policy_problems(policy, arns):
        return Withheld(str(arn), "limits", "session policy: " + "; ".join(problems))
    if via is None:
        return (), None, policy, arns
    hubs_arns = (*catalog.chains.get(str(via), ()), via)
    if str(arn) in {str(h) for h in hubs_arns}:
        return Withheld(str(arn), "invalid", f"the role chain loops back to {arn} (via {via})")
    if len(hubs_arns) > catalog.max_hops:
        return Withheld(str(arn), "invalid", f"{len(hubs_arns)} sts:AssumeRole calls to reach it; mapping.max_hops "
                                             f"allows {catalog.max_hops}")
    hubs = _hubs(hubs_arns, arn, catalog, view, binding)
    if isinstance(hubs, Withheld):
        return hubs
    return hubs, chain.external_id or own.external_id, policy, arns


def _hubs(hubs_arns: tuple[RoleArn, ...], arn: RoleArn, catalog: Catalog, view: View,
          binding: Mapping[str, str]) -> tuple[Hop, ...] | Withheld:
    """Each hub on the way to ``arn``, its session policy rendered for this identity and checked."""
    hubs: list[Hop] = []
    for h in hubs_arns:
        info = catalog.role(h)
        hc = info.chain if info is not None else NO_CHAIN
        hp = render_policy(hc.policy, view, binding) if hc.policy is not None else None
        if isinstance(hp, Missing):
            return Withheld(str(arn), "invalid", f"the session policy of hub {h}: {hp.reason}")
        if problems := policy_problems(hp, hc.policy_arns):
            return Withheld(str(arn), "limits", f"the session policy of hub {h}: " + "; ".join(problems))
        account = catalog.by_id.get(h.account_id)
        hubs.append(Hop(str(h), f"{(account.alias if account else '') or h.account_id}/{h.path}{h.name}",
                        hc.external_id, hp, hc.policy_arns))
    return tuple(hubs)
