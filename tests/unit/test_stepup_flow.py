"""Step-up through the sign-in sequence (``SignIn`` + ``LoginFlow`` + ``StepUps``) on MemoryStore with a dev
connector that can step up: an accepted answer replaces the session with the upgraded identity; a refused one
is audited and leaves the session as it was; a step-up with nothing to verify it, or whose connector no longer
offers step-up, is refused; ``mfa_max_age`` ends what an MFA sign-in counts for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from bridge.domain.errors import StepUpRefused
from bridge.domain.identity import Identity, PendingLogin
from bridge.domain.stepup import StepUpPolicy
from bridge.storage import hash_id
from bridge.upstream.base import ConnectorPolicy, StepUp
from bridge.upstream.dev import DevConnector
from tests.unit.test_signin import AT, BROWSER, SETTINGS, T0, World


class StepUpDev(DevConnector):
    """The dev connector as an IdP that answers a step-up: ``mfa=1`` in the callback says MFA (amr otp),
    ``age`` how many seconds ago the user authenticated."""

    def __init__(self, cfg: Any, *, base_url: str, mfa_max_age: int | None = None) -> None:
        super().__init__(cfg, base_url=base_url)
        self.policy = ConnectorPolicy(mfa_max_age=mfa_max_age)
        self.now = T0

    def step_up_policy(self) -> StepUpPolicy:
        return StepUpPolicy(max_age=300, accepted_amr=frozenset({"otp"}), mfa_max_age=self.policy.mfa_max_age)

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str], redirect_uri: str) -> Identity:
        identity = super().finish_login(pending, params, redirect_uri)
        mfa = params.get("mfa") == "1"
        return replace(identity, amr=("pwd", "otp") if mfa else ("pwd",), mfa=mfa,
                       authn_time=int(self.now) - int(params.get("age", "0")))


def _world(mfa_max_age: int | None = None) -> tuple[World, StepUpDev]:
    w = World()
    connector = StepUpDev(SETTINGS.connectors[0], base_url=SETTINGS.base_url, mfa_max_age=mfa_max_age)
    assert isinstance(connector, StepUp)
    w.flow.connectors["dev"] = connector  # the one dict every part reads
    w.connector = connector
    return w, connector


def _step_up(w: World, shash: str, **answer: str) -> Any:
    record = w.sessions.get(shash)
    assert record is not None
    asked = w.signin.step_ups.request(w.connector, shash, record.identity)
    assert asked is not None and asked.max_age == 300
    url = w.flow.begin(w.connector, "/portal", browser=BROWSER, step_up=asked)
    state = url.split("state=", 1)[1]
    return w.signin.complete("dev", {"state": state, "user": "bob", **answer}, AT, shash)


def test_an_accepted_step_up_replaces_the_session_with_the_upgraded_identity() -> None:
    w, _ = _world()
    first = w.sign_in("bob")
    old = hash_id(first.session_id)
    assert first.decision.grants == []
    up = _step_up(w, old, mfa="1", age="5")
    assert up.identity.mfa and [g.role_arn for g in up.decision.grants] == [g.role_arn for g in first.decision.locked]
    assert w.sessions.get(old) is None  # the session that asked ended; the new one holds the MFA identity
    record = w.sessions.get(hash_id(up.session_id))
    assert record is not None and record.identity.mfa and record.identity.authn_time == int(T0) - 5


@pytest.mark.parametrize(("answer", "code"), [({"age": "0"}, "step_up_no_mfa"),
                                              ({"mfa": "1", "age": "400"}, "step_up_stale")])
def test_a_refused_step_up_is_audited_and_changes_nothing(answer: dict[str, str], code: str) -> None:
    w, _ = _world()
    first = w.sign_in("bob")
    old = hash_id(first.session_id)
    before = w.sessions.get(old)
    with pytest.raises(StepUpRefused) as e:
        _step_up(w, old, **answer)
    assert e.value.code == code
    assert w.sessions.get(old) == before  # still signed in, as before
    assert w.audited("sign_in")[-1]["outcome"] == "failure" and w.audited("sign_in")[-1]["error"] == code


def test_a_step_up_answer_from_another_browser_session_is_refused() -> None:
    w, _ = _world()
    old = hash_id(w.sign_in("bob").session_id)
    record = w.sessions.get(old)
    assert record is not None
    asked = w.signin.step_ups.request(w.connector, old, record.identity)
    state = w.flow.begin(w.connector, "/portal", browser=BROWSER, step_up=asked).split("state=", 1)[1]
    with pytest.raises(StepUpRefused) as e:  # delivered with no session (or another one) in the browser
        w.signin.complete("dev", {"state": state, "user": "bob", "mfa": "1"}, AT, None)
    assert e.value.code == "step_up_session_changed" and w.sessions.get(old) == record


def test_a_step_up_with_nothing_to_verify_it_is_refused() -> None:
    w, c = _world()
    old = hash_id(w.sign_in("bob").session_id)
    record = w.sessions.get(old)
    assert record is not None
    asked = w.signin.step_ups.request(c, old, record.identity)
    state = w.flow.begin(c, "/portal", browser=BROWSER, step_up=asked).split("state=", 1)[1]
    with pytest.raises(StepUpRefused):  # LoginFlow.complete without a verifier: fail closed
        w.flow.complete(c, {"state": state, "user": "bob", "mfa": "1"}, browser=BROWSER)
    state = w.flow.begin(c, "/portal", browser=BROWSER, step_up=asked).split("state=", 1)[1]
    plain = DevConnector(SETTINGS.connectors[0], base_url=SETTINGS.base_url)
    w.flow.connectors["dev"] = plain  # reconfigured meanwhile: the connector no longer offers step-up
    with pytest.raises(StepUpRefused) as e:
        w.signin.complete("dev", {"state": state, "user": "bob", "mfa": "1"}, AT, old)
    assert e.value.code == "step_up_session_changed"
    assert w.signin.step_ups.request(plain, old, record.identity) is None  # and it asks for none


def test_mfa_max_age_locks_the_roles_again() -> None:
    w, _ = _world(mfa_max_age=600)
    up = _step_up(w, hash_id(w.sign_in("bob").session_id), mfa="1")
    shash = hash_id(up.session_id)
    w.now[0] = T0 + 600
    loaded = w.sessions.load(shash)
    assert loaded is not None and loaded.identity.mfa
    w.now[0] = T0 + 601
    loaded = w.sessions.load(shash)
    assert loaded is not None and not loaded.identity.mfa
    assert w.access.decide(loaded.identity).grants == []
