"""AWS partitions: the sign-in, console and SAML facts that differ between them. Pure.

One table, read by minting (Recipient/Audience of our assertions), console sign-in (federation
endpoint, console hosts, destination allowlist), the strict validators (which Recipients and
Audiences AWS accepts) and the upstream SAML connector (passthrough responses addressed to AWS).
The sources for each value are listed in docs/aws-rules.md §1.3 and §3.

Only the ``aws`` partition has regional sign-in and console hosts (``eu-west-1.signin.aws.amazon.com``);
``us-east-1`` uses the global host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

REGION_PATTERN = r"[a-z]{2}(?:-[a-z]+)+-\d"
REGION_RE = re.compile(rf"\A{REGION_PATTERN}\Z")
GLOBAL_REGION = "us-east-1"  # its regional sign-in and console hosts are the global ones


@dataclass(frozen=True)
class Partition:
    """One AWS partition's sign-in facts.

    ``saml_audiences[0]`` is the Audience the bridge mints; every entry is one AWS accepts.
    ``regional``: ``<region>.`` host prefixes exist (sign-in and console).
    ``static_saml``: ``/static/saml`` is an accepted sign-in SAML path beside ``/saml``.
    ``signin_url_audience``: a sign-in SAML URL is also an accepted Audience.
    """

    name: str
    signin_host: str
    console_host: str
    saml_audiences: tuple[str, ...]
    regional: bool = False
    static_saml: bool = False
    signin_url_audience: bool = False
    _signin_saml_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _console_host_re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        region = rf"(?:{REGION_PATTERN}\.)?" if self.regional else ""
        static = "(?:static/)?" if self.static_saml else ""
        object.__setattr__(self, "_signin_saml_re",
                           re.compile(rf"\Ahttps://{region}{re.escape(self.signin_host)}/{static}saml\Z"))
        object.__setattr__(self, "_console_host_re", re.compile(rf"\A{region}{re.escape(self.console_host)}\Z"))

    def _host(self, base: str, region: str | None) -> str:
        if self.regional and region and region != GLOBAL_REGION:
            return f"{region}.{base}"
        return base

    # -- SAML sign-in ------------------------------------------------------------------------
    @property
    def saml_audience(self) -> str:
        """The Audience the bridge puts in the assertions it mints."""
        return self.saml_audiences[0]

    def signin_saml_url(self, region: str | None = None) -> str:
        """The sign-in SAML endpoint (Recipient, Destination, console POST target); regional when asked."""
        return f"https://{self._host(self.signin_host, region)}/saml"

    def is_signin_saml_url(self, url: str) -> bool:
        """Whether ``url`` is one of this partition's sign-in SAML endpoints (an accepted Recipient)."""
        return self._signin_saml_re.match(url) is not None

    def is_saml_audience(self, value: str) -> bool:
        """Whether ``value`` is an Audience AWS accepts for this partition."""
        return value in self.saml_audiences or (self.signin_url_audience and self.is_signin_saml_url(value))

    # -- console sign-in ---------------------------------------------------------------------
    def federation_url(self, region: str | None = None) -> str:
        """The federation endpoint (getSigninToken, Action=login)."""
        return f"https://{self._host(self.signin_host, region)}/federation"

    def console_url(self, region: str | None = None) -> str:
        """The console's base URL (no path)."""
        return f"https://{self._host(self.console_host, region)}"

    def console_origins(self) -> list[str]:
        """Origins a console sign-in may pass through after the sign-in endpoint: the console and,
        where regional hosts exist, those (AWS redirects to them)."""
        return [f"https://{self.console_host}"] + ([f"https://*.{self.console_host}"] if self.regional else [])

    def is_console_host(self, host: str) -> bool:
        """Whether ``host`` is this partition's console host (or a regional one)."""
        return self._console_host_re.match(host) is not None


AWS = Partition("aws", signin_host="signin.aws.amazon.com", console_host="console.aws.amazon.com",
                saml_audiences=("urn:amazon:webservices",), regional=True, static_saml=True,
                signin_url_audience=True)
AWS_US_GOV = Partition("aws-us-gov", signin_host="signin.amazonaws-us-gov.com",
                       console_host="console.amazonaws-us-gov.com",
                       saml_audiences=("urn:amazon:webservices:govcloud",))
AWS_CN = Partition("aws-cn", signin_host="signin.amazonaws.cn", console_host="console.amazonaws.cn",
                   saml_audiences=("urn:amazon:webservices:cn-north-1", "urn:amazon:webservices"))

PARTITIONS: Mapping[str, Partition] = MappingProxyType({p.name: p for p in (AWS, AWS_US_GOV, AWS_CN)})
NAMES: tuple[str, ...] = tuple(PARTITIONS)


def by_name(name: str) -> Partition:
    """The partition called ``name``; KeyError for an unknown one."""
    return PARTITIONS[name]


def is_aws_signin_saml_url(url: str) -> bool:
    """Whether ``url`` is an AWS sign-in SAML endpoint of any partition."""
    return any(p.is_signin_saml_url(url) for p in PARTITIONS.values())


def is_aws_saml_audience(value: str) -> bool:
    """Whether ``value`` is an Audience AWS accepts in any partition."""
    return any(p.is_saml_audience(value) for p in PARTITIONS.values())
