"""Grants for ``aws_passthrough`` SAML connectors: exactly the roles the upstream IdP asserted. Pure.

The upstream IdP (an Okta/Entra "AWS app") already decides roles in its
``https://aws.amazon.com/SAML/Attributes/Role`` attribute; the bridge offers those pairs and
redeems the upstream response as-is, so no rule can add a role the IdP did not assert. A value
AWS would refuse (not a ``<role arn>,<provider arn>`` pair, role and provider in different accounts
or partitions) is not offered: it comes back as a ``Withheld`` saying what to fix at the IdP. The
accounts catalog gives the grants their account label and alias, as for rule grants.
"""

from __future__ import annotations

import re
from typing import Any

from bridge.aws.arn import RoleArn, parse_role_arn
from bridge.aws.limits import sanitize_session_name
from bridge.domain.identity import Grant, Identity
from bridge.mapping.results import Withheld
from bridge.mapping.ruleset import Catalog

ROLE_CLAIM = "https://aws.amazon.com/SAML/Attributes/Role"
SESSION_CLAIM = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
DURATION_CLAIM = "https://aws.amazon.com/SAML/Attributes/SessionDuration"


def passthrough_grants(identity: Identity, catalog: Catalog | None = None) -> tuple[list[Grant], list[Withheld]]:
    """Grants from the asserted Role pairs (either order), and why each other value is not offered
    (a missing Role attribute is one ``role_attribute_missing``)."""
    raw = identity.claims.get(ROLE_CLAIM) or []
    values = [raw] if isinstance(raw, str) else list(raw)
    if not values:
        return [], [Withheld(None, "role_attribute_missing",
                             f"The sign-in response from your identity provider has no Role attribute ({ROLE_CLAIM}), "
                             "so it names no AWS role. Its administrator must add it to the AWS app: one value "
                             "'<role arn>,<saml-provider arn>' per role.")]
    session = identity.claims.get(SESSION_CLAIM)
    session_name = sanitize_session_name(str(session or identity.email or identity.subject))
    max_duration = _max_duration(identity.claims.get(DURATION_CLAIM))
    grants: list[Grant] = []
    withheld: list[Withheld] = []
    for value in values:
        pair = _role_pair(value, withheld)
        if pair is None:
            continue
        role, provider, arn = pair
        if any(g.role_arn == role for g in grants):
            continue
        account = catalog.by_id.get(arn.account_id) if catalog is not None else None
        info = catalog.role(arn) if catalog is not None else None
        grants.append(Grant(role_arn=role, account_id=arn.account_id, label=(info.label if info else None) or arn.name,
                            session_name=session_name, via="aws_passthrough", provider_arn=provider,
                            path="passthrough", default_duration=min(3600, max_duration), max_duration=max_duration,
                            account_alias=account.alias if account else "",
                            account_label=account.label if account else ""))
    return grants, withheld


def _max_duration(duration_raw: Any) -> int:
    """``SessionDuration`` clamped to 900..43200 (3600 when absent or not a number)."""
    # ASCII digits, bounded: isdigit() alone also takes "²", which int() refuses (a 500 at the callback).
    if isinstance(duration_raw, str) and duration_raw.isascii() and duration_raw.isdigit() and len(duration_raw) <= 9:
        return max(900, min(43200, int(duration_raw)))
    return 3600


_FIX = "Its identity provider's administrator must correct the Role attribute of the AWS app."
_PROVIDER = re.compile(r"\Aarn:([a-z-]+):iam::(\d{12}):saml-provider/[\x21-\x7e]+\Z")


def _role_pair(value: Any, withheld: list[Withheld]) -> tuple[str, str, RoleArn] | None:
    """One ``<role arn>,<provider arn>`` value (either order): role, provider, parsed role; None
    (withheld, saying why) if AWS would refuse it (§1.10 rule 9)."""
    text = str(value)[:200]
    parts = [p.strip() for p in str(value).split(",")]
    role = next((p for p in parts if ":role/" in p), None)
    provider = next((p for p in parts if ":saml-provider/" in p), None)
    if len(parts) != 2 or role is None or provider is None:
        withheld.append(Withheld(role, "role_value_malformed", f"The Role value {text!r} is not "
                                                               f"'<role arn>,<saml-provider arn>'. {_FIX}"))
        return None
    try:
        arn = parse_role_arn(role)
    except ValueError as e:
        withheld.append(Withheld(role[:200], "role_value_malformed", f"The Role value {text!r}: {e}. {_FIX}"))
        return None
    m = _PROVIDER.match(provider)
    if m is None:
        withheld.append(Withheld(role, "role_value_malformed",
                                 f"{provider[:200]!r} is not a SAML provider ARN. {_FIX}"))
        return None
    if (m[1], m[2]) != (arn.partition, arn.account_id):
        withheld.append(Withheld(role, "role_provider_mismatch",
                                 f"The role is in account {arn.account_id} ({arn.partition}) but its SAML provider "
                                 f"in account {m[2]} ({m[1]}): AWS refuses a pair from different accounts. {_FIX}"))
        return None
    return role, provider, arn
