"""Step-up MFA: verify what the IdP answered to a step-up sign-in (docs/step-up-mfa.md). Pure: no Flask,
no store, no clock of its own.

The request the bridge sent (``prompt=login``, ``max_age``, ``acr_values``; SAML ``ForceAuthn`` and
``RequestedAuthnContext``) is never taken as proof: an IdP may ignore any of it. What came back must show

1. the same user (connector, issuer and subject) as the session that asked — ``step_up_other_user``;
2. that session still live, and still the browser's — ``step_up_session_changed``;
3. a fresh authentication: ``auth_time`` (SAML ``AuthnInstant``) no older than ``max_age`` seconds, plus
   the connector's clock skew, and not in the future — ``step_up_stale``;
4. MFA: an ``amr`` value or the ``acr`` (SAML ``AuthnContextClassRef``) among the accepted ones —
   ``step_up_no_mfa``.

``mfa_current`` applies ``mfa_max_age``: an MFA sign-in older than that counts as none any more, so the
roles that need MFA lock again and the portal asks for a new step-up.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from bridge.domain.errors import StepUpRefused
from bridge.domain.identity import Identity
from bridge.domain.stepup import StepUpPolicy, StepUpRequest


def proves_mfa(identity: Identity, accepted_amr: Collection[str], accepted_acr: Collection[str]) -> bool:
    """Whether the answer itself says MFA: an ``amr`` value or the ``acr`` among the accepted ones."""
    return bool(set(identity.amr) & set(accepted_amr)) or (identity.acr is not None and identity.acr in accepted_acr)


def verify(request: StepUpRequest, identity: Identity, policy: StepUpPolicy, *, now: int,
           current_session: str | None, session_live: bool) -> Identity:
    """The identity a step-up returned, verified against ``request`` (see the module), with ``mfa`` true.

    ``current_session``: the hash of the session the browser delivering the callback holds now (None: none);
    ``session_live``: whether the session that asked still exists. Raises StepUpRefused naming the check."""
    if (identity.connector_id, identity.issuer, identity.subject) != (
            request.connector_id, request.issuer, request.subject):
        raise StepUpRefused(
            f"step-up answered for another user (asked for {request.subject[:64]!r})", code="step_up_other_user",
            message="The identity provider signed in a different user than the one who asked for the MFA "
                    "sign-in, so it was not accepted. You are still signed in as before.",
            hint="Go back to the portal and choose \"Sign in again with MFA\"; at the identity provider, sign in "
                 "as yourself (sign out there first if it remembers someone else).")
    if not session_live or current_session != request.session_hash:
        raise StepUpRefused(
            "the session that asked for the step-up ended or is not this browser's", code="step_up_session_changed",
            message="The session that asked for the MFA sign-in has ended or changed (you signed out, it expired, "
                    "or another sign-in replaced it), so the MFA sign-in was not applied.",
            hint="Sign in again, then choose \"Sign in again with MFA\" from the portal.")
    _check_fresh(request, identity, policy, now)
    if not proves_mfa(identity, policy.accepted_amr, policy.accepted_acr):
        raise StepUpRefused(
            f"step-up answer without MFA (amr={list(identity.amr)[:8]}, acr={(identity.acr or '')[:100]!r})",
            code="step_up_no_mfa",
            message="Your identity provider signed you in again, but did not say that you used multi-factor "
                    "authentication, so the roles that need MFA stay locked.",
            hint="Try again and complete the MFA prompt of your identity provider. If it did not ask for a second "
                 "factor, tell your administrator (the request id below): the IdP may ignore the step-up request.")
    return replace(identity, mfa=True)


def _check_fresh(request: StepUpRequest, identity: Identity, policy: StepUpPolicy, now: int) -> None:
    """``auth_time`` within ``max_age`` (+ skew) of now, and not in the future (+ skew)."""
    at = identity.authn_time
    if at is None:
        reason = "the answer says nothing about when the user authenticated (no auth_time / AuthnInstant)"
    elif at > now + policy.clock_skew:
        reason = "the answer's auth_time is in the future"
    elif now - at > request.max_age + policy.clock_skew:
        reason = f"the answer's authentication is {now - at} s old (max_age {request.max_age} s)"
    else:
        return
    raise StepUpRefused(
        reason, code="step_up_stale",
        message="Your identity provider answered with an earlier sign-in instead of asking you to sign in again, "
                "so it does not show a fresh multi-factor authentication.",
        hint="Try again; if the identity provider does not ask you to sign in, sign out there first. If it keeps "
             "happening, tell your administrator (the request id below): the IdP may ignore prompt / max_age.")


def mfa_current(identity: Identity, mfa_max_age: int | None, now: int) -> Identity:
    """``identity`` with ``mfa`` false once its MFA sign-in is older than ``mfa_max_age`` seconds (or its age
    is unknown); unchanged without ``mfa_max_age`` or without MFA."""
    if not identity.mfa or mfa_max_age is None:
        return identity
    at = identity.authn_time
    if at is not None and now - at <= mfa_max_age:
        return identity
    return replace(identity, mfa=False)


def mfa_age(identity: Identity, now: int) -> int | None:
    """Seconds since the MFA sign-in (None: no MFA, or the IdP did not say when)."""
    if not identity.mfa or identity.authn_time is None:
        return None
    return max(0, now - identity.authn_time)
