"""The session tags the bridge sets itself on every issuance (docs/step-up-mfa.md). Pure.

``bridge:mfa`` = ``true`` | ``false``: whether the sign-in behind the issuance used multi-factor
authentication, as its connector judged it (``Identity.mfa``: OIDC ``amr``/``acr``, SAML
``AuthnContextClassRef``). Rules cannot set, override or shadow it (``bridge.aws.limits.reserved_tag_problem``
at load time and when a templated key renders), so a trust policy may require it:
``aws:RequestTag/bridge:mfa`` on AssumeRoleWithWebIdentity / AssumeRoleWithSAML, and — the tag is
transitive — ``aws:PrincipalTag/bridge:mfa`` of the hub's session on each sts:AssumeRole of a chain,
where AWS refuses a hop that would pass the key again (nothing along a chain can turn ``false`` into ``true``).
"""

from __future__ import annotations

from dataclasses import replace

from bridge.aws.limits import MFA_TAG
from bridge.domain.identity import Grant, Identity


def bridge_tags(identity: Identity) -> dict[str, str]:
    """The reserved tags for an issuance to ``identity``."""
    return {MFA_TAG: "true" if identity.mfa else "false"}


def with_bridge_tags(grant: Grant, identity: Identity) -> Grant:
    """``grant`` with the reserved tags added (and transitive, so they survive role chaining). A rule's tag of
    the same key cannot exist (refused at load); should one come from anywhere else, the bridge's value wins."""
    ours = bridge_tags(identity)
    lowered = {k.lower() for k in ours}
    tags = {**{k: v for k, v in grant.tags.items() if k.lower() not in lowered}, **ours}
    transitive = (*(k for k in grant.transitive_keys if k.lower() not in lowered), *ours)
    if tags == grant.tags and transitive == grant.transitive_keys:
        return grant
    return replace(grant, tags=tags, transitive_keys=transitive)
