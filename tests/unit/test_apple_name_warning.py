"""``bridge check-config`` (and startup) warns when a rule, or an app's session policy, uses the identity's ``name``
for an Apple connector's users (bridge/upstream/apple_settings.py ``apple_name_warnings``): Apple's name is the
unsigned ``user`` form field of the first sign-in, typed by the user. A rule limited to other connectors, or a
deployment without an Apple connector, is not warned about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_apple import KEY
from tests.unit.test_startup_checks import check, config

ACCOUNT = "123456789012"
APPLE = {"id": "apple", "type": "oidc", "preset": "apple", "issuer": "https://appleid.apple.com",
         "client_id": "com.example.bridge", "apple": {"team_id": "TEAM123456", "key_id": "KEY1234567",
                                                     "private_key_file": "apple.p8"}}
CORP = {"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s3"}


def rule(grant: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"name": "r", "match": {"group": "g"}, "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/R",
                                                              **(grant or {})}], **kw}


def warnings(tmp_path: Path, rules: list[dict[str, Any]], connectors: list[dict[str, Any]] | None = None,
             **top: Any) -> list[str]:
    (tmp_path / "apple.p8").write_text(KEY)
    r = check(config(tmp_path, connectors=connectors or [CORP, APPLE], mapping={"rules": rules}, **top))
    assert r.exit_code == 0, r.output
    return [line for line in r.stderr.splitlines() if "Apple's name is not signed" in line]


@pytest.mark.parametrize("used", [
    rule({"session_name": "{name}"}), rule({"session_name": "{name|lower}"}), rule({"tags": {"Who": "{ name }"}}),
    rule(match={"claim": "name", "equals": "Alice"}), rule(connectors=["apple"], grants=None, deny=True) | {
        "match": {"claim": "name", "glob": "Admin*"}}])
def test_a_rule_using_name_for_apple_users_is_warned_about(tmp_path: Path, used: dict[str, Any]) -> None:
    (line,) = warnings(tmp_path, [{k: v for k, v in used.items() if v is not None}])
    assert line.startswith("warning: mapping.rules[0] (r): uses the identity's name") and "apple" in line


@pytest.mark.parametrize(("rules", "connectors"), [
    ([rule({"session_name": "{name}"}, connectors=["corp"])], None),  # not for Apple's users
    ([rule({"session_name": "{email}"}), rule({"tags": {"N": "{claims.name}"}}, name="r2")], None),  # no {name}
    ([rule({"session_name": "{name}"})], [CORP]),  # no Apple connector
])
def test_no_warning_without_name_for_apple_users(tmp_path: Path, rules: list[dict[str, Any]],
                                                 connectors: list[dict[str, Any]] | None) -> None:
    assert warnings(tmp_path, rules, connectors) == []


def test_an_apps_policy_using_name_for_apple_users_is_warned_about(tmp_path: Path) -> None:
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                      "Resource": "arn:aws:s3:::b/{name}/*"}]}
    app = {"client_id": "photos", "idp_audiences": {"apple": ["com.example.photos"]}, "grants": ["x/R"],
           "session_policy": policy, "dpop": "required"}
    (line,) = warnings(tmp_path, [rule()], apps=[app])
    assert line.startswith("warning: apps[0] (photos).session_policy: uses {name}")
