"""DPoP (RFC 9449) on the token exchange through the real server: npm oidc-provider's ID token of a public client
(code + PKCE), a bridge served over HTTP with its state in a real redis-server, the strict STS in front of moto.
A good proof gets credentials STS accepts; every bad proof — a replayed ``jti``, another ``htu`` or ``htm``, a
stale ``iat``, ``alg`` none or HS256, a private key in ``jwk``, none at all — is a 400 ``invalid_dpop_proof``
JSON the page can read, and STS is never called. A DPoP-bound access token (``cnf.jkt``, minted by a stand-in
IdP, tests/peers/workload_issuer.py, configured as an OIDC connector) is exchanged only with its own key's proof."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from joserfc.jwk import RSAKey
from werkzeug.wrappers import Response

from tests.conftest import ACCOUNT, ACCOUNTS, OIDC_CONNECTOR, RULES
from tests.dpop_proofs import ath, ec_key, proof
from tests.integration.helpers import caller_arn
from tests.integration.test_exchange import (
    APP_CLIENT,
    APP_ORIGIN,
    POLICY,
    app_id_token,
    app_issuer,  # noqa: F401 - the module's IdP fixture
    exchange,
)
from tests.peers.workload_issuer import WorkloadIssuer, running

pytestmark = pytest.mark.integration
API_AUDIENCE = "photos-api"  # the app's client id at the stand-in IdP that binds its access tokens


class BindingIdp(WorkloadIssuer):
    """The stand-in issuer with a sign-in IdP's discovery (authorization and token endpoints, never called here):
    its ``mint(cnf=…)`` is an access token the IdP bound to the app's DPoP key."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/.well-known/openid-configuration":
            doc = {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/.well-known/jwks",
                   "authorization_endpoint": f"{self.issuer}/authorize", "token_endpoint": f"{self.issuer}/token",
                   "response_types_supported": ["code"], "subject_types_supported": ["public"],
                   "id_token_signing_alg_values_supported": ["RS256"], "dpop_signing_alg_values_supported": ["ES256"]}
            return Response(json.dumps(doc), content_type="application/json")(environ, start_response)
        return super().__call__(environ, start_response)


@pytest.fixture(scope="module")
def bound_idp() -> Iterator[WorkloadIssuer]:
    with running(BindingIdp(audience=API_AUDIENCE)) as idp:
        yield idp


@pytest.fixture
def bridge(live_bridge, make_settings, app_issuer, bound_idp):  # type: ignore[no-untyped-def]  # noqa: F811
    settings = make_settings(
        connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": app_issuer, "client_id": "bridge",
                     "client_secret": "bridge-secret"},
                    {"id": "bound", "type": "oidc", "issuer": bound_idp.issuer, "client_id": "bridge",
                     "client_secret": "unused"}],
        mapping={"accounts": ACCOUNTS, "rules": [*RULES, {
            "name": "api-users", "connectors": ["bound"], "match": {"group": "api-users"},
            "grants": [{"account": "sandbox", "role": "Admin"}]}]},
        apps=[{"client_id": "photos", "idp_audiences": {OIDC_CONNECTOR: [APP_CLIENT], "bound": [API_AUDIENCE]},
               "origins": [APP_ORIGIN], "grants": ["sandbox/Admin"], "session_policy": POLICY, "dpop": "required"}])
    return live_bridge(settings)


def sts_calls(strict_sts_peer: Any) -> list[Any]:
    return [c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"]


def refused(r: requests.Response, code: str, says: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_dpop_proof" and body["error_code"] == code, body
    assert says in body["error_description"] and body["hint"], body
    assert "credentials" not in body and "access_token" not in body
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_a_good_proof_gets_credentials_and_its_replay_is_refused(bridge, app_issuer, strict_sts_peer,  # type: ignore[no-untyped-def]  # noqa: F811
                                                                 moto_url):
    key = ec_key()
    p = proof(key, f"{bridge}/oauth/token")
    token = app_id_token(app_issuer, "alice", "alice-pw")
    r = exchange(bridge, token, dpop=p)
    assert r.status_code == 200, r.text
    assert r.json()["dpop_jkt"] == key.thumbprint()
    assert caller_arn(moto_url, r.json()["credentials"]) == \
        f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/photos.alice@example.com"
    refused(exchange(bridge, token, dpop=p), "dpop_proof_replayed", "already used")
    assert len(sts_calls(strict_sts_peer)) == 1


BAD = {
    "wrong htu": (lambda base, key: proof(key, "http://127.0.0.1:1/oauth/token"), "dpop_proof_mismatch",
                  "htu must be"),
    "wrong htm": (lambda base, key: proof(key, f"{base}/oauth/token", htm="GET"), "dpop_proof_mismatch",
                  "htm must be POST"),
    "stale iat": (lambda base, key: proof(key, f"{base}/oauth/token", iat=time.time() - 300),
                  "dpop_proof_stale", "from the bridge's clock"),
    "alg none": (lambda base, key: proof(key, f"{base}/oauth/token", alg="none"), "dpop_proof_invalid",
                 "alg 'none' is not accepted"),
    "alg HS256": (lambda base, key: proof(key, f"{base}/oauth/token", alg="HS256"), "dpop_proof_invalid",
                  "alg 'HS256' is not accepted"),
    "private key in jwk": (lambda base, key: proof(key, f"{base}/oauth/token", private=True), "dpop_proof_invalid",
                           "private key members"),
    "missing header": (lambda base, key: None, "dpop_proof_missing", "no DPoP header was sent"),
}


@pytest.mark.parametrize("case", BAD)
def test_each_bad_proof_is_a_clear_400_and_nothing_is_issued(case, bridge, app_issuer, strict_sts_peer):  # type: ignore[no-untyped-def]  # noqa: F811
    make, code, says = BAD[case]
    token = app_id_token(app_issuer, "alice", "alice-pw")
    refused(exchange(bridge, token, dpop=make(bridge, ec_key())), code, says)
    assert sts_calls(strict_sts_peer) == []


def test_a_proof_for_the_host_header_instead_of_base_url_is_refused(bridge, app_issuer, strict_sts_peer):  # type: ignore[no-untyped-def]  # noqa: F811
    token = app_id_token(app_issuer, "alice", "alice-pw")
    r = requests.post(f"{bridge}/oauth/token", timeout=30, headers={
        "Origin": APP_ORIGIN, "Host": "evil.example", "DPoP": proof(ec_key(), "http://evil.example/oauth/token")},
        data={"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "client_id": "photos",
              "subject_token": token, "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
              "audience": "sandbox/Admin"})
    refused(r, "dpop_proof_mismatch", f"htu must be {bridge}/oauth/token")
    assert sts_calls(strict_sts_peer) == []


def test_the_preflight_allows_the_dpop_header(bridge):  # type: ignore[no-untyped-def]
    r = requests.options(f"{bridge}/oauth/token", timeout=10, headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "dpop"})
    assert r.status_code == 204 and "DPoP" in r.headers["Access-Control-Allow-Headers"]


def test_a_dpop_bound_token_is_exchanged_with_its_own_key_only(bridge, bound_idp, strict_sts_peer,  # type: ignore[no-untyped-def]
                                                               moto_url):
    owner, thief = ec_key(), ec_key()
    claims = {"groups": ["api-users"], "email": "alice@example.com", "email_verified": True,
              "cnf": {"jkt": owner.thumbprint()}}
    url = f"{bridge}/oauth/token"
    stolen = bound_idp.mint(**claims)
    refused(exchange(bridge, stolen, dpop=proof(thief, url, ath=ath(stolen))), "dpop_key_mismatch",
            "not the key the subject token is bound to")
    refused(exchange(bridge, stolen, dpop=proof(owner, url)), "dpop_key_mismatch", "must name it (ath)")
    refused(exchange(bridge, stolen, dpop=proof(owner, url, ath=ath("another token"))), "dpop_key_mismatch",
            "ath is not the hash")
    rsa_bound = bound_idp.mint(**{**claims, "cnf": {"jkt": RSAKey.generate_key(2048).thumbprint()}})
    refused(exchange(bridge, rsa_bound, dpop=proof(owner, url, ath=ath(rsa_bound))), "dpop_key_mismatch",
            "not the key")
    assert sts_calls(strict_sts_peer) == []
    r = exchange(bridge, stolen, dpop=proof(owner, url, ath=ath(stolen)))
    assert r.status_code == 200, r.text
    assert r.json()["dpop_jkt"] == owner.thumbprint() and caller_arn(moto_url, r.json()["credentials"])
