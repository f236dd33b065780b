"""The AWS partition table (bridge/domain/partitions.py; docs/aws-rules.md §1.3 and §3).

The table replaced per-module copies of the same facts; the regular expressions below are those
copies, kept here to show the table accepts exactly what they accepted.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from bridge.aws.arn import PARTITIONS as ARN_PARTITIONS
from bridge.domain import partitions
from bridge.domain.partitions import AWS, AWS_CN, AWS_US_GOV, PARTITIONS, by_name

OLD_RECIPIENTS = {
    "aws": re.compile(r"\Ahttps://(?:[a-z]{2}(?:-[a-z]+)+-\d\.)?signin\.aws\.amazon\.com/(?:static/)?saml\Z"),
    "aws-us-gov": re.compile(r"\Ahttps://signin\.amazonaws-us-gov\.com/saml\Z"),
    "aws-cn": re.compile(r"\Ahttps://signin\.amazonaws\.cn/saml\Z"),
}
OLD_AUDIENCES = {
    "aws": re.compile(r"\A(?:urn:amazon:webservices|https://(?:[a-z]{2}(?:-[a-z]+)+-\d\.)?"
                      r"signin\.aws\.amazon\.com/(?:static/)?saml)\Z"),
    "aws-us-gov": re.compile(r"\Aurn:amazon:webservices:govcloud\Z"),
    "aws-cn": re.compile(r"\Aurn:amazon:webservices(?::cn-north-1)?\Z"),
}
OLD_CONSOLE_HOST = re.compile(r"\A(?:[a-z]{2}(?:-[a-z]+)+-\d\.)?console\.aws\.amazon\.com\Z|\Aconsole\.amazonaws"
                              r"(?:-us-gov\.com|\.cn)\Z")

SAMPLES = [
    "https://signin.aws.amazon.com/saml", "https://eu-west-1.signin.aws.amazon.com/saml",
    "https://us-gov-west-1.signin.aws.amazon.com/saml", "https://signin.aws.amazon.com/static/saml",
    "https://eu-west-1.signin.aws.amazon.com/static/saml", "https://signin.amazonaws-us-gov.com/saml",
    "https://signin.amazonaws.cn/saml", "https://signin.amazonaws.cn/static/saml",
    "https://us-gov-west-1.signin.amazonaws-us-gov.com/saml", "https://signin.aws.amazon.com/saml/",
    "http://signin.aws.amazon.com/saml", "https://signin.aws.amazon.com/saml\n", "https://signinXaws.amazon.com/saml",
    "https://evil.com/signin.aws.amazon.com/saml", "https://EU-WEST-1.signin.aws.amazon.com/saml",
    "https://eu.signin.aws.amazon.com/saml", "urn:amazon:webservices", "urn:amazon:webservices:govcloud",
    "urn:amazon:webservices:cn-north-1", "urn:amazon:webservices:cn-northwest-1", "urn:amazon:webservices ",
    "", "https://signin.aws.amazon.com/federation",
]
HOSTS = [
    "console.aws.amazon.com", "eu-west-1.console.aws.amazon.com", "us-gov-west-1.console.aws.amazon.com",
    "console.amazonaws-us-gov.com", "console.amazonaws.cn", "eu-west-1.console.amazonaws.cn",
    "console.aws.amazon.com.evil.com", "evil.com", "xconsole.aws.amazon.com", "eu.console.aws.amazon.com",
    "console.aws.amazon.com\n", "signin.aws.amazon.com",
]


def test_the_table_names_every_partition_once() -> None:
    assert tuple(PARTITIONS) == ("aws", "aws-us-gov", "aws-cn") == partitions.NAMES == ARN_PARTITIONS
    assert [by_name(n) for n in partitions.NAMES] == [AWS, AWS_US_GOV, AWS_CN]
    with pytest.raises(KeyError):
        by_name("aws-iso")
    with pytest.raises(dataclasses.FrozenInstanceError):
        AWS.signin_host = "evil.example.com"  # type: ignore[misc]
    with pytest.raises(TypeError):
        PARTITIONS["evil"] = AWS  # type: ignore[index]


@pytest.mark.parametrize("name", ["aws", "aws-us-gov", "aws-cn"])
def test_recipients_and_audiences_are_what_the_validator_accepted_before(name: str) -> None:
    p = by_name(name)
    for s in SAMPLES:
        assert p.is_signin_saml_url(s) == bool(OLD_RECIPIENTS[name].match(s)), (name, s)
        assert p.is_saml_audience(s) == bool(OLD_AUDIENCES[name].match(s)), (name, s)


def test_any_partition_helpers_used_by_the_upstream_connector() -> None:
    for s in SAMPLES:
        assert partitions.is_aws_signin_saml_url(s) == any(r.match(s) for r in OLD_RECIPIENTS.values()), s
        assert partitions.is_aws_saml_audience(s) == any(r.match(s) for r in OLD_AUDIENCES.values()), s


def test_console_hosts_are_what_the_allowlist_accepted_before() -> None:
    for h in HOSTS:
        assert any(p.is_console_host(h) for p in PARTITIONS.values()) == bool(OLD_CONSOLE_HOST.match(h)), h


@pytest.mark.parametrize(
    ("name", "region", "saml", "federation", "console"),
    [
        ("aws", None, "https://signin.aws.amazon.com/saml", "https://signin.aws.amazon.com/federation",
         "https://console.aws.amazon.com"),
        ("aws", "us-east-1", "https://signin.aws.amazon.com/saml", "https://signin.aws.amazon.com/federation",
         "https://console.aws.amazon.com"),
        ("aws", "eu-west-1", "https://eu-west-1.signin.aws.amazon.com/saml",
         "https://eu-west-1.signin.aws.amazon.com/federation", "https://eu-west-1.console.aws.amazon.com"),
        ("aws-us-gov", "us-gov-west-1", "https://signin.amazonaws-us-gov.com/saml",
         "https://signin.amazonaws-us-gov.com/federation", "https://console.amazonaws-us-gov.com"),
        ("aws-cn", "cn-north-1", "https://signin.amazonaws.cn/saml", "https://signin.amazonaws.cn/federation",
         "https://console.amazonaws.cn"),
    ],
)
def test_urls_per_partition_and_region(name: str, region: str | None, saml: str, federation: str,
                                       console: str) -> None:
    p = by_name(name)
    assert (p.signin_saml_url(region), p.federation_url(region), p.console_url(region)) == (saml, federation, console)
    assert p.is_signin_saml_url(p.signin_saml_url(region))  # what we mint, we accept
    assert p.is_saml_audience(p.saml_audience)


def test_minted_audience_and_console_origins() -> None:
    assert [p.saml_audience for p in PARTITIONS.values()] == [
        "urn:amazon:webservices", "urn:amazon:webservices:govcloud", "urn:amazon:webservices:cn-north-1"]
    assert AWS.console_origins() == ["https://console.aws.amazon.com", "https://*.console.aws.amazon.com"]
    assert AWS_US_GOV.console_origins() == ["https://console.amazonaws-us-gov.com"]
    assert AWS_CN.console_origins() == ["https://console.amazonaws.cn"]


@pytest.mark.parametrize("region", ["eu-west-1", "us-gov-west-1", "ap-southeast-2"])
def test_region_pattern(region: str) -> None:
    assert partitions.REGION_RE.match(region)


@pytest.mark.parametrize("region", ["EU-WEST-1", "eu-west", "eu-west-1\n", "eu west 1", "e-west-1", ""])
def test_region_pattern_refuses(region: str) -> None:
    assert not partitions.REGION_RE.match(region)
