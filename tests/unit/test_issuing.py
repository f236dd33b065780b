"""The one issuance check (MFA + duration) and who uses it: credentials and both console methods."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from bridge.config import settings_from_dict
from bridge.core.console_signin import ConsoleSignin
from bridge.core.credcache import NoCache
from bridge.core.issuing import CredentialIssuer, IssuerConfig
from bridge.domain.errors import BadRequest, MfaRequired
from bridge.domain.identity import Grant, Identity
from bridge.telemetry.metrics import Metrics

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
SETTINGS = settings_from_dict({"base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
                               "connectors": [{"id": "c", "type": "dev", "users": [{"subject": "alice"}]}]})
GRANT = Grant(role_arn="arn:aws:iam::123456789012:role/Admin", account_id="123456789012", label="Admin",
              session_name="alice", via="admins", max_duration=3600, mfa_required=True)
MFA = Identity(connector_id="c", subject="alice", issuer="i", mfa=True)
NO_MFA = Identity(connector_id="c", subject="alice", issuer="i", mfa=False)


class Auditor:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, ctx: Any, shared: Any = None, /, **fields: Any) -> None:
        self.records.append((kind, {**(shared.values if shared is not None else {}), **fields}))


def issuer(auditor: Auditor) -> CredentialIssuer:
    return CredentialIssuer(IssuerConfig.from_settings(SETTINGS), None, None,  # type: ignore[arg-type]
                            cache=NoCache(), metrics=Metrics(), auditor=auditor)  # type: ignore[arg-type]


def test_the_check_refuses_missing_mfa_and_a_duration_the_role_does_not_allow() -> None:
    check = issuer(Auditor()).check
    check(MFA, GRANT, 3600)
    with pytest.raises(MfaRequired):
        check(NO_MFA, GRANT, 3600)
    for bad in (899, 3601):
        with pytest.raises(BadRequest) as e:
            check(MFA, GRANT, bad)
        assert e.value.code == "invalid_duration"


@pytest.mark.parametrize("identity,duration,code", [(NO_MFA, 3600, "mfa_required"), (MFA, 7200, "invalid_duration")])
def test_credentials_and_both_console_methods_refuse_through_the_same_check(identity: Identity, duration: int,
                                                                            code: str) -> None:
    auditor = Auditor()
    iss = issuer(auditor)  # no STS, no keys: anything past the check would fail differently
    console = ConsoleSignin(SETTINGS.aws, iss, portal_url=f"{SETTINGS.base_url}/portal", metrics=Metrics(),
                            auditor=auditor)  # type: ignore[arg-type]
    for attempt in (lambda: iss.issue_credentials(identity, GRANT, duration),
                    lambda: console.login_url(identity, GRANT, duration, "https://console.aws.amazon.com/"),
                    lambda: console.saml_post(identity, GRANT, duration)):
        with pytest.raises((MfaRequired, BadRequest)) as e:
            attempt()
        assert e.value.code == code
    # each refusal is audited: credentials (direct and under the federation console), console twice
    assert [(k, f["outcome"], f["error"]) for k, f in auditor.records] == [
        ("credentials", "failure", code), ("credentials", "failure", code), ("console", "failure", code),
        ("console", "failure", code)]


def test_only_the_issuer_checks_assume_parameters() -> None:
    callers = []
    for path in BRIDGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if "validate_assume_params" not in source:  # no call can name it: not worth a parse
            continue
        tree = ast.parse(source)
        if any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "validate_assume_params"
               for n in ast.walk(tree)):
            callers.append(str(path.relative_to(BRIDGE)))
    assert sorted(callers) == ["commands/tokens.py", "core/issuing.py"]  # `bridge preview` offline checks, no issuance


def test_the_bridge_tags_follow_each_sign_in_though_a_grant_is_tagged_once() -> None:
    """``tagged`` keeps the tagged grant per grant object and MFA: the same grant object, asked for a sign-in
    with MFA and one without, carries each one's own ``bridge:mfa``."""
    tagged = issuer(Auditor()).tagged
    assert tagged(GRANT, MFA).tags["bridge:mfa"] == "true"
    assert tagged(GRANT, NO_MFA).tags["bridge:mfa"] == "false"
    assert tagged(GRANT, MFA) is tagged(GRANT, MFA)
    assert tagged(GRANT, NO_MFA).tags["bridge:mfa"] == "false"
