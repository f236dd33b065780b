"""``bridge doctor`` for a role reached through a hub (role chaining): would AWS let the hub's assumed-role
session call sts:AssumeRole on the spoke under this trust policy — with sts:TagSession and
sts:SetSourceIdentity (the bridge sends the rules' tags and source identity again on the hop), and the
``sts:ExternalId`` condition when the role has an ExternalId? Pure: the trust policy and the chain in,
findings out. An ExternalId is never shown, only whether it matches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.aws.doctor import (
    UNKNOWN,
    Diagnosis,
    Finding,
    RoleDocument,
    Value,
    _action_matches,
    _condition_failures,
    _list,
    _statements,
    admits,
    mfa_finding,
)
from bridge.aws.iam_setup import SET_SOURCE_IDENTITY, TAG_SESSION
from bridge.aws.limits import MFA_TAG

ASSUME_ROLE = "sts:AssumeRole"
EXTERNAL_ID = "sts:externalid"
MFA_PRINCIPAL_TAG = f"aws:principaltag/{MFA_TAG}"  # the hub's session carries bridge:mfa (transitive)


class _Context(dict[str, Value]):
    """What the hop's request carries; any other key depends on the user (never guessed)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, UNKNOWN) if key not in self.absent else None

    absent: frozenset[str] = frozenset()


def _context(hub_arn: str, external_id: str | None, mfa: bool = False) -> _Context:
    ctx = _Context({"aws:principalarn": [hub_arn], "aws:principalaccount": [hub_arn.split(":")[4]]})
    if mfa:  # every grant of the spoke requires MFA: the hub's session of such an issuance says true
        ctx[MFA_PRINCIPAL_TAG] = ["true"]
    if external_id is not None:
        ctx[EXTERNAL_ID] = [external_id]
    else:
        ctx.absent = frozenset({EXTERNAL_ID})
    return ctx


def _trusts(st: Mapping[str, Any], hub_arn: str) -> bool:
    p = st.get("Principal")
    if p == "*":
        return True
    aws = [str(x) for x in _list(p.get("AWS", []))] if isinstance(p, Mapping) else []
    account = hub_arn.split(":")[4]
    return any(a in ("*", hub_arn, account, f"arn:{hub_arn.split(':')[1]}:iam::{account}:root") for a in aws)


def _names_external_id(st: Mapping[str, Any]) -> bool:
    return any(k.lower() == EXTERNAL_ID for entries in (st.get("Condition") or {}).values() for k in (entries or {}))


def diagnose_spoke(doc: RoleDocument, role_arn: str, hub_arn: str, external_id: str | None, *,
                   tags: bool | None = None, source_identity: bool | None = None, mfa: bool = False) -> Diagnosis:
    """What AWS would refuse when ``hub_arn``'s session assumes ``role_arn`` under ``doc``. ``tags`` /
    ``source_identity``: whether the grant sends them (None: not known without --identity — then a missing
    action is a note, not a refusal). ``mfa``: the rules give the role only with MFA — then a trust policy
    that admits a hub session whose ``bridge:mfa`` is ``false`` is flagged (``mfa-not-enforced``)."""
    out = Diagnosis()
    if doc.arn is not None and doc.arn != role_arn:
        out.add(Finding("role", f"the document is for {doc.arn}, not {role_arn}", "pass the matching --role"))
    statements = _statements(doc.policy)
    ctx = _context(hub_arn, external_id, mfa)
    for st in statements:
        if st.get("Effect") == "Deny" and _trusts(st, hub_arn) and _action_matches(st, ASSUME_ROLE):
            fails, unknown = _condition_failures(st.get("Condition"), ctx)
            if not fails and not unknown:
                out.add(Finding("deny", f"{st['Sid']} denies {ASSUME_ROLE} to the hub",
                                "remove or narrow that Deny statement"))
    trusting = [s for s in statements if s.get("Effect") == "Allow" and _trusts(s, hub_arn)]
    if not trusting:
        out.add(Finding("principal", f"no Allow statement trusts the hub {hub_arn}: AWS refuses the hub's "
                                     f"{ASSUME_ROLE} (AccessDenied)",
                        f'add a statement with "Principal": {{"AWS": "{hub_arn}"}} '
                        "(`bridge aws-setup --organization` writes it)"))
        return out
    for action, sent in ((ASSUME_ROLE, True), (TAG_SESSION, tags), (SET_SOURCE_IDENTITY, source_identity)):
        if sent is not False:
            _action(trusting, action, sent, external_id, ctx, out)
    if mfa:
        without = _Context({**ctx, MFA_PRINCIPAL_TAG: ["false"]})
        without.absent = ctx.absent
        mfa_finding(admits(statements, lambda st: _trusts(st, hub_arn), ASSUME_ROLE, without),
                    "the hub's sts:AssumeRole", f"aws:PrincipalTag/{MFA_TAG}",
                    f'add "StringEquals": {{"aws:PrincipalTag/{MFA_TAG}": "true"}} to the Condition of the statement '
                    "trusting the hub (`bridge aws-setup --organization` writes it)", out)
    if external_id is not None and not any(_names_external_id(s) for s in trusting):
        out.notes.append("the trust policy does not ask for the ExternalId (no sts:ExternalId condition): AWS "
                         "accepts the hop, but the ExternalId guards nothing — the account owner should add it")
    return out


def _action(trusting: list[dict[str, Any]], action: str, sent: bool | None, external_id: str | None,
            ctx: _Context, out: Diagnosis) -> None:
    candidates = [s for s in trusting if _action_matches(s, action)]
    if not candidates:
        if sent is None:
            out.notes.append(f"{action} is not allowed: the hop fails if the grant sends "
                             f"{'tags' if action == TAG_SESSION else 'a source identity'} (check with --identity)")
            return
        out.add(Finding("action", f"{action} is not allowed to the hub: AWS refuses the hop (AccessDenied)",
                        f'add "{action}" to the Action of the statement trusting the hub'))
        return
    results = [(s, *_condition_failures(s.get("Condition"), ctx)) for s in candidates]
    if any(not fails and not unknown for _, fails, unknown in results):
        return
    if any(not fails for _, fails, _ in results):
        out.notes.append(f"{action}: a condition depends on the user; check with --identity")
        return
    st, fails, _ = results[0]
    for op, key, _wanted in fails:
        if key.lower() == EXTERNAL_ID:
            out.add(Finding("external-id", f"{st['Sid']} asks for an ExternalId and the bridge sends none for "
                                           "this role" if external_id is None else
                            f"{st['Sid']}: the ExternalId the bridge sends does not match the trust policy's "
                            "sts:ExternalId (values not shown)",
                            "put the value the account owner gave you in the catalog role's external_id_file"))
        else:
            out.add(Finding("condition", f"{st['Sid']}: {op} {key} does not hold for the hub's {action}",
                            "fix that condition of the statement trusting the hub"))
