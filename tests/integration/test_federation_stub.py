"""The console sign-in stand-in refuses what AWS refuses (so the console tests prove something)."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
import requests

from tests.conftest import ACCOUNT

pytestmark = pytest.mark.integration


def _creds(moto_url: str, federated: bool = False) -> dict[str, str]:
    sts = boto3.client("sts", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    c: dict[str, Any] = (sts.get_federation_token(Name="bob")["Credentials"] if federated else
                         sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/Admin",
                                         RoleSessionName="s1")["Credentials"])
    return {"sessionId": c["AccessKeyId"], "sessionKey": c["SecretAccessKey"], "sessionToken": c["SessionToken"]}


def _token(stub: Any, session: dict[str, str] | str, **extra: str) -> requests.Response:
    body = session if isinstance(session, str) else json.dumps(session)
    return requests.post(f"{stub.url}/federation", data={"Action": "getSigninToken", "Session": body, **extra},
                         timeout=10)


def test_get_signin_token_checks(federation_stub, moto_url) -> None:
    good = _creds(moto_url)
    r = _token(federation_stub, good, SessionDuration="3600")
    assert r.status_code == 200 and set(r.json()) == {"SigninToken"}
    for bad in ({k: v for k, v in good.items() if k != "sessionToken"}, {**good, "extra": "1"}, "not json"):
        assert _token(federation_stub, bad).status_code == 400
    for duration in ("899", "43201", "3600.5", "1e4", ""):
        assert _token(federation_stub, good, SessionDuration=duration).status_code == 400, duration
    # GetCallerIdentity with keys STS does not know fails (moto checks the key id, not the secret)
    assert _token(federation_stub, {**good, "sessionId": "ASIAUNKNOWN000000000"}).status_code == 400
    # credentials that are not from AssumeRole* (moto's GetFederationToken keys map to its default user)
    assert _token(federation_stub, _creds(moto_url, federated=True)).status_code == 400


def test_login_checks(federation_stub, moto_url) -> None:
    def login(**params: str) -> requests.Response:
        token = _token(federation_stub, _creds(moto_url)).json()["SigninToken"]
        q = {"Action": "login", "Issuer": "https://bridge.example.com/portal",
             "Destination": "https://console.aws.amazon.com/s3/home", "SigninToken": token, **params}
        return requests.get(f"{federation_stub.url}/federation", params={k: v for k, v in q.items() if v},
                            timeout=10)

    assert login().status_code == 200
    assert login(Issuer="").status_code == 400
    assert login(Destination="https://evil.example.com/").status_code == 400
    assert login(SigninToken="made-up").status_code == 400
    token = _token(federation_stub, _creds(moto_url)).json()["SigninToken"]
    federation_stub.tokens[token]["created"] = time.time() - 901  # 15 minutes and a second
    r = requests.get(f"{federation_stub.url}/federation", params={
        "Action": "login", "Issuer": "x", "Destination": "https://console.aws.amazon.com/", "SigninToken": token},
        timeout=10)
    assert r.status_code == 400


def test_saml_post_needs_a_valid_response(federation_stub) -> None:
    r = requests.post(f"{federation_stub.url}/saml", data={"SAMLResponse": "PHNhbWw+", "RelayState": ""}, timeout=10)
    assert r.status_code == 400
