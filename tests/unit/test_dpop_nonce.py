"""DPoP nonces (RFC 9449 §8, bridge/core/dpop_nonce.py) with an injected clock and keys: a nonce made is taken in
its window and the next, refused once older, forged, another app's, or under a key no instance holds; every
instance with the same keys takes every other's. Then through the app's test client (tests/unit/test_exchange.py's
environment, ``dpop: required`` and ``dpop_nonce: true``): the first exchange is a 400 ``use_dpop_nonce`` with a
``DPoP-Nonce`` header the page may read, the retry with it gets credentials (and a fresh nonce), a stale nonce is
refused, nothing is issued on a refusal; an app without ``dpop_nonce`` sends no nonce; the config checks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError, settings_from_dict
from bridge.core.dpop import DpopRefused, Proof
from bridge.core.dpop_nonce import NONCE_SETTLE, NONCE_SKEW, NONCE_WINDOW, DpopNonces
from bridge.web.services import build_services
from tests.clock import Clock
from tests.dpop_proofs import ec_key, proof
from tests.unit.test_exchange import ORIGIN, Env, RecordingSts, _build, config, form, id_token

URL = "https://bridge.example.com/oauth/token"
START = 1_800_000_000.0 - 1_800_000_000.0 % NONCE_WINDOW  # the start of a window
KEY_A, KEY_B = b"a" * 32, b"b" * 32
KEY = ec_key()


def nonces(clock: Clock, keys: tuple[bytes, ...] = (KEY_A,)) -> DpopNonces:
    return DpopNonces(lambda: keys, clock=clock, apps=["photos", "albums"])


def with_nonce(nonce: str | None) -> Proof:
    return Proof(jkt="j", jti="x" * 16, iat=0, ath=None, nonce=nonce)


def refused(n: DpopNonces, nonce: str | None, client_id: str = "photos") -> DpopRefused:
    with pytest.raises(DpopRefused) as e:
        n.check(client_id, with_nonce(nonce))
    assert e.value.oauth == "use_dpop_nonce" and e.value.hint and "DPoP-Nonce" in e.value.hint
    return e.value


@pytest.mark.parametrize("made_at", [START, START + NONCE_WINDOW - 1])  # early and late in its window
def test_a_nonce_is_taken_in_its_window_and_the_next_then_refused(made_at: float) -> None:
    clock = Clock(made_at)
    n = nonces(clock)
    nonce = n.fresh("photos")
    assert nonce and len(nonce) == 22 and nonce == n.fresh("photos")  # base64url of 16 bytes, the same all window
    n.check("photos", with_nonce(nonce))
    clock.now = START + 2 * NONCE_WINDOW - 1  # the next window's last second: at least 5 minutes after made_at
    n.check("photos", with_nonce(nonce))
    assert n.fresh("photos") != nonce
    clock.now = START + 2 * NONCE_WINDOW  # two windows on: at most 10 minutes after it was made
    e = refused(n, nonce)
    assert e.code == "dpop_nonce_stale" and "5 to 10 minutes" in e.message


def test_no_nonce_a_forged_one_or_another_apps_is_refused() -> None:
    n = nonces(Clock(START + 10))
    assert refused(n, None).code == "dpop_nonce_required"
    assert "has no nonce claim" in refused(n, None).message
    forged = n.fresh("photos")
    assert forged
    for bad in ("", "x" * 22, forged[:-1] + ("A" if forged[-1] != "A" else "B"), forged + "=", "é" * 22):
        assert refused(n, bad).code == "dpop_nonce_stale"
    assert refused(n, n.fresh("albums"), "photos").code == "dpop_nonce_stale"  # one app's is not another's
    assert refused(nonces(Clock(START + 10), (KEY_B,)), forged).code == "dpop_nonce_stale"  # another key's


def test_instances_with_the_same_keys_take_each_others_nonces_their_clocks_a_little_apart() -> None:
    ahead, behind = Clock(START + NONCE_WINDOW + 1), Clock(START + NONCE_WINDOW + 1 - NONCE_SKEW)
    made = nonces(ahead).fresh("photos")  # by an instance already in the next window
    nonces(behind).check("photos", with_nonce(made))  # an instance 60 s behind, still in the window before
    behind.now -= 2  # more than NONCE_SKEW behind: a nonce from its future is not one it made
    assert refused(nonces(behind), made).code == "dpop_nonce_stale"


def test_the_newest_key_makes_nonces_and_every_key_takes_them() -> None:
    clock = Clock(START)
    old = nonces(clock, (KEY_A,)).fresh("photos")
    rotated = nonces(clock, (KEY_A, KEY_B))  # a cache key added: nonces made under it, the old ones still taken
    assert rotated.fresh("photos") == nonces(clock, (KEY_B,)).fresh("photos") != old
    rotated.check("photos", with_nonce(old))


def test_a_new_key_makes_nonces_only_once_every_instance_can_have_it() -> None:
    """Keys reach the instances one by one: the newest key makes nonces once it is NONCE_SETTLE old, so an instance
    that has not loaded it yet still takes every nonce handed out; when every key is newer, the oldest makes them."""
    clock = Clock(START)
    made = (START - 86_400, START)  # KEY_A a day old, KEY_B just generated
    rotated = DpopNonces(lambda: (KEY_A, KEY_B), made=lambda: made, clock=clock, apps=["photos"])
    behind = nonces(clock, (KEY_A,))  # an instance that has not loaded KEY_B yet
    behind.check("photos", with_nonce(rotated.fresh("photos")))
    clock.now = START + NONCE_SETTLE - 1
    behind.check("photos", with_nonce(rotated.fresh("photos")))
    clock.now = START + NONCE_SETTLE  # settled: KEY_B makes them (by now on every instance)
    assert rotated.fresh("photos") == nonces(clock, (KEY_B,)).fresh("photos")
    young = DpopNonces(lambda: (KEY_A, KEY_B), made=lambda: (START, START), clock=Clock(START), apps=["photos"])
    assert young.fresh("photos") == nonces(Clock(START), (KEY_A,)).fresh("photos")


def test_the_cache_keys_say_when_they_were_generated(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from bridge.keys.signing import generate_cache_key, generate_key, load_keyring

    generate_key(tmp_path)
    generate_cache_key(tmp_path, now=datetime(2026, 12, 7, 15, 0, 0, tzinfo=UTC))
    named = tmp_path / "cache-by-hand.key"
    named.write_bytes((tmp_path / next(p.name for p in tmp_path.glob("cache-2026*"))).read_bytes())
    named.chmod(0o600)
    ring, problems = load_keyring(tmp_path)
    assert not problems and ring is not None
    # the name without a stamp: an old key
    assert ring.cache_made == (datetime(2026, 12, 7, 15, 0, 0, tzinfo=UTC).timestamp(), 0.0)


def test_an_app_without_dpop_nonce_and_an_exchange_without_a_proof_need_none() -> None:
    n = nonces(Clock(START))
    assert n.fresh("other") is None and DpopNonces(tuple, clock=Clock(START), apps=["photos"]).fresh("photos") is None
    n.check("other", with_nonce(None))
    n.check("photos", None)  # dpop: insecure_optional, no proof sent: nothing to carry a nonce


def test_the_proofs_nonce_claim_is_read() -> None:
    from bridge.core.dpop import check_proof

    def nonce_of(**claims: Any) -> str | None:
        return check_proof([proof(KEY, URL, iat=START, **claims)], method="POST", url=URL, now=START,
                           subject_token="t").nonce

    assert nonce_of() is None and nonce_of(nonce="abc") == "abc" and nonce_of(nonce=12) == ""


# ------------------------------------------------------------------ through the bridge's HTTP side


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return _build(config(tmp_path, dpop="required", dpop_nonce=True), tmp_path)


def post(env: Env, dpop: str | None, origin: str | None = ORIGIN, **overrides: Any) -> Any:
    return env.client.post("/oauth/token", data=form(subject_token=id_token(), **overrides), headers={
        **({"Origin": origin} if origin else {}), **({"DPoP": dpop} if dpop else {})})


def use_dpop_nonce(r: Any, code: str) -> str:
    assert r.status_code == 400 and r.is_json
    body = r.get_json()
    assert body["error"] == "use_dpop_nonce" and body["error_code"] == code and body["hint"], body
    assert "credentials" not in body and "access_token" not in body
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN and r.headers["Cache-Control"] == "no-store"
    assert r.headers["Access-Control-Expose-Headers"] == "DPoP-Nonce"  # the page reads the nonce
    nonce: str = r.headers["DPoP-Nonce"]
    return nonce


def test_the_first_exchange_gets_a_nonce_and_its_retry_gets_credentials(env: Env) -> None:
    nonce = use_dpop_nonce(post(env, proof(KEY, URL)), "dpop_nonce_required")
    assert env.sts.calls == []
    ok = post(env, proof(KEY, URL, nonce=nonce))
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["dpop_jkt"] == KEY.thumbprint() and ok.get_json()["credentials"]["AccessKeyId"]
    assert ok.headers["DPoP-Nonce"] == nonce and ok.headers["Access-Control-Expose-Headers"] == "DPoP-Nonce"
    assert len(env.sts.calls) == 1
    # the nonce is not single use (the proof's jti is): a new proof with it is taken; the same proof is not
    again = proof(KEY, URL, nonce=nonce)
    assert post(env, again).status_code == 200
    replayed = post(env, again)
    assert replayed.get_json()["error_code"] == "dpop_proof_replayed" and replayed.headers["DPoP-Nonce"]
    assert len(env.sts.calls) == 2


def test_a_stale_nonce_is_refused_with_a_fresh_one_and_nothing_is_issued(env: Env) -> None:
    nonce = env.svc.exchange.nonces.fresh("photos")
    assert nonce
    later = time.time() + 2 * NONCE_WINDOW
    env.svc.exchange.nonces.clock = env.svc.exchange.clock = lambda: later  # 10 minutes on; the proof made then
    stale = post(env, proof(KEY, URL, iat=later, nonce=nonce))
    fresh = use_dpop_nonce(stale, "dpop_nonce_stale")
    assert fresh != nonce and "not a current nonce of this app" in stale.get_json()["error_description"]
    forged = use_dpop_nonce(post(env, proof(KEY, URL, iat=later, nonce="A" * 22)), "dpop_nonce_stale")
    assert forged == fresh and env.sts.calls == []


def test_a_bad_proof_is_still_invalid_dpop_proof_and_carries_a_nonce(env: Env) -> None:
    r = post(env, proof(KEY, "https://evil.example/oauth/token"))
    assert r.get_json()["error"] == "invalid_dpop_proof" and r.get_json()["error_code"] == "dpop_proof_mismatch"
    assert r.headers["DPoP-Nonce"]
    origin = post(env, proof(KEY, URL), origin="https://evil.example")  # no CORS for another origin: nothing exposed
    assert origin.get_json()["error_code"] == "exchange_origin_refused"
    assert not [k for k, _ in origin.headers.items() if k.lower().startswith("access-control")]
    assert env.sts.calls == []


def test_an_app_without_dpop_nonce_gets_no_nonce_and_the_preflight_is_unchanged(tmp_path: Path) -> None:
    env = _build(config(tmp_path, dpop="required"), tmp_path)
    r = post(env, proof(KEY, URL))
    assert r.status_code == 200 and "DPoP-Nonce" not in r.headers
    assert r.headers["Access-Control-Expose-Headers"] == "DPoP-Nonce"  # harmless: there is none to read
    pre = env.client.options("/oauth/token", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "dpop"})
    assert pre.status_code == 204 and "Access-Control-Expose-Headers" not in pre.headers
    assert "DPoP-Nonce" not in pre.headers


def test_the_config_checks_of_dpop_nonce(tmp_path: Path) -> None:
    s = settings_from_dict(config(tmp_path))
    assert s.apps[0].dpop_nonce is False  # opt-in: a client's first exchange costs a round trip
    with pytest.raises(ConfigError, match=r"apps\[0\]\.dpop_nonce: the app takes no DPoP proof"):
        settings_from_dict(config(tmp_path, dpop="insecure_off", dpop_nonce=True))
    raw = config(tmp_path, dpop_nonce=True)
    raw["credential_cache"] = {"enabled": False}
    for key in (tmp_path / "keys").glob("cache-*.key"):
        key.unlink()
    with pytest.raises(ConfigError, match=r"apps \['photos'\] use dpop_nonce, whose nonces are derived from the "
                                          "credential cache key"):
        build_services(settings_from_dict(raw), store=None, sts=RecordingSts())  # type: ignore[arg-type]
