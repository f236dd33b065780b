"""``bridge doctor``: would AWS let the bridge assume this role? Pure.

Evaluates a role's trust policy — principal, actions, conditions, deny statements — against the request
the bridge makes for that role (``RoleSent``: what the rules send, or a ``Sample`` from one identity's
grant), and its ``MaxSessionDuration`` against the longest session a rule allows. Each ``Finding`` is one
thing AWS would refuse, with the fix. The evaluation follows IAM's policy logic for the operators trust
policies use (docs/aws-rules.md §2.8): a statement applies when its principal, action and every condition
match; an explicit deny wins; a condition on a key the request lacks fails, except for negated operators,
``…IfExists``, ``ForAllValues`` and ``Null``. Keys whose value depends on the user (``sub``, tags from
claims) without a sample cannot be decided: they are notes, not findings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from bridge.aws.iam_setup import STS_SAML, STS_WEB, Environment, RoleSent
from bridge.aws.limits import MFA_TAG


@dataclass(frozen=True)
class Unknown:
    """A value that depends on the user (no sample identity given): maybe absent, or ``present``;
    ``samples`` are values of the shape every user's has (a condition true for all of them is true)."""

    present: bool = False
    samples: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return "<depends on the user>"


UNKNOWN = Unknown()
SOME = Unknown(present=True)
# sub / NameID: "u-" and 40 hex digits of a hash (bridge.aws.token.subject_for)
PSEUDONYM = Unknown(present=True, samples=tuple("u-" + c * 40 for c in "05af"))
Value = list[str] | Unknown


@dataclass(frozen=True)
class Finding:
    """One thing AWS would refuse (``kind`` ``refused``), or would wrongly accept (``unsafe``), and the fix."""

    code: str
    message: str
    fix: str
    kind: str = "refused"

    def __str__(self) -> str:
        return f"{self.code}: {self.message} — fix: {self.fix}"


@dataclass(frozen=True)
class Sample:
    """What the bridge sends for one identity's grant of the role (``bridge doctor --identity``)."""

    subject: str
    tags: Mapping[str, str]
    transitive_keys: Sequence[str]
    source_identity: str | None


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, f: Finding) -> None:
        if all(str(f) != str(g) for g in self.findings):
            self.findings.append(f)


# --------------------------------------------------------------------------- reading what get-role returns


@dataclass(frozen=True)
class RoleDocument:
    policy: dict[str, Any]
    max_session_duration: int | None = None
    arn: str | None = None


def read_role_document(doc: Any) -> RoleDocument:
    """``aws iam get-role`` output (``{"Role": {...}}``), its ``Role`` object, or a bare trust policy;
    the policy may be the URL-encoded JSON string the raw API returns."""
    role = doc.get("Role", doc) if isinstance(doc, Mapping) else None
    if not isinstance(role, Mapping):
        raise ValueError("expected the JSON of `aws iam get-role` or a trust policy document")
    if "AssumeRolePolicyDocument" in role:
        policy = role["AssumeRolePolicyDocument"]
        if isinstance(policy, str):
            policy = json.loads(unquote(policy))
        max_s = role.get("MaxSessionDuration")
        return RoleDocument(_policy(policy), max_s if isinstance(max_s, int) else None,
                            role.get("Arn") if isinstance(role.get("Arn"), str) else None)
    return RoleDocument(_policy(role))


def _policy(policy: Any) -> dict[str, Any]:
    if not isinstance(policy, Mapping) or "Statement" not in policy:
        raise ValueError("the trust policy has no Statement")
    return dict(policy)


def _statements(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    st = policy["Statement"]
    items = [s for s in (st if isinstance(st, list) else [st]) if isinstance(s, Mapping)]
    return [{"Sid": f"Statement[{i}]", **s} if not s.get("Sid") else dict(s) for i, s in enumerate(items)]


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else [v]


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class Request:
    path: str  # jwt | saml
    principals: tuple[str, ...]  # the provider ARN the call names (any one of them for SAML)
    actions: tuple[str, ...]
    context: dict[str, Value]  # lower-cased condition key -> values
    audience_key: str  # the key AWS sets for the audience


def _tag_context(role: RoleSent, sample: Sample | None) -> dict[str, Value]:
    ctx: dict[str, Value] = {}
    if sample is not None:
        for k, v in sample.tags.items():
            ctx[f"aws:requesttag/{k.lower()}"] = [v]
        if sample.tags:
            ctx["aws:tagkeys"] = list(sample.tags)
        if sample.transitive_keys:
            ctx["sts:transitivetagkeys"] = list(sample.transitive_keys)
        if sample.source_identity:
            ctx["sts:sourceidentity"] = [sample.source_identity]
        return ctx
    for k in role.tag_keys:
        if k not in role.always_tags:
            ctx[f"aws:requesttag/{k.lower()}"] = UNKNOWN
        else:
            value = role.always_tags[k]
            ctx[f"aws:requesttag/{k.lower()}"] = [value] if value is not None else SOME
    if role.tag_keys:  # some subset of the keys, each user's own
        ctx["aws:tagkeys"] = Unknown(samples=role.tag_keys if role.all_keys_constant else ())
    if role.transitive_keys:
        ctx["sts:transitivetagkeys"] = Unknown(samples=role.transitive_keys)
    if role.source_identity:
        ctx["sts:sourceidentity"] = UNKNOWN
    return ctx


def requests_for(role: RoleSent, env: Environment, sample: Sample | None = None) -> list[Request]:
    """The assume-role calls the bridge makes for ``role``: one per path (and audience)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    common: dict[str, Value] = {"aws:currenttime": [now], "aws:securetransport": ["true"],
                                **_tag_context(role, sample)}
    sub: Value = [sample.subject] if sample else PSEUDONYM
    out = []
    for path in role.paths:
        if path == "saml":
            ctx = {**common, "saml:aud": [env.saml_recipient], "saml:sub": sub, "saml:sub_type": ["persistent"],
                   "saml:namequalifier": UNKNOWN}
            if env.saml_entity_id:
                ctx["saml:iss"] = [env.saml_entity_id]
            out.append(Request(path, role.saml_providers, tuple(role.actions(path)), ctx, "SAML:aud"))
            continue
        provider = env.oidc_provider_arn(role.account, role.partition)
        for aud in role.audiences:
            ctx = {**common, env.aud_key.lower(): [aud], env.sub_key.lower(): sub,
                   "aws:federatedprovider": [provider]}
            out.append(Request(path, (provider,), tuple(role.actions(path)), ctx, env.aud_key))
    return out


# --------------------------------------------------------------------------- conditions


def _like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S | (re.I if ignore_case else 0)) is not None


def _date(s: str) -> datetime | None:
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


_DATE = {"DateEquals": lambda a, b: a == b, "DateLessThan": lambda a, b: a < b,
         "DateLessThanEquals": lambda a, b: a <= b, "DateGreaterThan": lambda a, b: a > b,
         "DateGreaterThanEquals": lambda a, b: a >= b}


def _match(op: str, want: str, have: str) -> bool | None:
    """One policy value against one request value, for the positive form of ``op``; None: unsupported."""
    if op in ("StringEquals", "ArnEquals", "BinaryEquals"):
        return have == want
    if op == "StringEqualsIgnoreCase":
        return have.lower() == want.lower()
    if op in ("StringLike", "ArnLike"):
        return _like(want, have)
    if op == "Bool":
        return have.lower() == str(want).lower()
    if op in _DATE:
        a, b = _date(have), _date(str(want))
        return None if a is None or b is None else bool(_DATE[op](a, b))
    return None


_NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike",
            "DateNotEquals": "DateEquals"}


def evaluate_condition(operator: str, key: str, wanted: Any, ctx: Mapping[str, Value]) -> bool | None:
    """One ``{operator: {key: values}}`` entry: True, False, or None (depends on the user / unsupported)."""
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    have = ctx.get(key.lower())
    wants = [str(w) if not isinstance(w, bool) else str(w).lower() for w in _list(wanted)]
    if op == "Null":
        if isinstance(have, Unknown) and not have.present:
            return None
        return (have is None) == (wants[0].lower() == "true")
    if have is None:
        return bool(if_exists or qualifier == "ForAllValues" or op in _NEGATED)
    if isinstance(have, Unknown):
        if not have.samples:
            return None
        each = [_evaluate(qualifier, op, wants, [v]) for v in have.samples]
        return True if all(r is True for r in each) else None
    return _evaluate(qualifier, op, wants, have)


def _evaluate(qualifier: str, op: str, wants: list[str], have: list[str]) -> bool | None:
    negated = op in _NEGATED
    base = _NEGATED.get(op, op)
    results = [[_match(base, w, h) for w in wants] for h in have]
    if any(r is None for row in results for r in row):
        return None
    hits = [any(row) for row in results]
    if qualifier == "ForAllValues":
        return all(not h for h in hits) if negated else all(hits)
    return (not any(hits)) if negated else any(hits)


def _condition_failures(cond: Any, ctx: Mapping[str, Value]) -> tuple[list[tuple[str, str, Any]], bool]:
    """(the failing (operator, key, values) entries, whether some entry could not be decided)."""
    failures, unknown = [], False
    for operator, entries in (cond or {}).items():
        for key, wanted in (entries or {}).items():
            r = evaluate_condition(operator, key, wanted, ctx)
            if r is None:
                unknown = True
            elif not r:
                failures.append((operator, key, wanted))
    return failures, unknown


# --------------------------------------------------------------------------- principals and actions


def _federated(st: Mapping[str, Any]) -> list[str] | None:
    """The statement's federated principals; None when it names every principal (``"*"``)."""
    p = st.get("Principal")
    if p == "*" or (isinstance(p, Mapping) and p.get("AWS") == "*"):
        return None
    return [str(x) for x in _list(p.get("Federated", []))] if isinstance(p, Mapping) else []


def _principal_matches(st: Mapping[str, Any], principals: Sequence[str]) -> bool:
    fed = _federated(st)
    return fed is None or any(p in fed for p in principals)


def _action_matches(st: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in st:
        return not any(_like(str(a), action, ignore_case=True) for a in _list(st["NotAction"]))
    return any(_like(str(a), action, ignore_case=True) for a in _list(st.get("Action", [])))


def _principal_finding(req: Request, allows: list[dict[str, Any]]) -> Finding:
    want = req.principals[0]
    trusted = sorted({f for st in allows for f in (_federated(st) or [])})
    kind = "saml-provider" if req.path == "saml" else "oidc-provider"
    why = f"the policy trusts {trusted or 'no federated provider'}"
    for t in trusted:
        parts, mine = t.split(":", 5), want.split(":", 5)
        if len(parts) == 6 and kind not in parts[5]:
            why = (f"the policy trusts {t}, but the rules send this role by "
                   f"{'SAML' if req.path == 'saml' else 'web identity (jwt)'}")
        elif len(parts) == 6 and parts[4] != mine[4]:
            why = f"the policy trusts the provider in account {parts[4]}; the role is in account {mine[4]}"
        elif len(parts) == 6:
            why = f"the policy trusts {t}; the bridge's provider is {want}"
    return Finding("principal", f"{_call(req)} is refused: {why}",
                   f'set Principal.Federated to "{want}"' + (" (one of them)" if len(req.principals) > 1 else ""))


def _call(req: Request) -> str:
    return STS_SAML if req.path == "saml" else STS_WEB


def _why_action(action: str, role: RoleSent) -> str:
    if action == "sts:TagSession":
        return f"the rules send session tags ({', '.join(role.tag_keys)})"
    if action == "sts:SetSourceIdentity":
        return "the rules send a source identity"
    return f"the rules use the {'SAML' if action == STS_SAML else 'web identity'} path for this role"


# --------------------------------------------------------------------------- the diagnosis


def _condition_finding(req: Request, env: Environment, sid: str, failure: tuple[str, str, Any],
                       ctx: Mapping[str, Value]) -> Finding:
    operator, key, wanted = failure
    have = ctx.get(key.lower())
    where = f"{sid}: {operator} {key} {wanted!r}"
    if have is None and (key.lower().endswith(":aud") or key.lower() == "saml:aud"):
        return Finding("audience-key", f"{where}: AWS sets no key {key!r} for this call, so the condition fails",
                       f"use the key {req.audience_key!r} (= {ctx[req.audience_key.lower()]!r})")
    if key.lower() == req.audience_key.lower():
        return Finding("audience", f"{where}: the bridge sends audience {have!r}",
                       f"allow {_list(have)[0]!r}" + (" (issuer.audience or the grant's audience)"
                                                      if req.path == "jwt" else " (the SAML Recipient)"))
    if have is None:
        return Finding("condition", f"{where}: the key is not in the request, so the condition fails",
                       "remove the condition, or use a key the bridge sends")
    return Finding("condition", f"{where}: the request has {have!r}", "change or remove the condition")


def _diagnose_request(req: Request, role: RoleSent, env: Environment, statements: list[dict[str, Any]],
                      out: Diagnosis) -> None:
    allows = [s for s in statements if s.get("Effect") == "Allow"]
    trusting = [s for s in allows if _principal_matches(s, req.principals)]
    _diagnose_denies(req, statements, out)
    if not trusting:
        out.add(_principal_finding(req, allows))
        return
    for action in req.actions:
        _diagnose_action(req, role, env, trusting, action, out)


def _diagnose_denies(req: Request, statements: list[dict[str, Any]], out: Diagnosis) -> None:
    """The Deny statements that refuse (or may refuse, depending on the user) one of the request's actions."""
    for st in statements:
        if st.get("Effect") == "Deny" and _principal_matches(st, req.principals):
            for action in req.actions:
                fails, unknown = _condition_failures(st.get("Condition"), req.context)
                if _action_matches(st, action) and not fails:
                    sid = st["Sid"]
                    if unknown:
                        out.notes.append(f"{sid} may deny {action} for some users (a condition depends on the user)")
                    else:
                        out.add(Finding("deny", f"{sid} denies {action}", "remove or narrow that Deny statement"))


def _diagnose_action(req: Request, role: RoleSent, env: Environment, trusting: list[dict[str, Any]], action: str,
                     out: Diagnosis) -> None:
    """Whether a statement trusting the bridge allows ``action``, and if not, why."""
    candidates = [s for s in trusting if _action_matches(s, action)]
    if not candidates:
        out.add(Finding("action", f"{action} is not allowed, and {_why_action(action, role)}: AWS refuses "
                                  f"the {_call(req)} call (AccessDenied)",
                        f'add "{action}" to the Action of the statement trusting {req.principals[0]}'))
        return
    results = [(s, *_condition_failures(s.get("Condition"), req.context)) for s in candidates]
    if any(not fails and not unknown for _, fails, unknown in results):
        return
    if any(not fails for _, fails, _ in results):
        out.notes.append(f"{action} ({req.path}): a condition depends on the user; check with --identity")
        return
    st, fails, _ = results[0]
    for failure in fails:
        out.add(_condition_finding(req, env, str(st["Sid"]), failure, req.context))


def admits(statements: list[dict[str, Any]], trusts: Callable[[Mapping[str, Any]], bool], action: str,
           ctx: Mapping[str, Value]) -> bool | None:
    """Whether the statements let a caller they ``trusts`` do ``action`` with request context ``ctx``: True, False,
    or None (a condition depends on the user). An explicit Deny wins."""
    def holds(st: Mapping[str, Any]) -> bool | None:
        if not (trusts(st) and _action_matches(st, action)):
            return False
        fails, unknown = _condition_failures(st.get("Condition"), ctx)
        return False if fails else None if unknown else True

    denies = [holds(st) for st in statements if st.get("Effect") == "Deny"]
    allows = [holds(st) for st in statements if st.get("Effect") == "Allow"]
    if True in denies:
        return False
    if True in allows:
        return None if None in denies else True
    return None if None in allows else False


MFA_KEY = f"aws:requesttag/{MFA_TAG}"


def mfa_finding(admitted: bool | None, what: str, key: str, fix: str, out: Diagnosis) -> None:
    """Add what a role given only with MFA should not admit: a session whose ``bridge:mfa`` is ``false``."""
    if admitted:
        out.add(Finding("mfa-not-enforced", f"the rules give this role only with MFA, but its trust policy admits "
                                            f"{what} whose bridge:mfa is false (it does not check {key})",
                        fix, kind="unsafe"))
    elif admitted is None:
        out.notes.append(f"whether the trust policy refuses {what} without MFA depends on the user; check with "
                         "--identity")


def _diagnose_mfa(role: RoleSent, env: Environment, statements: list[dict[str, Any]], sample: Sample | None,
                  out: Diagnosis) -> None:
    for req in requests_for(role, env, sample):
        ctx: dict[str, Value] = {**req.context, MFA_KEY: ["false"]}
        principals = req.principals

        def trusts(st: Mapping[str, Any], principals: Sequence[str] = principals) -> bool:
            return _principal_matches(st, principals)

        mfa_finding(admits(statements, trusts, req.actions[0], ctx), f"an {_call(req)} call",
                    f"aws:RequestTag/{MFA_TAG}",
                    f'add "StringEquals": {{"aws:RequestTag/{MFA_TAG}": "true"}} to the Condition of the statement '
                    f"trusting {req.principals[0]} (`bridge aws-setup --harden` writes it)", out)


def diagnose(doc: RoleDocument, role: RoleSent, env: Environment, sample: Sample | None = None) -> Diagnosis:
    """Everything AWS would refuse when the bridge assumes ``role`` under ``doc``."""
    out = Diagnosis()
    if doc.arn is not None and doc.arn != role.arn:
        out.add(Finding("role", f"the document is for {doc.arn}, not {role.arn}", "pass the matching --role"))
    statements = _statements(doc.policy)
    for req in requests_for(role, env, sample):
        _diagnose_request(req, role, env, statements, out)
    if role.mfa_required and any(k.lower() == MFA_TAG for k in role.tag_keys):
        _diagnose_mfa(role, env, statements, sample, out)
    if doc.max_session_duration is None:
        out.notes.append("MaxSessionDuration not checked: pass the `aws iam get-role` output, not the bare policy")
    elif doc.max_session_duration < role.max_duration:
        out.add(Finding("max-session-duration",
                        f"MaxSessionDuration is {doc.max_session_duration}s, but rule(s) {', '.join(role.rules)} "
                        f"allow sessions of up to {role.max_duration}s: AWS refuses longer DurationSeconds "
                        "(ValidationError)",
                        f"aws iam update-role --role-name {role.name} --max-session-duration {role.max_duration}"))
    return out
