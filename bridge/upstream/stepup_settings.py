"""A connector's ``step_up`` settings (docs/step-up-mfa.md "Asking the IdP"): what a step-up sign-in asks the
IdP for, and for how long an MFA sign-in counts. pydantic only.

OIDC: ``prompt=login`` (``prompt_login``), ``max_age`` and ``acr_values``; SAML: ``ForceAuthn="true"``
(``force_authn``) and a ``RequestedAuthnContext`` with ``authn_contexts`` (default: the connector's
``mfa_authn_contexts``). ``preset`` gives the values an IdP is known to honour; an explicit option wins.
What is *accepted* back is the connector's MFA judgement (``mfa_amr_values`` / ``mfa_acr_values``, SAML
``mfa_authn_contexts``) — never what was asked.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bridge.domain.settings_base import SettingsModel
from bridge.domain.stepup import StepUpPolicy

StepUpPreset = Literal["none", "okta", "entra", "google", "keycloak"]

# preset → (prompt=login, acr_values asked). Keycloak takes a level of authentication (LoA) of its browser
# flow as acr_values ("2": the level whose step asks the second factor) and answers it in acr.
STEP_UP_PRESETS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "none": (True, ()),
    "okta": (True, ("urn:okta:loa:2fa:any",)),
    "entra": (True, ()),  # Entra ID ignores acr_values; MFA is its Conditional Access's (claims/acrs: not sent)
    "google": (False, ()),  # Google knows no prompt=login and sends no amr: max_age only
    "keycloak": (True, ("2",)),
}


class StepUpSettings(SettingsModel):
    preset: StepUpPreset = Field("none", description="values an IdP honours: none, okta, entra, google, keycloak")
    max_age: int = Field(300, ge=0, le=86400, description="seconds: the step-up sign-in must be at most this old "
                                                          "(OIDC max_age; checked on the answer's auth_time)")
    prompt_login: bool | None = Field(None, description="send prompt=login (None: the preset's)")
    acr_values: list[str] | None = Field(None, description="OIDC acr_values asked (None: the preset's)")
    force_authn: bool = Field(True, description="SAML: ForceAuthn=\"true\" in the step-up AuthnRequest")
    authn_contexts: list[str] | None = Field(None, description="SAML RequestedAuthnContext class refs "
                                                               "(None: mfa_authn_contexts)")
    authn_context_comparison: Literal["exact", "minimum", "better", "maximum"] = Field(
        "exact", description="SAML: the RequestedAuthnContext Comparison")
    mfa_max_age: int | None = Field(None, ge=60, le=7 * 86400,
                                    description="seconds after the MFA sign-in it stops counting and step-up is "
                                                "asked again (None: the whole session)")

    def asks_prompt_login(self) -> bool:
        return STEP_UP_PRESETS[self.preset][0] if self.prompt_login is None else self.prompt_login

    def asks_acr_values(self) -> tuple[str, ...]:
        return STEP_UP_PRESETS[self.preset][1] if self.acr_values is None else tuple(self.acr_values)

    def policy(self, *, accepted_amr: list[str] | tuple[str, ...], accepted_acr: list[str] | tuple[str, ...],
               clock_skew: int) -> StepUpPolicy:
        """What a step-up's answer is verified against (bridge/core/stepup.py)."""
        return StepUpPolicy(max_age=self.max_age, accepted_amr=frozenset(accepted_amr),
                            accepted_acr=frozenset(accepted_acr), clock_skew=clock_skew, mfa_max_age=self.mfa_max_age)
