"""The whole app built by its own factories on ``MemoryStore``: ``build_services(settings, store=…, sts=…)``
then ``create_app``, the shipped demo config under ``tmp_path``, driven through Flask's test client — dev
sign-in, the portal's grants, credentials at the STS seam (an in-process STS that holds the token to AWS's
rules with the strict validator, against the keys the app publishes) — and STS unreachable. No sockets."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from bridge.aws.validate import validate_jwt
from bridge.config import load_settings
from bridge.domain.errors import StsUnavailable
from bridge.domain.identity import Credentials
from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key
from bridge.runtime.app import create_app
from bridge.storage.memory import MemoryStore
from bridge.web.services import Services, build_services

ADMIN = "arn:aws:iam::123456789012:role/Admin"
JSON = {"Accept": "application/json"}


class InProcessSts:
    """AssumeRoleWithWebIdentity as AWS would judge the token (the strict validator, the app's JWKS)."""

    def __init__(self, jwks: dict[str, Any] | None = None, *, down: bool = False) -> None:
        self.jwks = jwks or {}
        self.down = down
        self.calls: list[dict[str, Any]] = []

    def assume_role_with_web_identity(self, *, role_arn: str, session_name: str, token: str, duration: int,
                                      policy: str | None = None, policy_arns: tuple[str, ...] = ()) -> Credentials:
        self.calls.append({"role_arn": role_arn, "session_name": session_name, "duration": duration})
        if self.down:
            raise StsUnavailable("connect timeout (in-process stand-in)")
        problems = validate_jwt(token, jwks=self.jwks, issuer="https://bridge.example.com",
                                audiences={"sts.amazonaws.com"}, now=int(time.time()))
        assert problems == [], problems
        return Credentials("ASIAINPROCESS", "secret", "token", datetime.now(UTC) + timedelta(seconds=duration),
                           f"arn:aws:sts::123456789012:assumed-role/Admin/{session_name}", role_arn, session_name,
                           "us-east-1")


@pytest.fixture
def built(demo_config: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Services, FlaskClient, InProcessSts, Path]]:
    """The demo config with its OIDC connector off (no IdP here) and its keys in ``tmp_path``; the app's test
    client, the STS stand-in (trusting the JWKS the app publishes, as IAM would) and the audit trail."""
    keys = tmp_path / "keys"
    generate_key(keys)
    generate_saml_key(keys, bits=2048)
    generate_cache_key(keys)
    monkeypatch.setenv("DEMO_KEYS_DIR", str(keys))
    monkeypatch.setenv("DEMO_OIDC_ENABLED", "false")

    def no_sockets(*_: object) -> None:
        raise AssertionError("the app on MemoryStore opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_sockets)
    monkeypatch.setattr(socket.socket, "connect_ex", no_sockets)
    settings = load_settings(demo_config)
    sts = InProcessSts()
    svc = build_services(settings, store=MemoryStore(settings.redis.key_prefix), sts=sts)  # type: ignore[arg-type]
    client = create_app(settings, services=svc).test_client()
    sts.jwks = client.get("/.well-known/jwks.json").get_json()
    yield svc, client, sts, demo_config.parent.parent / ".demo" / "audit.jsonl"


def dev_sign_in(client: FlaskClient, user: str) -> None:
    r = client.get("/login/dev")
    state = re.search(r"state=([\w-]+)", r.headers["location"])
    assert r.status_code == 302 and state, r.status_code
    r = client.post("/callback/dev", data={"state": state[1], "user": user})
    assert r.status_code == 303, r.get_data(as_text=True)[:300]


def records(audit: Path, kind: str) -> list[dict[str, Any]]:
    return [doc for line in audit.read_text().splitlines() if (doc := json.loads(line))["type"] == kind]


def test_the_app_runs_on_memory_store_sign_in_portal_and_credentials(
        built: tuple[Services, FlaskClient, InProcessSts, Path]) -> None:
    svc, client, sts, audit = built
    assert isinstance(svc.store, MemoryStore) and svc.issuer.sts is sts and sorted(svc.connectors) == ["dev"]

    assert client.get("/portal", headers=JSON).status_code == 401  # nobody signed in yet
    dev_sign_in(client, "alice")
    portal = client.get("/portal", headers=JSON).get_json()
    assert portal["identity"]["email"] == "alice@example.com"
    admin = next(g for g in portal["grants"] if g["role_arn"] == ADMIN)

    r = client.post(f"/credentials/{admin['id']}", headers={**JSON, "X-CSRF-Token": portal["csrf_token"]})
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert r.get_json()["AccessKeyId"] == "ASIAINPROCESS" and r.get_json()["RoleArn"] == ADMIN
    assert [c["role_arn"] for c in sts.calls] == [ADMIN]
    assert [x["outcome"] for x in records(audit, "credentials")] == ["success"]
    # the credential cache (sealed in the MemoryStore) answers the second request: no second STS call
    again = client.post(f"/credentials/{admin['id']}", headers={**JSON, "X-CSRF-Token": portal["csrf_token"]})
    assert again.get_json()["AccessKeyId"] == "ASIAINPROCESS" and len(sts.calls) == 1


def test_sts_unreachable_is_a_clear_json_error_and_nothing_is_issued(
        built: tuple[Services, FlaskClient, InProcessSts, Path]) -> None:
    _, client, sts, audit = built
    sts.down = True
    dev_sign_in(client, "alice")
    portal = client.get("/portal", headers=JSON).get_json()
    admin = next(g for g in portal["grants"] if g["role_arn"] == ADMIN)

    r = client.post(f"/credentials/{admin['id']}", headers={**JSON, "X-CSRF-Token": portal["csrf_token"]})
    assert r.status_code == 503 and r.is_json, r.get_data(as_text=True)[:300]
    body = r.get_json()
    assert body["error"] == "sts_unavailable" and "STS" in json.dumps(body)
    assert "AccessKeyId" not in body and len(sts.calls) == 1
    assert [(x["outcome"], x["error"]) for x in records(audit, "credentials")] == [("failure", "sts_unavailable")]
    sts.down = False  # STS back: nothing was kept of the failure, the next request goes to STS again
    r = client.post(f"/credentials/{admin['id']}", headers={**JSON, "X-CSRF-Token": portal["csrf_token"]})
    assert r.status_code == 200 and len(sts.calls) == 2
