"""Grants for ``aws_passthrough`` SAML connectors: exactly the roles the upstream IdP asserted. Pure.

The upstream IdP (an Okta/Entra "AWS app") already decides roles in its
``https://aws.amazon.com/SAML/Attributes/Role`` attribute; the bridge offers those pairs and
redeems the upstream response as-is, so no rule can add a role the IdP did not assert.
"""

from __future__ import annotations

from typing import Any

from bridge.aws.arn import RoleArn, parse_role_arn
from bridge.aws.limits import sanitize_session_name
from bridge.identity import Grant, Identity

ROLE_CLAIM = "https://aws.amazon.com/SAML/Attributes/Role"
SESSION_CLAIM = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
DURATION_CLAIM = "https://aws.amazon.com/SAML/Attributes/SessionDuration"


def passthrough_grants(identity: Identity) -> tuple[list[Grant], list[str]]:
    """Grants from the asserted Role pairs (either order), and a note for each value skipped."""
    raw = identity.claims.get(ROLE_CLAIM) or []
    values = [raw] if isinstance(raw, str) else list(raw)
    session = identity.claims.get(SESSION_CLAIM)
    session_name = sanitize_session_name(str(session or identity.email or identity.subject))
    max_duration = _max_duration(identity.claims.get(DURATION_CLAIM))
    grants: list[Grant] = []
    notes: list[str] = []
    for value in values:
        pair = _role_pair(value, notes)
        if pair is None:
            continue
        role, provider, arn = pair
        if any(g.role_arn == role for g in grants):
            continue
        grants.append(Grant(role_arn=role, account_id=arn.account_id, label=arn.name, session_name=session_name,
                            via="aws_passthrough", provider_arn=provider, path="passthrough",
                            default_duration=min(3600, max_duration), max_duration=max_duration))
    return grants, notes


def _max_duration(duration_raw: Any) -> int:
    """``SessionDuration`` clamped to 900..43200 (3600 when absent or not a number)."""
    # ASCII digits, bounded: isdigit() alone also takes "²", which int() refuses (a 500 at the callback).
    if isinstance(duration_raw, str) and duration_raw.isascii() and duration_raw.isdigit() and len(duration_raw) <= 9:
        return max(900, min(43200, int(duration_raw)))
    return 3600


def _role_pair(value: Any, notes: list[str]) -> tuple[str, str, RoleArn] | None:
    """One ``<role arn>,<provider arn>`` value (either order): role, provider, parsed role; None (noted) if not."""
    parts = [p.strip() for p in str(value).split(",")]
    role = next((p for p in parts if ":role/" in p), None)
    provider = next((p for p in parts if ":saml-provider/" in p), None)
    if len(parts) != 2 or role is None or provider is None:
        notes.append(f"Role value skipped: not '<role arn>,<provider arn>': {str(value)[:200]!r}")
        return None
    try:
        arn = parse_role_arn(role)
    except ValueError as e:
        notes.append(f"Role value skipped: {e}")
        return None
    return role, provider, arn
