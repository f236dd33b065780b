"""Credential output formats (bridge/aws/formats.py, docs/aws-rules.md §4) with hostile secrets."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge.aws.formats import (
    api_json,
    boto3_snippet,
    credential_process_json,
    credentials_file,
    default_profile_name,
    env_exports,
)
from bridge.domain.identity import Credentials

SECRET = "a'b$c\"d`e\\f !x $(touch /nonexistent) ;|&*"
TOKEN = "FwoGZXIvYXdzE//token+with/slashes=="
EXPIRES = datetime(2026, 11, 26, 12, 34, 56, tzinfo=UTC)
ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def make_creds(secret: str = SECRET, expiration: datetime = EXPIRES) -> Credentials:
    return Credentials(
        access_key_id="ASIAEXAMPLEKEY123456",
        secret_access_key=secret,
        session_token=TOKEN,
        expiration=expiration,
        assumed_role_arn="arn:aws:sts::123456789012:assumed-role/Admin/alice",
        role_arn="arn:aws:iam::123456789012:role/Admin",
        session_name="alice",
        region="eu-west-1",
    )


def bash_env(exports: str) -> dict[str, str]:
    """Evaluate ``exports`` in a real bash and read the variables back, NUL-separated."""
    bash = shutil.which("bash")
    assert bash, "bash is needed for the shell round-trip"
    script = 'eval "$1"; for v in "${@:2}"; do printf "%s\\0" "${!v}"; done'
    out = subprocess.run(
        [bash, "--noprofile", "--norc", "-c", script, "bash", exports, *ENV_VARS],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=10,
    )
    assert out.stderr == b""
    values = out.stdout.decode().split("\0")[:-1]
    return dict(zip(ENV_VARS, values, strict=True))


# --------------------------------------------------------------------------- env exports


def test_env_exports_round_trip_through_bash() -> None:
    env = bash_env(env_exports(make_creds()))
    assert env == {
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEKEY123456",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_CREDENTIAL_EXPIRATION": "2026-11-26T12:34:56Z",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }


@pytest.mark.parametrize("secret", ["a'b$c\"d", "'", "''", "x\ny", "${HOME}", "-n", "\\", "é 中 \t"])
def test_env_exports_round_trip_of_odd_secrets(secret: str) -> None:
    assert bash_env(env_exports(make_creds(secret)))["AWS_SECRET_ACCESS_KEY"] == secret


def test_env_exports_shape() -> None:
    lines = env_exports(make_creds()).splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [f"export {v}" for v in ENV_VARS]


# --------------------------------------------------------------------------- ~/.aws/credentials


def parse_ini(text: str) -> configparser.ConfigParser:
    # botocore reads the file without %-interpolation; so does this parser.
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    return cp


def test_credentials_file_parses_with_configparser() -> None:
    cp = parse_ini(credentials_file(make_creds(), "dev-admin"))
    assert cp.sections() == ["dev-admin"]
    assert dict(cp["dev-admin"]) == {
        "aws_access_key_id": "ASIAEXAMPLEKEY123456",
        "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN,
    }


def test_credentials_file_default_profile_and_expiry_comment() -> None:
    creds = make_creds()
    text = credentials_file(creds)
    assert default_profile_name(creds) == "123456789012-Admin"
    assert parse_ini(text).sections() == ["123456789012-Admin"]
    assert "# expires 2026-11-26T12:34:56Z - role arn:aws:iam::123456789012:role/Admin" in text


@pytest.mark.parametrize("profile", ["has space", "evil]\n[default", "x" * 65, "a/b", "prod:admin"])
def test_credentials_file_rejects_invalid_profile_names(profile: str) -> None:
    with pytest.raises(ValueError, match="profile name"):
        credentials_file(make_creds(), profile)


def test_credentials_file_rejects_profile_name_with_trailing_newline() -> None:
    with pytest.raises(ValueError, match="profile name"):
        credentials_file(make_creds(), "dev\n")


@pytest.mark.parametrize("profile", ["default", "a", "team_a.prod+ro@x-1", "x" * 64])
def test_credentials_file_accepts_valid_profile_names(profile: str) -> None:
    assert parse_ini(credentials_file(make_creds(), profile)).sections() == [profile]


# --------------------------------------------------------------------------- credential_process


def test_credential_process_json() -> None:
    doc = json.loads(credential_process_json(make_creds()))
    assert doc["Version"] == 1 and type(doc["Version"]) is int
    assert doc == {
        "Version": 1,
        "AccessKeyId": "ASIAEXAMPLEKEY123456",
        "SecretAccessKey": SECRET,
        "SessionToken": TOKEN,
        "Expiration": "2026-11-26T12:34:56Z",
    }


@pytest.mark.parametrize(
    "expiration",
    [
        datetime(2026, 11, 26, 12, 34, 56, 987654, tzinfo=UTC),  # fractional seconds are dropped
        datetime(2026, 11, 26, 14, 34, 56, tzinfo=timezone(timedelta(hours=2))),  # converted to UTC
        datetime(2026, 11, 26, 7, 4, 56, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ],
)
def test_expiration_is_utc_z_without_fraction(expiration: datetime) -> None:
    doc = json.loads(credential_process_json(make_creds(expiration=expiration)))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["Expiration"])
    assert doc["Expiration"] == "2026-11-26T12:34:56Z"
    # The strict EC2-style parser (%Y-%m-%dT%H:%M:%SZ) reads it back to the same instant.
    parsed = datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert parsed == expiration.replace(microsecond=0)


def test_api_json_carries_role_details() -> None:
    doc = api_json(make_creds())
    assert doc["Version"] == 1 and doc["SecretAccessKey"] == SECRET
    assert (doc["AssumedRoleArn"], doc["RoleArn"], doc["RoleSessionName"], doc["Region"]) == (
        "arn:aws:sts::123456789012:assumed-role/Admin/alice",
        "arn:aws:iam::123456789012:role/Admin",
        "alice",
        "eu-west-1",
    )
    json.dumps(doc)  # serialisable as-is


def test_boto3_snippet_embeds_no_secret() -> None:
    snippet = boto3_snippet(make_creds(), "http://127.0.0.1:5055")
    assert SECRET not in snippet and TOKEN not in snippet and "ASIAEXAMPLEKEY123456" not in snippet
    assert "endpoint_url='http://127.0.0.1:5055'" in snippet and "region_name='eu-west-1'" in snippet
    compile(snippet, "<snippet>", "exec")
    assert "endpoint_url" not in boto3_snippet(make_creds(), None)


# --------------------------------------------------------------------------- secrets stay out of reprs


def test_repr_hides_secret_and_token() -> None:
    creds = make_creds()
    for text in (repr(creds), str(creds), f"{creds!r}", repr([creds]), repr({"c": creds})):
        assert SECRET not in text and "a'b$c" not in text
        assert TOKEN not in text
    assert "ASIAEXAMPLEKEY123456" in repr(creds) and "secret=***" in repr(creds)
