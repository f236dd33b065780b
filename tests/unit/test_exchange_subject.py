"""What the exchange checks of who a subject token was issued to and what it is (bridge/upstream/oidc_subject.py,
bridge/core/exchange_refused.py ``typ_refusal``): ``azp`` (or an access token's ``client_id``), whenever present,
is one of the app's client ids at the IdP — also with a single audience —, and the JOSE ``typ`` agrees with
``subject_token_type`` (an access token, ``at+jwt``, is no ID token; a logout or DPoP JWT is no subject token).
Through the app's test client, as tests/unit/test_exchange.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt

from bridge.core.exchange import JWT
from tests.unit.test_exchange import IDP, KEY, Env, audit_lines, env, form, post

__all__ = ["env"]  # the fixture


def token(typ: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": IDP, "sub": "00ualice", "aud": "photos-spa", "iat": now, "exp": now + 300,
            "email": "alice@example.com", "email_verified": True, "groups": ["photo-users"], **claims}
    header = {"alg": "RS256", "kid": "k1", **({"typ": typ} if typ else {})}
    return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, KEY)


def refused(env: Env, r: Any, code: str, says: str) -> None:
    body = r.get_json()
    assert r.status_code == 400 and body["error_code"] == code and says in body["error_description"], body
    assert env.sts.calls == [] and not [a for a in audit_lines(env) if a.get("type") == "credentials"]


@pytest.mark.parametrize("claims", [{"azp": "other-client"}, {"client_id": "other-client"},
                                    {"azp": "photos-spa", "client_id": "other-client"}, {"azp": ["photos-spa"]}])
def test_a_token_issued_to_another_client_is_refused_even_with_one_audience(env: Env, claims: dict[str, Any]) -> None:
    refused(env, post(env, form(subject_token=token(**claims))), "exchange_token_audience", "issued to another client")


def test_the_apps_own_azp_and_client_id_pass(env: Env) -> None:
    assert post(env, form(subject_token=token(azp="photos-spa"))).status_code == 200
    assert post(env, form(subject_token=token(azp="photos-spa", client_id="photos-spa"))).status_code == 200


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
def test_an_access_token_sent_as_an_id_token_is_refused(env: Env, typ: str) -> None:
    refused(env, post(env, form(subject_token=token(typ))), "exchange_token_type", "an access token")


def test_an_access_token_is_taken_as_a_jwt(env: Env) -> None:
    r = post(env, form(subject_token=token("at+jwt", client_id="photos-spa"), subject_token_type=JWT))
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("typ", ["logout+jwt", "dpop+jwt", "secevent+jwt"])
def test_other_jwts_are_no_subject_token(env: Env, typ: str) -> None:
    refused(env, post(env, form(subject_token=token(typ), subject_token_type=JWT)), "exchange_token_type",
            "not an ID token or access token")
    refused(env, post(env, form(subject_token=token(typ))), "exchange_token_type", "not an ID token")


def test_an_id_token_with_typ_jwt_or_none_passes(env: Env) -> None:
    assert post(env, form(subject_token=token("JWT"))).status_code == 200
    assert post(env, form(subject_token=token(None), subject_token_type=JWT)).status_code == 200
