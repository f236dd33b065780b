"""DPoP nonces (RFC 9449 §8, ``apps[].dpop_nonce: true``) on the token exchange through the real server: npm
oidc-provider's ID token of a public client, a bridge served over HTTP with its state in a real redis-server, the
strict STS in front of moto. The first exchange is a 400 ``use_dpop_nonce`` with a ``DPoP-Nonce`` header (exposed
to the app's origin); the retry with that nonce gets credentials STS accepts; a stale nonce (made, under the
bridge's own cache key, ten minutes ago) and a forged one are refused with a fresh nonce; STS is called only for
the retry. A nonce made elsewhere under the same cache key — as another instance makes it — is taken: nothing is
kept per nonce (stateless)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.core.dpop_nonce import NONCE_WINDOW, DpopNonces
from bridge.keys.signing import load_keyring
from tests.conftest import ACCOUNT, OIDC_CONNECTOR
from tests.dpop_proofs import ec_key, proof
from tests.integration.helpers import caller_arn
from tests.integration.test_exchange import (
    APP_CLIENT,
    APP_ORIGIN,
    POLICY,
    app_id_token,
    app_issuer,  # noqa: F401 - the module's IdP fixture
    exchange,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def bridge(live_bridge, make_settings, app_issuer):  # type: ignore[no-untyped-def]  # noqa: F811
    return live_bridge(make_settings(
        connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": app_issuer, "client_id": "bridge",
                     "client_secret": "bridge-secret"}],
        apps=[{"client_id": "photos", "idp_audiences": {OIDC_CONNECTOR: [APP_CLIENT]}, "origins": [APP_ORIGIN],
               "grants": ["sandbox/Admin"], "session_policy": POLICY, "dpop": "required", "dpop_nonce": True}]))


def sts_calls(strict_sts_peer: Any) -> list[Any]:
    return [c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"]


def use_dpop_nonce(r: requests.Response, code: str, says: str) -> str:
    """A refusal asking for a nonce, readable by the app's page, with the nonce to use."""
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "use_dpop_nonce" and body["error_code"] == code, body
    assert says in body["error_description"] and "DPoP-Nonce" in body["hint"], body
    assert "credentials" not in body and "access_token" not in body
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert r.headers["Access-Control-Expose-Headers"] == "DPoP-Nonce"
    return r.headers["DPoP-Nonce"]


def test_the_first_exchange_is_asked_for_a_nonce_and_the_retry_gets_credentials(bridge, app_issuer,  # type: ignore[no-untyped-def]  # noqa: F811
                                                                                strict_sts_peer, moto_url):
    key, url = ec_key(), f"{bridge}/oauth/token"
    token = app_id_token(app_issuer, "alice", "alice-pw")
    nonce = use_dpop_nonce(exchange(bridge, token, dpop=proof(key, url)), "dpop_nonce_required",
                           "has no nonce claim")
    assert sts_calls(strict_sts_peer) == []
    r = exchange(bridge, token, dpop=proof(key, url, nonce=nonce))
    assert r.status_code == 200, r.text
    assert r.json()["dpop_jkt"] == key.thumbprint() and r.headers["DPoP-Nonce"]  # the next exchange's nonce
    assert caller_arn(moto_url, r.json()["credentials"]) == \
        f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/photos.alice@example.com"
    (seen,) = sts_calls(strict_sts_peer)
    assert seen.problems == []


def test_a_stale_or_forged_nonce_is_refused_and_nothing_is_issued(bridge, app_issuer, strict_sts_peer,  # type: ignore[no-untyped-def]  # noqa: F811
                                                                  keys_dir: Path):
    ring, problems = load_keyring(keys_dir)
    assert ring is not None and not problems
    # what the bridge itself handed out ten minutes ago: its own cache key, its own app, a window long gone
    then = DpopNonces(lambda: ring.cache, clock=lambda: time.time() - 2 * NONCE_WINDOW, apps=["photos"])
    stale = then.fresh("photos")
    assert stale
    key, url = ec_key(), f"{bridge}/oauth/token"
    token = app_id_token(app_issuer, "alice", "alice-pw")
    fresh = use_dpop_nonce(exchange(bridge, token, dpop=proof(key, url, nonce=stale)), "dpop_nonce_stale",
                           "not a current nonce of this app")
    assert fresh != stale
    forged = use_dpop_nonce(exchange(bridge, token, dpop=proof(key, url, nonce="A" * 22)), "dpop_nonce_stale",
                            "not a current nonce")
    assert forged == fresh
    assert sts_calls(strict_sts_peer) == []


def test_a_nonce_made_elsewhere_under_the_same_cache_key_is_taken(bridge, app_issuer, strict_sts_peer,  # type: ignore[no-untyped-def]  # noqa: F811
                                                                keys_dir: Path):
    ring, _ = load_keyring(keys_dir)
    assert ring is not None
    # as another instance would (its own DpopNonces, its own clock): only the cache key in issuer.keys_dir is shared
    theirs = DpopNonces(lambda: ring.cache, clock=time.time, apps=["photos"]).fresh("photos")
    key, url = ec_key(), f"{bridge}/oauth/token"
    r = exchange(bridge, app_id_token(app_issuer, "alice", "alice-pw"), dpop=proof(key, url, nonce=theirs))
    assert r.status_code == 200, r.text
    assert len(sts_calls(strict_sts_peer)) == 1


def test_the_preflight_is_unchanged(bridge):  # type: ignore[no-untyped-def]
    r = requests.options(f"{bridge}/oauth/token", timeout=10, headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "dpop"})
    assert r.status_code == 204 and "DPoP" in r.headers["Access-Control-Allow-Headers"]
    other = requests.options(f"{bridge}/oauth/token", timeout=10, headers={
        "Origin": "http://127.0.0.9:1", "Access-Control-Request-Method": "POST"})
    assert not [k for k in other.headers if k.lower().startswith("access-control")]
