"""Minimal rules engine: rule list in file order → grants, with a reason for every rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.aws.arn import parse_role_arn
from bridge.aws.limits import sanitize_session_name, sanitize_tag_value, tag_value_problem
from bridge.identity import Grant, Identity
from bridge.mapping.model import MappingSettings, Rule


@dataclass(frozen=True)
class RuleResult:
    """What one rule did for one identity: matched or not, why, and the grant it produced."""

    rule: str
    matched: bool
    reason: str
    grant: Grant | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "matched": self.matched, "reason": self.reason,
                "grant": self.grant.to_json() if self.grant else None, "notes": list(self.notes)}


def resolve_claim(identity: Identity, path: str) -> Any:
    """Value at ``path`` (``email``, ``groups``, ``claims.org.team``) or None when absent."""
    root, _, rest = path.partition(".")
    if root != "claims":
        return getattr(identity, root, None)
    value: Any = identity.claims
    for part in rest.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, list | tuple):
        # Multi-valued claims have no single tag value; AWS tags are single-valued.
        return None if len(value) != 1 else _as_text(value[0])
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _match(rule: Rule, identity: Identity) -> tuple[bool, str]:
    if rule.connectors is not None and identity.connector_id not in rule.connectors:
        return False, f"applies to connectors {rule.connectors}, not {identity.connector_id!r}"
    if rule.group is not None:
        if rule.group in identity.groups:
            return True, f"member of group {rule.group!r}"
        return False, f"not in group {rule.group!r} (groups: {list(identity.groups)[:10]})"
    assert rule.claim is not None
    seen = resolve_claim(identity, rule.claim)
    values = seen if isinstance(seen, list | tuple) else [seen]
    if any(_as_text(v) == rule.equals for v in values):
        return True, f"{rule.claim} equals {rule.equals!r}"
    return False, f"{rule.claim} is {seen!r}, not {rule.equals!r}"


@dataclass(frozen=True)
class GrantDefaults:
    """What a rule does not say itself: token audience, AWS path, IAM SAML provider name."""

    audience: str
    path: str = "jwt"
    saml_provider: str = "FederationBridge"


def _grant(rule: Rule, identity: Identity, defaults: GrantDefaults) -> tuple[Grant, list[str]]:
    notes: list[str] = []
    arn = parse_role_arn(rule.role_arn)
    fallback = sanitize_session_name(identity.subject)
    raw_name = _as_text(resolve_claim(identity, rule.session_name_from)) or identity.subject
    session_name = sanitize_session_name(raw_name, fallback=fallback)
    if session_name != raw_name:
        notes.append(f"session name from {rule.session_name_from} was sanitized")
    source_identity = None
    if rule.source_identity_from:
        raw = _as_text(resolve_claim(identity, rule.source_identity_from))
        if raw:
            source_identity = sanitize_session_name(raw, fallback=fallback)
    tags: dict[str, str] = {}
    for key, path in rule.tags.items():
        value = _as_text(resolve_claim(identity, path))
        if value is None:
            notes.append(f"tag {key!r} dropped: {path} has no single value")
            continue
        clean = sanitize_tag_value(value)
        if tag_value_problem(clean):  # cannot happen after sanitizing; kept as a guard
            notes.append(f"tag {key!r} dropped: value cannot be made valid")
            continue
        if clean != value:
            notes.append(f"tag {key!r}: value from {path} was sanitized")
        tags[key] = clean
    # Tag keys are case-insensitive at AWS; name each transitive key as the tag spells it.
    by_lower = {k.lower(): k for k in tags}
    transitive = tuple(by_lower[k.lower()] for k in rule.transitive_tags if k.lower() in by_lower)
    grant = Grant(
        role_arn=rule.role_arn, account_id=arn.account_id, label=rule.label or arn.name,
        session_name=session_name, via=rule.name, audience=rule.audience or defaults.audience,
        path=rule.path or defaults.path,
        provider_arn=f"arn:{arn.partition}:iam::{arn.account_id}:saml-provider/"
                     f"{rule.saml_provider or defaults.saml_provider}",
        source_identity=source_identity, tags=tags, transitive_keys=transitive,
        default_duration=rule.duration, max_duration=rule.max_duration,
        mfa_required=rule.mfa_required,
    )
    return grant, notes


def explain(mapping: MappingSettings, identity: Identity, *, default_audience: str, default_path: str = "jwt",
            saml_provider: str = "FederationBridge") -> list[RuleResult]:
    """For each rule in order: matched or not, why, and the grant (None if not granted)."""
    defaults = GrantDefaults(default_audience, default_path, saml_provider)
    out: list[RuleResult] = []
    granted: set[str] = set()
    for rule in mapping.rules:
        matched, reason = _match(rule, identity)
        if not matched:
            out.append(RuleResult(rule.name, False, reason))
            continue
        if rule.role_arn in granted:
            out.append(RuleResult(rule.name, True, reason + "; role already granted by an earlier rule"))
            continue
        grant, notes = _grant(rule, identity, defaults)
        if rule.mfa_required and not identity.mfa:
            out.append(RuleResult(rule.name, True, reason + "; withheld: rule requires MFA and the "
                                  "sign-in did not use MFA", None, tuple(notes)))
            continue
        granted.add(rule.role_arn)
        out.append(RuleResult(rule.name, True, reason, grant, tuple(notes)))
    return out


def evaluate(mapping: MappingSettings, identity: Identity, *, default_audience: str, default_path: str = "jwt",
             saml_provider: str = "FederationBridge") -> list[Grant]:
    """The grants ``identity`` gets, in rule order, one per role."""
    results = explain(mapping, identity, default_audience=default_audience, default_path=default_path,
                      saml_provider=saml_provider)
    return [r.grant for r in results if r.grant]
