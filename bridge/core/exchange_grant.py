"""The grant a token exchange hands an app: the user's grant narrowed by the app's session policy (rendered
for the user, within AWS's limits), its maximum duration and a session name that starts with its client id.

Kept by the objects it is made of (``ByObject``): the grant the decision memo gives, the identity of a
subject token verified within the last minute, the app. So an app exchanging the same token again gets the
very same ``Grant`` object, and the issuer's memos keyed by it (the bridge's tags, the cache entry's name,
the audit fields) hit instead of being worked out per exchange. The checks that refuse are not kept: a
policy that cannot be rendered raises, and nothing is stored.
"""

from __future__ import annotations

from dataclasses import replace

from bridge.aws.limits import policy_problems, prefixed_session_name
from bridge.core.exchange_refused import ExchangeRefused
from bridge.domain.identity import Grant, Identity
from bridge.domain.memo import ByObject
from bridge.mapping.chains import render_policy
from bridge.mapping.paths import View
from bridge.mapping.ruleset import PolicyT
from bridge.mapping.template import Missing


class Narrowed:
    """``get(held, identity, app, policy, client_id, max_duration)``: ``held`` narrowed for the app."""

    def __init__(self) -> None:
        self._kept: ByObject[Grant] = ByObject()

    def get(self, held: Grant, identity: Identity, app: object, policy: PolicyT, client_id: str,
            max_duration: int) -> Grant:
        return self._kept.get((held, identity, app), None, lambda: narrow(held, identity, policy, client_id,
                                                                          max_duration))


def narrow(held: Grant, identity: Identity, policy_t: PolicyT, client_id: str, max_duration: int) -> Grant:
    """``held`` with the app's policy rendered for ``identity``, its duration and session name; refused
    (``exchange_policy_unrenderable``) when the policy cannot be made or AWS would refuse it."""
    policy = render_policy(policy_t, View(identity), {})
    if isinstance(policy, Missing):
        raise ExchangeRefused("invalid_target", f"the app's session policy cannot be made for this user: "
                              f"{policy.reason}", code="exchange_policy_unrenderable")
    if problems := policy_problems(policy):
        raise ExchangeRefused("invalid_target", "the app's session policy for this user is refused by AWS's "
                              f"limits: {'; '.join(problems)}", code="exchange_policy_unrenderable")
    name = prefixed_session_name(client_id, held.session_name)  # a long client id cut, not the user
    duration = min(max_duration, held.max_duration)
    return replace(held, policy=policy, session_name=name, max_duration=duration,
                   default_duration=min(held.default_duration, duration))
