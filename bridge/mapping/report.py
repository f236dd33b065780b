"""An explanation as a JSON document or as text lines — one wording for the CLI, the portal and admins. Pure."""

from __future__ import annotations

from typing import Any

from bridge.domain.identity import Grant, Identity
from bridge.mapping.engine import RuleResult
from bridge.mapping.paths import show


def identity_summary(identity: Identity) -> dict[str, Any]:
    """What an explanation shows of the identity (no raw tokens; claims as the connector kept them)."""
    return {"connector": identity.connector_id, "subject": identity.subject, "email": identity.email,
            "name": identity.name, "mfa": identity.mfa, "groups": list(identity.groups),
            "claims": dict(identity.claims)}


def report(results: list[RuleResult], identity: Identity | None = None) -> dict[str, Any]:
    """``{"identity", "rules": [...], "grants": [...], "withheld": [...]}`` — the ``--json`` shape."""
    doc: dict[str, Any] = {}
    if identity is not None:
        doc["identity"] = identity_summary(identity)
    doc["rules"] = [r.to_json() for r in results]
    doc["grants"] = [g.to_json() for r in results for g in r.grants]
    doc["withheld"] = [{"rule": r.rule, **w.to_json()} for r in results for w in r.withheld]
    return doc


def _mark(r: RuleResult) -> str:
    return {"no match": "no   ", "deny": "DENY ", "granted": "MATCH", "withheld": "MATCH",
            "merged": "MATCH"}[r.outcome]


def grant_lines(g: Grant) -> list[str]:
    account = g.account_id + (f" ({g.account_label or g.account_alias})" if g.account_label or g.account_alias
                              else "")
    lines = [f"  {g.role_arn}",
             f"    account {account}  label {g.label!r}  via rule {g.via!r}",
             f"    session name {g.session_name}  duration {g.default_duration}s (max {g.max_duration}s)  "
             f"path {g.path}" + ("  MFA required" if g.mfa_required else "")]
    if g.source_identity:
        lines.append(f"    source identity {g.source_identity}")
    if g.tags:
        tags = ", ".join(f"{k}={v!r}" for k, v in g.tags.items())
        lines.append(f"    tags {tags}" + (f"  transitive {list(g.transitive_keys)}" if g.transitive_keys else ""))
    return lines + chain_lines(g)


def chain_lines(g: Grant) -> list[str]:
    """How a grant reaches its role: its hubs (role chaining), where an ExternalId is sent (never its value),
    and the session policies of each call."""
    lines = []
    if g.hubs:
        lines.append(f"    reached through {' → '.join(h.label or h.role_arn for h in g.hubs)} (role chaining: "
                     "sts:AssumeRole, so AWS allows at most 1 h)")
    for hop in g.hops if g.hubs else ():
        if hop.external_id is not None:
            lines.append(f"    ExternalId set for {hop.label} (its value is never shown)")
    for hop in g.hops:
        if hop.policy is not None or hop.policy_arns:
            what = [f"inline policy of {len(''.join(hop.policy.split()))} characters"] if hop.policy else []
            what += [f"policy ARNs {list(hop.policy_arns)}"] if hop.policy_arns else []
            lines.append(f"    session policy for {hop.label}: {', '.join(what)}")
    return lines


def report_text(results: list[RuleResult], identity: Identity | None = None, *, only_matched: bool = False) -> str:
    """The human-readable explanation ``bridge explain`` prints."""
    out: list[str] = []
    if identity is not None:
        out.append(f"identity {identity.subject} ({identity.email or 'no email'}) via {identity.connector_id}, "
                   f"MFA {'yes' if identity.mfa else 'no'}, {len(identity.groups)} group(s) "
                   f"{show(list(identity.groups))}")
    shown = [r for r in results if r.matched or not only_matched]
    out.append(f"rules ({len(shown)} of {len(results)} shown):" if only_matched else f"rules ({len(results)}):")
    for r in shown:
        out += rule_lines(r)
    grants = [g for r in results for g in r.grants]
    out.append(f"{len(grants)} grant(s):")
    for g in grants:
        out += grant_lines(g)
    withheld = [(r.rule, w) for r in results for w in r.withheld]
    if withheld:
        out.append(f"{len(withheld)} withheld:")
        out += [f"  {w.role_arn or '(no role)'} from rule {rule!r}: {w.reason}" for rule, w in withheld]
    return "\n".join(out)


def rule_lines(r: RuleResult) -> list[str]:
    """One rule's line: its mark and reason, then what it granted and withheld, and its notes."""
    lines = [f"  {_mark(r)} {r.rule}: {r.reason}"]
    lines += [f"          grants {g.role_arn}" for g in r.grants]
    lines += [f"          withheld {w.role_arn or '(no role)'}: {w.reason}" for w in r.withheld]
    lines += [f"          note: {n}" for n in r.notes]
    return lines
