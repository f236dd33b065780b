"""bridge/core/stepup.py: every refusal of a step-up's answer, the accepted answer, mfa_max_age; the settings'
presets; what an OIDC / SAML step-up request adds. Pure: no IdP here (tests/integration/test_stepup.py has them)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.core.stepup import mfa_age, mfa_current, verify
from bridge.domain.errors import StepUpRefused
from bridge.domain.identity import Identity, PendingLogin
from bridge.domain.stepup import StepUpPolicy, StepUpRequest
from bridge.upstream.oidc_stepup import authorize_params
from bridge.upstream.stepup_settings import StepUpSettings

NOW = 1_800_000_000
REQ = StepUpRequest(session_hash="s1", connector_id="corp", issuer="https://idp", subject="00ubob",
                    asked_at=NOW - 30, max_age=300)
POLICY = StepUpPolicy(max_age=300, accepted_amr=frozenset({"mfa", "otp"}), accepted_acr=frozenset({"urn:loa:2"}))
GOOD = Identity(connector_id="corp", subject="00ubob", issuer="https://idp", authn_time=NOW - 20,
                amr=("pwd", "otp"), mfa=False)


def _verify(identity: Identity = GOOD, *, current: str | None = "s1", live: bool = True) -> Identity:
    return verify(REQ, identity, POLICY, now=NOW, current_session=current, session_live=live)


def test_an_answer_with_fresh_mfa_is_accepted_and_counts_as_mfa() -> None:
    got = _verify()
    assert got.mfa is True and got.subject == "00ubob" and got.authn_time == NOW - 20
    acr_only = replace(GOOD, amr=("pwd",), acr="urn:loa:2")
    assert _verify(acr_only).mfa is True


@pytest.mark.parametrize(("identity", "code"), [
    (replace(GOOD, subject="00ualice"), "step_up_other_user"),
    (replace(GOOD, issuer="https://evil"), "step_up_other_user"),
    (replace(GOOD, connector_id="other"), "step_up_other_user"),
    (replace(GOOD, authn_time=None), "step_up_stale"),
    (replace(GOOD, authn_time=NOW - 300 - 61), "step_up_stale"),
    (replace(GOOD, authn_time=NOW + 61), "step_up_stale"),
    (replace(GOOD, amr=("pwd",)), "step_up_no_mfa"),
    (replace(GOOD, amr=(), acr="urn:loa:1"), "step_up_no_mfa"),
    # the connector's own judgement is not taken: the answer itself must show an accepted value
    (replace(GOOD, amr=("pwd",), mfa=True), "step_up_no_mfa"),
])
def test_each_bad_answer_is_refused_with_its_code(identity: Identity, code: str) -> None:
    with pytest.raises(StepUpRefused) as e:
        _verify(identity)
    assert e.value.code == code and e.value.status == 403
    assert e.value.message and e.value.hint  # a page that says what happened and what to do


def test_the_clock_skew_is_allowed_at_both_ends() -> None:
    assert _verify(replace(GOOD, authn_time=NOW - 300 - 60)).mfa
    assert _verify(replace(GOOD, authn_time=NOW + 60)).mfa


@pytest.mark.parametrize(("current", "live"), [(None, True), ("s2", True), ("s1", False)])
def test_a_session_that_ended_or_changed_is_refused(current: str | None, live: bool) -> None:
    with pytest.raises(StepUpRefused) as e:
        _verify(current=current, live=live)
    assert e.value.code == "step_up_session_changed"


def test_the_other_user_check_comes_first() -> None:
    with pytest.raises(StepUpRefused) as e:  # another user, on an ended session, without MFA
        _verify(replace(GOOD, subject="x", amr=()), live=False)
    assert e.value.code == "step_up_other_user"


def test_mfa_max_age_ends_what_an_mfa_sign_in_counts_for() -> None:
    mfa = replace(GOOD, mfa=True, authn_time=NOW - 600)
    assert mfa_current(mfa, None, NOW) is mfa
    assert mfa_current(mfa, 600, NOW).mfa is True
    assert mfa_current(mfa, 599, NOW).mfa is False
    assert mfa_current(replace(mfa, authn_time=None), 600, NOW).mfa is False  # age unknown: not counted
    assert mfa_age(mfa, NOW) == 600 and mfa_age(replace(mfa, mfa=False), NOW) is None


def test_the_pending_login_keeps_the_request_through_json() -> None:
    p = PendingLogin(state="st", connector_id="corp", nonce="n", code_verifier="v", return_to="/portal",
                     created_at=NOW, step_up=REQ)
    assert PendingLogin.from_json(p.to_json()) == p
    plain = replace(p, step_up=None)
    assert "step_up" not in plain.to_json() and PendingLogin.from_json(plain.to_json()) == plain
    assert "s1" not in repr(REQ)  # the session hash keys the session: not in logs


def test_oidc_step_up_parameters_by_preset_and_override() -> None:
    assert authorize_params(StepUpSettings(), None, {"prompt": "consent"}) == {"prompt": "consent"}
    assert authorize_params(StepUpSettings(), REQ, {"prompt": "consent"}) == {"prompt": "login consent",
                                                                             "max_age": "300"}
    okta = authorize_params(StepUpSettings(preset="okta"), REQ, {})
    assert okta == {"prompt": "login", "max_age": "300", "acr_values": "urn:okta:loa:2fa:any"}
    assert authorize_params(StepUpSettings(preset="google"), REQ, {}) == {"max_age": "300"}
    assert authorize_params(StepUpSettings(preset="entra"), REQ, {}) == {"prompt": "login", "max_age": "300"}
    assert authorize_params(StepUpSettings(preset="keycloak"), REQ, {})["acr_values"] == "2"
    assert authorize_params(StepUpSettings(preset="keycloak", acr_values=["3"], prompt_login=False), REQ, {}) == {
        "max_age": "300", "acr_values": "3"}


def test_bad_step_up_settings_are_refused() -> None:
    from pydantic import ValidationError
    for bad in ({"preset": "auth0"}, {"max_age": -1}, {"mfa_max_age": 10}, {"prompt": "login"}):
        with pytest.raises(ValidationError):
            StepUpSettings.model_validate(bad)


def test_a_bad_step_up_setting_fails_at_startup_naming_each_problem() -> None:
    from bridge.config import settings_from_dict
    from bridge.domain.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"base_url": "https://bridge.example.com", "connectors": [
            {"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "bridge",
             "step_up": {"preset": "auth0", "max_age": -5}}]})
    text = "\n".join(e.value.problems)
    assert "step_up.preset" in text and "step_up.max_age" in text, text
