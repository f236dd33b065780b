"""What the demo's app does (docs/apps-and-workloads.md "Try it"): with ``make demo`` running,
``.venv/bin/python -m bridge.runtime.demo_exchange`` signs alice in at the demo IdP as the app's own public client
``photos-spa`` (code + PKCE, as a single-page app would), makes a P-256 DPoP key, exchanges the ID token at the
bridge with a proof of that key (``apps: photos`` in config/demo.yaml, ``dpop: required``) and calls the local
STS's GetCallerIdentity with the credentials. ``bridge demo --smoke`` runs it too.

A demo tool, not a client library: the IdP's sign-in form is filled the way tests/peers/op.mjs draws it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import click
import requests
from joserfc import jws
from joserfc.jwk import ECKey

APP_CLIENT = "photos-spa"  # the app's client id at the demo IdP (config/demo.yaml apps[0].idp_audiences)
APP_REDIRECT = "http://127.0.0.2:8001/callback"  # the app's page; never opened here (the code is read from it)
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a token type, not a secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_id_token(issuer: str, user: str, password: str) -> str:
    """The app's sign-in at the IdP: code + PKCE as the public client ``photos-spa``, then its token endpoint."""
    meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    verifier = secrets.token_urlsafe(48)
    s = requests.Session()
    r = s.get(meta["authorization_endpoint"], timeout=10, params={
        "client_id": APP_CLIENT, "response_type": "code", "scope": "openid email profile groups",
        "redirect_uri": APP_REDIRECT, "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256", "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16)})
    action = r.text.split('action="', 1)[1].split('"', 1)[0]
    r = s.post(urljoin(r.url, action), data={"username": user, "password": password}, allow_redirects=False,
               timeout=10)
    location = ""
    for _ in range(10):
        location = urljoin(r.url, r.headers.get("location", ""))
        if location.startswith(APP_REDIRECT) or r.status_code not in (302, 303):
            break
        r = s.get(location, allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(location).query).get("code")
    if not code:
        raise click.ClickException(f"the demo IdP did not sign {user} in (wrong password?)")
    tokens = s.post(meta["token_endpoint"], timeout=10, data={
        "grant_type": "authorization_code", "code": code[0], "redirect_uri": APP_REDIRECT, "client_id": APP_CLIENT,
        "code_verifier": verifier}).json()
    return str(tokens["id_token"])


def dpop_proof(key: ECKey, htu: str) -> str:
    """A DPoP proof (RFC 9449 §4.2) of ``key`` for ``POST htu``, now, with a fresh ``jti``."""
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    claims = {"htm": "POST", "htu": htu, "iat": int(time.time()), "jti": secrets.token_urlsafe(24)}
    return jws.serialize_compact(header, json.dumps(claims), key, algorithms=["ES256"])


def exchange(bridge: str, id_token: str, key: ECKey, audience: str = "sandbox/Admin") -> dict[str, Any]:
    """The app's token exchange with a DPoP proof; the bridge's answer (an OAuth error raises)."""
    url = f"{bridge}/oauth/token"
    r = requests.post(url, headers={"DPoP": dpop_proof(key, url)}, timeout=30, data={
        "grant_type": EXCHANGE, "client_id": "photos", "subject_token": id_token, "subject_token_type": ID_TOKEN,
        "audience": audience})
    body: dict[str, Any] = r.json()
    if r.status_code != 200:
        raise click.ClickException(f"exchange refused: {body.get('error')} ({body.get('error_code')}): "
                                   f"{body.get('error_description')}")
    return body


def caller(sts_url: str, credentials: dict[str, str]) -> str:
    import boto3

    return str(boto3.client("sts", endpoint_url=sts_url, region_name="us-east-1",
                            aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"]).get_caller_identity()["Arn"])


def run(bridge: str, idp: str, sts_url: str, user: str = "alice", password: str = "alice-pw") -> str:  # noqa: S107
    """Sign in, exchange with DPoP, call STS: one line saying who STS sees, and with which key."""
    key = ECKey.generate_key("P-256")
    body = exchange(bridge, app_id_token(idp, user, password), key)
    return (f"{caller(sts_url, body['credentials'])} (app photos, DPoP key {body['dpop_jkt']}, "
            f"{body['expires_in']} s)")


@click.command()
@click.option("--bridge", default="http://127.0.0.1:8000", show_default=True, help="the demo bridge's base_url")
@click.option("--idp", default="http://127.0.0.1:9000", show_default=True, help="the demo IdP (banner: Demo IdP)")
@click.option("--sts", "sts_url", default="http://127.0.0.1:5055", show_default=True, help="the local STS")
@click.option("--user", default="alice", show_default=True)
@click.option("--password", default="alice-pw", show_default=True)
def main(bridge: str, idp: str, sts_url: str, user: str, password: str) -> None:
    """Exchange a demo user's ID token for AWS credentials as the demo app (with DPoP)."""
    click.echo(f"exchange ok: {run(bridge, idp, sts_url, user, password)}")


if __name__ == "__main__":
    sys.exit(main())
