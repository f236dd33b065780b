"""DPoP proofs (RFC 9449, bridge/core/dpop.py) with an injected clock: a good proof of each algorithm gives its key's
RFC 7638 thumbprint; every bad proof is refused with the check that failed; the app's modes and a DPoP-bound
subject token (``cnf.jkt``). Then through the app's test client (tests/unit/test_exchange.py's environment,
``dpop: required``): the proof's thumbprint in the answer and the audit record (never the proof), a replayed
``jti``, a missing header, a proof for the ``Host`` sent instead of ``base_url``, the CORS preflight, and the
startup warnings of the modes."""

from __future__ import annotations

import base64
import json
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from bridge.config import settings_from_dict
from bridge.core.dpop import IAT_WINDOW, DpopRefused, app_proof, check_proof, thumbprint, token_hash
from tests.dpop_proofs import b64, ec_key, proof
from tests.unit.test_exchange import ORIGIN, Env, _build, config, form, id_token

URL = "https://bridge.example.com/oauth/token"
NOW = 1_800_000_000
KEY = ec_key()


def check(values: list[str], *, url: str = URL, now: float = NOW, token: str = "subject") -> Any:  # noqa: S107
    return check_proof(values, method="POST", url=url, now=now, subject_token=token)


def refused(values: list[str], **kw: Any) -> DpopRefused:
    with pytest.raises(DpopRefused) as e:
        check(values, **kw)
    assert "eyJ" not in e.value.message  # never the proof (nor a token) in the message
    return e.value


@pytest.mark.parametrize("key", [ec_key(), RSAKey.generate_key(2048), OKPKey.generate_key("Ed25519")],
                         ids=["ES256", "RS256", "Ed25519"])
def test_a_good_proof_gives_its_keys_thumbprint(key: ECKey | RSAKey | OKPKey) -> None:
    alg = "Ed25519" if isinstance(key, OKPKey) else None  # "EdDSA" too, with joserfc's deprecation warning
    p = check([proof(key, URL, iat=NOW, alg=alg)])
    assert p.jkt == key.thumbprint() and p.iat == NOW and p.until == NOW + 2 * IAT_WINDOW + 5 and p.ath is None


def test_the_thumbprint_is_rfc_7638s() -> None:  # the example of RFC 7638 §3.1
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
                "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQ"
                "MicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcR"
                "wr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_htu_is_compared_without_query_fragment_case_and_default_port() -> None:
    assert check([proof(KEY, "https://BRIDGE.example.com:443/oauth/token?x=1#f", iat=NOW)]).jkt == KEY.thumbprint()
    assert check([proof(KEY, URL, iat=NOW - IAT_WINDOW)]) and check([proof(KEY, URL, iat=NOW + IAT_WINDOW)])


def _b64raw(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed_payload(payload: bytes) -> str:
    from joserfc import jws

    return jws.serialize_compact({"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.as_dict(private=False)}, payload,
                                 KEY, algorithms=["ES256"])


def _rsa_1024_proof() -> str:
    with warnings.catch_warnings():  # joserfc warns about a short key: that is the point
        warnings.simplefilter("ignore")
        return proof(RSAKey.generate_key(1024), URL, iat=NOW)


def _forged() -> str:  # the header names KEY, another key signed it
    good = proof(KEY, URL, iat=NOW).split(".")
    other = proof(ec_key(), URL, iat=NOW).split(".")
    return ".".join([good[0], good[1], other[2]])


BAD: dict[str, tuple[Any, str, str]] = {
    "no header": (lambda: [], "dpop_proof_invalid", "exactly one DPoP header (0"),
    "two headers": (lambda: [proof(KEY, URL, iat=NOW)] * 2, "dpop_proof_invalid", "exactly one DPoP header (2"),
    "not a JWT": (lambda: ["not-a-jwt"], "dpop_proof_invalid", "not a signed JWT"),
    "too long": (lambda: ["a." * 5000 + "b"], "dpop_proof_invalid", "longer than"),
    "nested header": (lambda: [_b64raw(b"[" * 2900 + b"]" * 2900) + "." + b64({}) + ".c2ln"], "dpop_proof_invalid",
                      "header is not base64url JSON"),
    "nested payload": (lambda: [_signed_payload(b"[" * 2500 + b"]" * 2500)], "dpop_proof_invalid",
                       "payload is not base64url JSON"),
    "typ JWT": (lambda: [proof(KEY, URL, iat=NOW, header={"typ": "JWT"})], "dpop_proof_invalid", "typ must be"),
    "alg none": (lambda: [proof(KEY, URL, iat=NOW, alg="none")], "dpop_proof_invalid", "alg 'none' is not accepted"),
    "alg HS256": (lambda: [proof(KEY, URL, iat=NOW, alg="HS256")], "dpop_proof_invalid", "alg 'HS256' is not"),
    "alg RS256 with an EC key": (lambda: [b64({"typ": "dpop+jwt", "alg": "RS256", "jwk": KEY.as_dict(private=False)})
                                          + "." + b64({"htm": "POST"}) + ".c2ln"],
                                 "dpop_proof_invalid", "not a RSA key"),
    "no jwk": (lambda: [proof(KEY, URL, iat=NOW, header={"jwk": None})], "dpop_proof_invalid", "has no jwk"),
    "EC private key in jwk": (lambda: [proof(KEY, URL, iat=NOW, private=True)], "dpop_proof_invalid",
                              "private key members (d)"),
    "RSA private key in jwk": (lambda: [proof(RSAKey.generate_key(2048), URL, iat=NOW, private=True)],
                               "dpop_proof_invalid", "private key members (d, p, q, dp, dq, qi)"),
    "RSA-1024": (lambda: [_rsa_1024_proof()], "dpop_proof_invalid",
                 "shorter than 2048"),
    "signed by another key": (lambda: [_forged()], "dpop_proof_invalid", "signature does not verify"),
    "htm GET": (lambda: [proof(KEY, URL, iat=NOW, htm="GET")], "dpop_proof_mismatch", "htm must be POST"),
    "htu another host": (lambda: [proof(KEY, "https://evil.example.com/oauth/token", iat=NOW)],
                         "dpop_proof_mismatch", f"htu must be {URL}"),
    "htu http": (lambda: [proof(KEY, "http://bridge.example.com/oauth/token", iat=NOW)], "dpop_proof_mismatch",
                 "htu must be"),
    "htu another path": (lambda: [proof(KEY, "https://bridge.example.com/oauth/token/x", iat=NOW)],
                         "dpop_proof_mismatch", "htu must be"),
    "no htu": (lambda: [_with_claims(htu=None)], "dpop_proof_mismatch", "htu must be"),
    "stale iat": (lambda: [proof(KEY, URL, iat=NOW - IAT_WINDOW - 1)], "dpop_proof_stale", "61 s from"),
    "iat ahead": (lambda: [proof(KEY, URL, iat=NOW + IAT_WINDOW + 1)], "dpop_proof_stale", "at most 60 s"),
    "short jti": (lambda: [proof(KEY, URL, iat=NOW, jti="1")], "dpop_proof_invalid", "16..256"),
    "no jti": (lambda: [proof(KEY, URL, iat=NOW, jti=None)], "dpop_proof_invalid", "16..256"),
    "ath of another token": (lambda: [proof(KEY, URL, iat=NOW, ath=token_hash("other"))], "dpop_key_mismatch",
                             "ath is not the hash"),
}


@pytest.mark.parametrize("case", BAD)
def test_every_bad_proof_is_refused_saying_why(case: str) -> None:
    make, code, says = BAD[case]
    e = refused(make())
    assert e.code == code and says in e.message and e.hint, (e.code, e.message)


def test_an_iat_or_jti_of_the_wrong_type_is_refused() -> None:
    for claims, says in [({"iat": "soon"}, "no iat"), ({"iat": True}, "no iat"), ({"iat": None}, "no iat"),
                         ({"jti": 12345678901234567890}, "16..256"), ({"jti": "j" * 257}, "16..256")]:
        with pytest.raises(DpopRefused, match=says):
            check([_with_claims(**claims)])
    assert check([_with_claims()]).jti == "j" * 20


def _with_claims(**claims: Any) -> str:
    from joserfc import jws

    head = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.as_dict(private=False)}
    body = {k: v for k, v in {"htm": "POST", "htu": URL, "iat": NOW, "jti": "j" * 20, **claims}.items()
            if v is not None}
    return jws.serialize_compact(head, json.dumps(body), KEY, algorithms=["ES256"])


def mode(m: str, values: list[str], cnf: object = None, token: str = "subject") -> Any:  # noqa: S107
    return app_proof(m, values, url=URL, now=NOW, subject_token=token, cnf=cnf)


def test_the_modes_and_a_bound_subject_token() -> None:
    good = [proof(KEY, URL, iat=NOW)]
    assert mode("insecure_optional", []) is None and mode("insecure_off", []) is None
    assert mode("insecure_optional", good).jkt == KEY.thumbprint()
    for m, values, cnf, code in [("required", [], None, "dpop_proof_missing"),
                                 ("insecure_off", good, None, "dpop_not_used"),
                                 ("insecure_off", [], {"jkt": KEY.thumbprint()}, "dpop_not_used"),
                                 ("insecure_optional", [], {"jkt": KEY.thumbprint()}, "dpop_proof_missing"),
                                 ("insecure_optional", ["bad"], None, "dpop_proof_invalid"),  # never ignored
                                 ("required", good, {"jkt": ec_key().thumbprint()}, "dpop_key_mismatch"),
                                 ("required", good, {"jkt": KEY.thumbprint()}, "dpop_key_mismatch"),  # no ath
                                 ("required", good, {"x5t#S256": "abc"}, "dpop_key_mismatch"),
                                 ("required", good, "jkt", "dpop_key_mismatch")]:
        with pytest.raises(DpopRefused) as e:
            mode(m, values, cnf)
        assert e.value.code == code, (m, cnf, e.value.message)
    bound = [proof(KEY, URL, iat=NOW, ath=token_hash("the-token"))]
    assert mode("required", bound, {"jkt": KEY.thumbprint()}, token="the-token").jkt == KEY.thumbprint()


# Through the app (Flask test client, MemoryStore, a recording STS): base_url is https://bridge.example.com.

@pytest.fixture
def env(tmp_path: Path) -> Env:
    return _build(config(tmp_path, dpop="required"), tmp_path)


def post(env: Env, data: dict[str, Any], dpop: str | None, **headers: str) -> Any:
    return env.client.post("/oauth/token", data=data, headers={"Origin": ORIGIN, **headers,
                                                                **({"DPoP": dpop} if dpop else {})})


def test_a_proven_exchange_names_the_key_in_the_answer_and_the_audit_and_a_replay_is_refused(env: Env) -> None:
    p = proof(KEY, URL)
    r = post(env, form(), p)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["dpop_jkt"] == KEY.thumbprint() and body["token_type"] == "N_A"
    audit = env.audit.read_text()
    record = [json.loads(line) for line in audit.splitlines() if '"credentials"' in line][-1]
    assert record["dpop_jkt"] == KEY.thumbprint() and p not in audit and p.split(".")[2] not in audit
    again = post(env, form(subject_token=id_token()), p)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_dpop_proof"
    assert again.get_json()["error_code"] == "dpop_proof_replayed" and again.get_json()["hint"]
    assert again.headers["Cache-Control"] == "no-store" and len(env.sts.calls) == 1


def test_no_proof_and_a_proof_for_the_host_sent_are_refused_and_nothing_is_issued(env: Env) -> None:
    missing = post(env, form(), None)
    assert missing.status_code == 400 and missing.get_json()["error_code"] == "dpop_proof_missing"
    assert missing.headers["Access-Control-Allow-Origin"] == ORIGIN  # the page can read why
    # the Host header says evil.example; the proof names it: base_url decides, not the Host
    host = post(env, form(), proof(KEY, "http://evil.example/oauth/token"), Host="evil.example")
    assert host.status_code == 400 and host.get_json()["error_code"] == "dpop_proof_mismatch"
    joined = post(env, form(), f"{proof(KEY, URL)}, {proof(KEY, URL)}")  # two headers joined by a proxy
    assert joined.status_code == 400 and "exactly one DPoP header (2" in joined.get_json()["error_description"]
    workload = env.client.post("/oauth/token", data=form(client_id=None), headers={"DPoP": proof(KEY, URL)})
    assert workload.status_code == 400 and workload.get_json()["error_code"] == "dpop_not_used"
    assert env.sts.calls == []


def test_the_preflight_allows_the_dpop_header(env: Env) -> None:
    r = env.client.options("/oauth/token", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "dpop"})
    assert r.status_code == 204 and "DPoP" in r.headers["Access-Control-Allow-Headers"]


def test_the_default_is_required_and_startup_says_so_weaker_modes_warn(tmp_path: Path) -> None:
    raw = config(tmp_path)
    del raw["apps"][0]["dpop"]
    s = settings_from_dict(raw)
    assert s.apps[0].dpop == "required"
    (unset,) = [w for w in s.warnings() if w.startswith("apps[0] (Photo album)")]
    assert "dpop is not set, so DPoP proofs are REQUIRED" in unset and "dpop: insecure_optional" in unset
    for m in ("insecure_optional", "insecure_off"):
        (weak,) = [w for w in settings_from_dict(config(tmp_path, dpop=m)).warnings() if w.startswith("apps[0] (")]
        assert f"dpop: {m}: exchanges without a DPoP proof are accepted" in weak
        # truthful: even `required` does not protect a plain (unbound) ID token
        assert "can be replayed" in weak and "Even `required` does not stop whoever holds" in weak
    required = settings_from_dict(config(tmp_path, dpop="required"))
    assert not [w for w in required.warnings() if w.startswith("apps[0] (")]
    with pytest.raises(Exception, match="dpop"):
        settings_from_dict(config(tmp_path, dpop="sometimes"))


@pytest.mark.parametrize(("old", "new"), [("optional", "insecure_optional"), ("off", "insecure_off")])
def test_the_old_spellings_of_the_weak_modes_are_refused_naming_the_new(tmp_path: Path, old: str, new: str) -> None:
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        settings_from_dict(config(tmp_path, dpop=old))
    assert f"`dpop: {old}` is now spelled `dpop: {new}`" in str(e.value) and "apps" in str(e.value)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=20)
HEADERS = st.fixed_dictionaries({}, optional={"typ": st.sampled_from(["dpop+jwt", "JWT"]) | JSON,
                                              "alg": st.sampled_from(["ES256", "RS256", "EdDSA", "none"]) | JSON,
                                              "jwk": st.just(KEY.as_dict(private=False)) | JSON})


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=400) | st.builds(lambda h, p, s: f"{b64(h)}.{b64(p)}.{s}", HEADERS,
                                               st.dictionaries(st.text(max_size=8), JSON, max_size=6),
                                               st.text(alphabet="abcXYZ019-_", max_size=90)))
def test_any_header_is_refused_as_a_bad_proof_never_an_error(value: str) -> None:
    with pytest.raises(DpopRefused) as e:
        check([value])
    assert e.value.code in ("dpop_proof_invalid", "dpop_proof_mismatch", "dpop_proof_stale", "dpop_key_mismatch")


@pytest.mark.parametrize("iat", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_iat_is_a_400_never_a_500(env: Env, iat: str) -> None:
    from joserfc import jws

    head = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.as_dict(private=False)}
    body = f'{{"htm": "POST", "htu": "{URL}", "iat": {iat}, "jti": "{"j" * 20}"}}'  # what json.loads reads as a float
    r = post(env, form(), jws.serialize_compact(head, body, KEY, algorithms=["ES256"]))
    assert r.status_code == 400 and r.is_json, r.get_data(as_text=True)[:200]
    assert r.get_json()["error"] == "invalid_dpop_proof" and r.get_json()["error_code"] == "dpop_proof_invalid"
    assert "finite number" in r.get_json()["error_description"] and env.sts.calls == []


def test_a_spent_jti_is_refused_at_every_app_and_by_an_instance_whose_clock_is_behind(tmp_path: Path) -> None:
    from bridge.runtime.app import create_app
    from bridge.storage.memory import MemoryStore
    from bridge.web.services import build_services
    from tests.unit.test_exchange import KEY as IDP_KEY
    from tests.unit.test_exchange import RecordingSts

    raw = config(tmp_path, dpop="required")
    raw["apps"].append({**raw["apps"][0], "client_id": "albums", "name": "Albums"})
    settings = settings_from_dict(raw)
    t = float(int(time.time()))
    store_now = [t + IAT_WINDOW - 1]
    svc = build_services(settings, store=MemoryStore(clock=lambda: store_now[0]), sts=RecordingSts())  # type: ignore[arg-type]
    corp = svc.connectors["corp"]
    corp._meta, corp._meta_at = {"issuer": "https://idp.example.com", "jwks_uri": "x"}, time.time()  # type: ignore[attr-defined]
    corp._jwks, corp._jwks_at = KeySet([IDP_KEY]), time.time()  # type: ignore[attr-defined]
    client = create_app(settings, services=svc).test_client()
    svc.exchange.clock = lambda: store_now[0]  # instance A: the proof made 59 s ago, still fresh
    p = proof(KEY, URL, iat=t)

    def send(client_id: str) -> Any:
        return client.post("/oauth/token", data=form(client_id=client_id, subject_token=id_token()),
                           headers={"Origin": ORIGIN, "DPoP": p})

    assert send("photos").status_code == 200
    assert send("albums").get_json()["error_code"] == "dpop_proof_replayed"  # one namespace: any app's
    # 110 s after iat: instance B's clock is 60 s behind, so to it the proof is 50 s old — the jti is still kept
    store_now[0] = t + 110
    svc.exchange.clock = lambda: t + 50
    assert send("photos").get_json()["error_code"] == "dpop_proof_replayed"
    store_now[0] = t + 2 * IAT_WINDOW + 6  # no instance within 60 s of the store's clock takes the proof now
    svc.exchange.clock = lambda: store_now[0] - IAT_WINDOW
    assert send("photos").get_json()["error_code"] == "dpop_proof_stale"
