"""The OIDC connector's side of the token exchange (bridge/upstream/oidc_subject.py) against a real JWKS over
HTTP on 127.0.0.1 (the stand-in issuer of tests/peers/workload_issuer.py, which counts the fetches): a token
naming a key the IdP does not publish fetches the keys again at most once a minute (the guard the workload
connector shares, bridge/upstream/keyguard.py), and in between is refused with a clear error and no fetch; a key
the IdP really added is read once the minute is over. The clock is injected: no sleeping."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from bridge.domain.errors import InvalidIdToken
from bridge.upstream.keyguard import MIN_REFRESH
from bridge.upstream.oidc import OidcConnector
from bridge.upstream.oidc_settings import OidcConnectorSettings
from tests.clock import Clock
from tests.peers.workload_issuer import WorkloadIssuer, running

pytestmark = pytest.mark.integration
APP = "photos-spa"


@pytest.fixture
def idp() -> Iterator[WorkloadIssuer]:
    with running() as iss:
        yield iss


def connector(idp: WorkloadIssuer, clock: Clock) -> OidcConnector:
    cfg = OidcConnectorSettings(id="corp", type="oidc", issuer=idp.issuer, client_id="bridge", client_secret="x",
                                http_timeout=5)
    c = OidcConnector(cfg, clock=clock)
    # discovery as the IdP's (the stand-in serves GitHub's, without the sign-in endpoints); the keys come over HTTP
    c._meta, c._meta_at = {"issuer": idp.issuer, "jwks_uri": f"{idp.issuer}/.well-known/jwks",
                           "authorization_endpoint": f"{idp.issuer}/auth", "token_endpoint": f"{idp.issuer}/token"}, \
        clock()
    return c


def token(idp: WorkloadIssuer, clock: Clock, key: RSAKey | None = None, **claims: Any) -> str:
    now = int(clock())
    body = {"iss": idp.issuer, "sub": "00ualice", "aud": APP, "iat": now, "exp": now + 600, **claims}
    key = key or idp.key  # type: ignore[assignment]
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


def test_an_unknown_kid_fetches_the_keys_at_most_once_a_minute(idp: WorkloadIssuer) -> None:
    clock = Clock(time.time())
    c = connector(idp, clock)
    assert c.verify_subject_token(token(idp, clock), audiences=(APP,)).identity.subject == "00ualice"
    assert idp.jwks_fetches == 1
    stranger = RSAKey.generate_key(2048, parameters={"kid": "made-up-1"})
    with pytest.raises(InvalidIdToken) as e:  # the first unknown kid: one fetch, the key is not there
        c.verify_subject_token(token(idp, clock, stranger), audiences=(APP,))
    assert e.value.detail == "subject_token is signed with a key the IdP does not publish"
    assert idp.jwks_fetches == 2
    for i in range(20):  # a flood of made-up kids within the minute: refused, no fetch
        other = RSAKey.generate_key(2048, parameters={"kid": f"made-up-{i + 2}"}) if i < 2 else stranger
        clock.now += 1
        with pytest.raises(InvalidIdToken, match="fetched again less than a minute ago") as e:
            c.verify_subject_token(token(idp, clock, other), audiences=(APP,))
        assert e.value.code == "invalid_id_token" and "made-up" not in e.value.detail
    assert idp.jwks_fetches == 2
    # the IdP rotates: within the minute its new key waits; once the minute is over it is fetched and verifies
    new = idp.rotate("k-2")
    with pytest.raises(InvalidIdToken, match="less than a minute ago"):
        c.verify_subject_token(token(idp, clock, new), audiences=(APP,))  # type: ignore[arg-type]
    assert idp.jwks_fetches == 2
    clock.now += MIN_REFRESH
    assert c.verify_subject_token(token(idp, clock, new), audiences=(APP,)).identity  # type: ignore[arg-type]
    assert idp.jwks_fetches == 3
    # known keys cost no fetch, the old one included
    c.verify_subject_token(token(idp, clock, idp.published[0]), audiences=(APP,))  # type: ignore[arg-type]
    assert idp.jwks_fetches == 3
