"""bridge/aws/console.py: partition-aware sign-in URLs, the destination allowlist, getSigninToken fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.aws import console
from bridge.domain.identity import Credentials


@pytest.mark.parametrize(("partition", "region", "url"), [
    ("aws", None, "https://signin.aws.amazon.com/federation"),
    ("aws", "us-east-1", "https://signin.aws.amazon.com/federation"),
    ("aws", "eu-west-1", "https://eu-west-1.signin.aws.amazon.com/federation"),
    ("aws-us-gov", "us-gov-west-1", "https://signin.amazonaws-us-gov.com/federation"),
    ("aws-cn", "cn-north-1", "https://signin.amazonaws.cn/federation"),
])
def test_federation_endpoint(partition: str, region: str | None, url: str) -> None:
    assert console.federation_endpoint(partition, region) == url


@pytest.mark.parametrize(("dest", "partition", "region", "want"), [
    (None, "aws", None, "https://console.aws.amazon.com/console/home"),
    ("/s3/home", "aws", "eu-west-1", "https://eu-west-1.console.aws.amazon.com/s3/home?region=eu-west-1"),
    ("/ec2/home?x=1", "aws", "eu-west-1", "https://eu-west-1.console.aws.amazon.com/ec2/home?x=1&region=eu-west-1"),
    ("https://us-west-2.console.aws.amazon.com/lambda/home", "aws", None,
     "https://us-west-2.console.aws.amazon.com/lambda/home"),
    ("/s3/home", "aws-us-gov", None, "https://console.amazonaws-us-gov.com/s3/home"),
    ("https://console.amazonaws.cn/", "aws-cn", None, "https://console.amazonaws.cn/"),
])
def test_destinations_allowed(dest: str | None, partition: str, region: str | None, want: str) -> None:
    assert console.resolve_destination(dest, partition, region) == want


@pytest.mark.parametrize(("dest", "partition", "region"), [
    ("https://evil.example.com/", "aws", None), ("//evil.example.com/", "aws", None),
    ("/\\evil.example.com", "aws", None), ("javascript:alert(1)", "aws", None),
    ("https://console.aws.amazon.com.evil.example.com/", "aws", None),
    ("https://evilconsole.aws.amazon.com/", "aws", None), ("http://console.aws.amazon.com/", "aws", None),
    ("https://a@console.aws.amazon.com/", "aws", None), ("https://console.aws.amazon.com:8443/", "aws", None),
    ("https://console.amazonaws.cn/", "aws", None), ("https://console.aws.amazon.com/", "aws-cn", None),
    ("/s3/home\nx", "aws", None), ("/s3/home", "aws", "eu-west-1/../x"), ("/s3/home", "aws", "evil.com#"),
])
def test_destinations_refused(dest: str, partition: str, region: str | None) -> None:
    with pytest.raises(ValueError):
        console.resolve_destination(dest, partition, region)


CREDS = Credentials("ASIAEXAMPLE", "secret/+=", "token+/=", datetime(2030, 1, 1, tzinfo=UTC),
                    "arn:aws:sts::123456789012:assumed-role/Admin/s", "arn:aws:iam::123456789012:role/Admin", "s",
                    "us-east-1")


def test_signin_token_params() -> None:
    p = console.signin_token_params(CREDS, 3600)
    assert p["Action"] == "getSigninToken" and p["SessionDuration"] == "3600"
    assert json.loads(p["Session"]) == {"sessionId": "ASIAEXAMPLE", "sessionKey": "secret/+=",
                                        "sessionToken": "token+/="}
    assert "SessionDuration" not in console.signin_token_params(CREDS, None)
    for bad in (899, 43201):
        with pytest.raises(ValueError):
            console.signin_token_params(CREDS, bad)


def test_login_url_encodes_everything() -> None:
    url = console.login_url("https://signin.aws.amazon.com/federation", "tok&en=+/",
                            issuer="https://bridge.example.com/portal",
                            destination="https://console.aws.amazon.com/s3/home?region=eu-west-1&x=1")
    q = parse_qs(urlsplit(url).query)
    assert q == {"Action": ["login"], "Issuer": ["https://bridge.example.com/portal"],
                 "Destination": ["https://console.aws.amazon.com/s3/home?region=eu-west-1&x=1"],
                 "SigninToken": ["tok&en=+/"]}
