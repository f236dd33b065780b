"""What a SAML step-up AuthnRequest adds (docs/step-up-mfa.md "Asking the IdP"): ``ForceAuthn="true"`` and a
``RequestedAuthnContext`` naming the configured class refs; and the assertion's ``AuthnInstant``, which the
core checks for freshness (bridge/core/stepup.py). The answer is verified there, not here.
"""

from __future__ import annotations

from typing import Any

from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from bridge.upstream.saml_settings import SamlConnectorSettings


def security_for_step_up(cfg: SamlConnectorSettings, security: dict[str, Any]) -> dict[str, Any]:
    """python3-saml's ``security`` settings with the step-up's RequestedAuthnContext."""
    contexts = cfg.step_up_contexts()
    if not contexts:
        return security
    return {**security, "requestedAuthnContext": contexts,
            "requestedAuthnContextComparison": cfg.step_up.authn_context_comparison}


def authn_instant(resp: OneLogin_Saml2_Response) -> int | None:
    """The latest ``AuthnInstant`` of the assertion's AuthnStatements (epoch seconds), None without one."""
    instants = []
    for st in resp._query_assertion("/saml:AuthnStatement"):
        value = st.get("AuthnInstant")
        if value:
            try:
                instants.append(int(OneLogin_Saml2_Utils.parse_SAML_to_time(value)))
            except ValueError:
                continue
    return max(instants) if instants else None
