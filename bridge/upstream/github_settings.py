"""Settings of the ``github`` connector (``bridge.upstream.github``): GitHub (or GitHub Enterprise Server)
as an OAuth 2.0 sign-in, with org and team membership as groups.

pydantic only (no authlib, no requests), so loading the config stays light.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from bridge.domain.settings_base import renamed
from bridge.upstream.base import Connector, ConnectorPolicy
from bridge.upstream.base_settings import ConnectorEnv, ConnectorSettingsBase

# GitHub's login rules for users and organisations: alphanumerics and single hyphens, at most 39 characters.
ORG_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
SCOPES = ("read:user", "user:email", "read:org")


def _url(v: str) -> str:
    u = urlsplit(v)
    if u.scheme not in ("https", "http") or not u.netloc or u.query or u.fragment:
        raise ValueError("must be an http(s) URL without query or fragment")
    return v.rstrip("/")


class GithubConnectorSettings(ConnectorSettingsBase):
    """GitHub OAuth app sign-in: identity from ``/user`` and the verified primary e-mail, groups from
    membership of the organisations in ``orgs`` (``org``) and of their teams (``org/team``)."""

    type: Literal["github"]
    client_id: str = Field(min_length=1, description="the OAuth app's Client ID")
    client_secret: SecretStr = Field(description="the OAuth app's client secret (use `${ENV}` or a file)")
    # Only these organisations count: membership elsewhere gives no groups (and, with
    # require_org_membership, no sign-in). Matched case-insensitively; groups are lower-case.
    orgs: list[str] = Field(min_length=1, description="organisation logins whose membership becomes groups")
    require_org_membership: bool = Field(
        True, description="refuse users who are members of none of `orgs` (else: signed in without groups)")
    teams: bool = Field(True, description="add `org/team` groups for the user's teams in `orgs`")
    # GitHub Enterprise Server: web_url https://ghe.corp, api_url https://ghe.corp/api/v3.
    web_url: str = Field("https://github.com", description="where /login/oauth/authorize and access_token are")
    api_url: str = Field("https://api.github.com", description="the REST API root")
    http_timeout: float = Field(5.0, gt=0, le=60, description="seconds per call to GitHub")
    max_pages: int = Field(10, ge=1, le=100, description="pages of 100 teams read at most")
    # Re-check membership with the stored OAuth token every reverify_interval seconds while the
    # session or its CLI tokens are used: a user removed from an org or team loses what it gave.
    reverify_interval: int = Field(900, ge=0, le=86400, description="seconds; 0 = off")
    reverify_grace: int = Field(3600, ge=0, le=7 * 86400,
                                description="seconds since the last good check an unreachable GitHub is tolerated")
    reverify_unreachable: Literal["fail_closed", "insecure_fail_open"] = Field(
        "fail_closed", description="past the grace, an unreachable GitHub refuses (fail_closed) or not "
        "(insecure_fail_open: the roles stay, warned at startup)")

    @field_validator("web_url", "api_url")
    @classmethod
    def _urls(cls, v: str) -> str:
        return _url(v)

    @field_validator("orgs")
    @classmethod
    def _orgs(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if not ORG_LOGIN.match(o)]
        if bad:
            raise ValueError(f"not GitHub organisation logins: {', '.join(repr(o[:40]) for o in bad)}")
        lowered = [o.lower() for o in v]
        if len(set(lowered)) != len(lowered):
            raise ValueError("lists an organisation twice")
        return lowered

    @field_validator("reverify_interval")
    @classmethod
    def _interval(cls, v: int) -> int:
        if 0 < v < 60:
            raise ValueError("0 (off) or at least 60 seconds (each check is several calls to GitHub)")
        return v

    @field_validator("reverify_unreachable", mode="before")
    @classmethod
    def _renamed(cls, v: object) -> object:
        return renamed(v, {"fail_open": "insecure_fail_open"}, "reverify_unreachable")

    def policy(self) -> ConnectorPolicy:
        return ConnectorPolicy(reverify_interval=self.reverify_interval, reverify_grace=self.reverify_grace,
                               reverify_fail_closed=self.reverify_unreachable == "fail_closed",
                               groups_claim="groups")

    def open(self, env: ConnectorEnv) -> Connector:
        from bridge.upstream.github import GithubConnector  # requests: only once the service starts

        return GithubConnector(self)

    def warnings(self) -> list[str]:
        out = [f"connector {self.id}: {name} {url} is plain http." for name, url in
               (("web_url", self.web_url), ("api_url", self.api_url)) if urlsplit(url).scheme != "https"]
        if self.reverify_unreachable == "insecure_fail_open" and self.reverify_interval:
            out.append(f"connector {self.id}: reverify_unreachable: insecure_fail_open keeps a user's roles while "
                       "GitHub cannot be reached past reverify_grace: a user removed from the org meanwhile keeps "
                       "them.")
        return out
