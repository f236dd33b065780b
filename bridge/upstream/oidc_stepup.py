"""What an OIDC step-up sign-in adds to the authorization request (docs/step-up-mfa.md "Asking the IdP"):
``prompt=login`` (merged with a ``consent`` already asked), ``max_age`` and ``acr_values``, as the
connector's ``step_up`` settings say. The answer is verified by bridge/core/stepup.py, not here.
"""

from __future__ import annotations

from bridge.domain.stepup import StepUpRequest
from bridge.upstream.stepup_settings import StepUpSettings


def authorize_params(cfg: StepUpSettings, step_up: StepUpRequest | None, extra: dict[str, str]) -> dict[str, str]:
    """``extra`` (the plain sign-in's extra parameters) with a step-up's, when ``step_up`` is set."""
    if step_up is None:
        return extra
    out = dict(extra)
    if cfg.asks_prompt_login():
        prompts = out.get("prompt", "").split()
        out["prompt"] = " ".join(["login", *[p for p in prompts if p != "login"]])
    out["max_age"] = str(step_up.max_age)
    acr_values = cfg.asks_acr_values()
    if acr_values:
        out["acr_values"] = " ".join(acr_values)
    return out
