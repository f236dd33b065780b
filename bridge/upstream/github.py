"""Upstream GitHub connector: OAuth 2.0 authorization code (state + PKCE S256) and GitHub's REST API.

GitHub issues no ID token, so the identity is what the API says with the user's access token:
``GET /user`` (the numeric ``id`` is the subject: logins can be renamed), the primary e-mail of
``GET /user/emails`` only when GitHub marks it verified, and groups from membership of the
configured ``orgs`` (``GET /orgs/{org}/members/{login}``: 204 member) as ``org`` and of their teams
(``GET /user/teams``) as ``org/team``. Membership of other organisations is never read into groups.

Continuous evaluation: the access token is kept as the upstream grant, and ``reverify`` asks the same
questions again: a token GitHub no longer accepts (401: revoked, app access withdrawn) ends the
session; a user removed from an org or team gets the new, smaller groups (or, with
``require_org_membership``, loses the session once no allowed org is left).
Not verified here: MFA (GitHub's API does not say how the user signed in; ``mfa`` is false).
Tokens are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import requests

from bridge.domain.errors import EmailUnverified, IdpDenied, LoginError, UpstreamUnavailable
from bridge.domain.identity import Identity
from bridge.telemetry.logs import event
from bridge.upstream.base import (
    LoginStart,
    PendingLogin,
    ReverifyExpired,
    ReverifyOk,
    ReverifyResult,
    ReverifyRevoked,
    ReverifyUnreachable,
    logged_reverify,
)
from bridge.upstream.github_settings import SCOPES, GithubConnectorSettings

GRANT_VERSION = 1
API_VERSION = "2022-11-28"  # X-GitHub-Api-Version the shapes below follow


class GithubRefused(Exception):
    """The API refused the token (401, or 403 that is not a rate limit): the user or the grant is gone."""


def not_member(connector_id: str, orgs: list[str]) -> LoginError:
    return LoginError(
        f"{connector_id}: the GitHub user is a member of none of the allowed organisations",
        code="github_not_member", status=403, title="Your GitHub account is not in an allowed organisation",
        message="You signed in to GitHub, but your account is not a member of any organisation this bridge "
                f"accepts ({', '.join(orgs)}).",
        hint="Ask an owner of the organisation to add you (and accept the invitation), or sign in with "
             "another GitHub account. If you are a member, the organisation may restrict OAuth app access: "
             "ask its owner to approve this application.")


def no_verified_email(connector_id: str, why: str) -> EmailUnverified:
    return EmailUnverified(
        f"{connector_id}: {why}", code="github_email_unverified",
        title="Your GitHub account has no verified primary e-mail",
        message="The bridge uses the primary e-mail address of your GitHub account to decide your access, and "
                "GitHub says it is not verified (or the account has none).",
        hint="In GitHub's settings (Emails), verify your primary address or make a verified address primary, "
             "then sign in again.")


@dataclass(frozen=True)
class GithubAnswer:
    """What the API said about the user: ``/user``, the verified primary e-mail, the allowed orgs and teams."""

    user: Mapping[str, Any]
    email: str | None
    orgs: tuple[str, ...]
    teams: tuple[str, ...]


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def primary_verified_email(emails: Any) -> str | None:
    """The primary address of ``/user/emails`` if GitHub marks it verified (``verified`` exactly true);
    other addresses are never used, verified or not."""
    if not isinstance(emails, list):
        raise ValueError("/user/emails is not a list")
    for e in emails:
        if isinstance(e, dict) and e.get("primary") is True:
            address = e.get("email")
            return address if e.get("verified") is True and isinstance(address, str) and address else None
    return None


def teams_in(teams: Any, orgs: tuple[str, ...]) -> tuple[str, ...]:
    """``org/team`` slugs of ``/user/teams`` entries whose organisation is among ``orgs``."""
    if not isinstance(teams, list):
        raise ValueError("/user/teams is not a list")
    out = []
    for t in teams:
        org = t.get("organization") if isinstance(t, dict) else None
        login = org.get("login") if isinstance(org, dict) else None
        slug = t.get("slug") if isinstance(t, dict) else None
        if isinstance(login, str) and isinstance(slug, str) and login.lower() in orgs:
            out.append(f"{login.lower()}/{slug.lower()}")
    return tuple(sorted(set(out)))


class GithubConnector:
    """GitHub.com or a GitHub Enterprise Server, as an OAuth app."""

    type = "github"
    allows_unsolicited = False

    def __init__(self, cfg: GithubConnectorSettings, *, http: requests.Session | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.policy = cfg.policy()
        self.id = cfg.id
        self.name = cfg.name or "GitHub"
        self.http = http or requests.Session()
        self.clock = clock
        self.issuer = cfg.web_url

    # -- login --------------------------------------------------------------------------
    def start_login(self, pending: PendingLogin, redirect_uri: str) -> LoginStart:
        query = {"client_id": self.cfg.client_id, "redirect_uri": redirect_uri, "scope": " ".join(SCOPES),
                 "state": pending.state, "code_challenge": pkce_challenge(pending.code_verifier),
                 "code_challenge_method": "S256", "allow_signup": "false"}
        return LoginStart(f"{self.cfg.web_url}/login/oauth/authorize?{urlencode(query)}")

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str],
                     redirect_uri: str) -> Identity:
        if params.get("error"):
            desc = (params.get("error_description") or "")[:300]
            raise IdpDenied(f"{params['error'][:64]}: {desc}".rstrip(": "))
        if pending is None:
            raise LoginError("GitHub callback without a pending login")
        if not hmac.compare_digest(params.get("state", "").encode(), pending.state.encode()):
            raise LoginError("GitHub callback state is not this sign-in's", code="state_mismatch")
        code = params.get("code")
        if not code:
            raise LoginError("callback has neither code nor error")
        token = self._exchange(code, pending.code_verifier, redirect_uri)
        access = token["access_token"]
        granted = {s.strip() for s in str(token.get("scope", "")).replace(" ", ",").split(",") if s.strip()}
        missing = [s for s in ("user:email", "read:org") if s not in granted and not _implied(s, granted)]
        if missing:
            raise LoginError(f"{self.id}: the token lacks the scopes {', '.join(missing)}", code="github_scope_missing",
                             message="GitHub signed you in but did not grant the bridge the access it needs "
                                     f"({', '.join(missing)}) to read your e-mail and organisations.",
                             hint="Sign in again and accept all the permissions GitHub asks for.")
        try:
            answer = self.ask(access)
        except GithubRefused as e:
            raise LoginError(f"{self.id}: {e}", code="github_api_refused",
                             message="GitHub refused the bridge's request about your account just after "
                                     "signing you in.",
                             hint="Sign in again. If it repeats, the OAuth app's access may have been "
                                  "restricted: ask your administrator.") from None
        if answer.email is None:
            raise no_verified_email(self.id, "no verified primary e-mail")
        if self.cfg.require_org_membership and not answer.orgs:
            raise not_member(self.id, self.cfg.orgs)
        grant = None
        if self.cfg.reverify_interval:
            expires_in = token.get("expires_in")
            grant = {"v": GRANT_VERSION, "id": answer.user["id"], "access_token": access,
                     "verified_at": int(self.clock()),
                     "access_expires_at": int(self.clock()) + int(expires_in)
                     if isinstance(expires_in, int) and not isinstance(expires_in, bool) else None}
        return self.identity(answer, upstream=grant)

    def _exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        """The code for an access token. GitHub answers errors with HTTP 200 and an ``error`` field."""
        data = {"client_id": self.cfg.client_id, "client_secret": self.cfg.client_secret.get_secret_value(),
                "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
        try:
            r = self.http.post(f"{self.cfg.web_url}/login/oauth/access_token", data=data,
                               headers={"Accept": "application/json"}, timeout=self.cfg.http_timeout)
            if r.status_code >= 500 or r.status_code == 429:
                raise UpstreamUnavailable(f"{self.id}: token endpoint: HTTP {r.status_code}")
            body = r.json()
        except (requests.RequestException, ValueError) as e:
            raise UpstreamUnavailable(f"{self.id}: token endpoint: {type(e).__name__}") from None
        if not isinstance(body, dict):
            raise UpstreamUnavailable(f"{self.id}: token endpoint answered no JSON object")
        if body.get("error") or r.status_code >= 400:
            error = str(body.get("error") or f"HTTP {r.status_code}")[:64]
            raise LoginError(f"token endpoint refused the code: {error}", code="github_token_refused",
                             message=f"GitHub did not accept the sign-in code ({error}).",
                             hint="Start the sign-in again. If it repeats, the connector's client id, secret or "
                                  "the OAuth app's callback URL need attention.")
        if not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise LoginError("token endpoint answered without access_token", code="github_token_refused")
        return body

    # -- the REST API -------------------------------------------------------------------
    def _get(self, path: str, token: str, *, allow: tuple[int, ...] = ()) -> requests.Response:
        try:
            r = self.http.get(f"{self.cfg.api_url}{path}", allow_redirects=False, timeout=self.cfg.http_timeout,
                              headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                                       "X-GitHub-Api-Version": API_VERSION})
        except requests.RequestException as e:
            raise UpstreamUnavailable(f"{self.id}: GitHub API {path.split('?')[0]}: {type(e).__name__}") from None
        if r.status_code in allow or r.status_code == 200:
            return r
        limited = r.status_code == 429 or (r.status_code == 403 and (
            r.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in {k.lower() for k in r.headers}))
        if r.status_code == 401 or (r.status_code == 403 and not limited):
            raise GithubRefused(f"GitHub API {path.split('?')[0]}: HTTP {r.status_code}")
        raise UpstreamUnavailable(f"{self.id}: GitHub API {path.split('?')[0]}: HTTP {r.status_code}"
                                  + (" (rate limited)" if limited else ""))

    def _json(self, path: str, token: str) -> Any:
        try:
            return self._get(path, token).json()
        except ValueError:
            raise UpstreamUnavailable(f"{self.id}: GitHub API {path.split('?')[0]}: not JSON") from None

    def _pages(self, path: str, token: str) -> list[Any]:
        """Every page of a list endpoint (``per_page=100``, following ``Link: rel="next"``, up to ``max_pages``)."""
        out: list[Any] = []
        for page in range(1, self.cfg.max_pages + 1):
            doc = self._json(f"{path}?per_page=100&page={page}", token)
            if not isinstance(doc, list):
                raise UpstreamUnavailable(f"{self.id}: GitHub API {path}: not a list")
            out.extend(doc)
            if len(doc) < 100:
                return out
        event("github_pages_truncated", logging.WARNING, connector=self.id, path=path, pages=self.cfg.max_pages)
        return out

    def ask(self, token: str) -> GithubAnswer:
        """What GitHub says now about the token's user. Raises GithubRefused (token or user refused) or
        UpstreamUnavailable (network, 5xx, rate limit, an answer of the wrong shape)."""
        user = self._json("/user", token)
        if not isinstance(user, dict) or not isinstance(user.get("id"), int) or not isinstance(user.get("login"), str):
            raise UpstreamUnavailable(f"{self.id}: GitHub API /user: no id and login")
        try:
            email = primary_verified_email(self._pages("/user/emails", token))
        except ValueError as e:
            raise UpstreamUnavailable(f"{self.id}: {e}") from None
        login = user["login"]
        orgs = []
        for org in self.cfg.orgs:
            r = self._get(f"/orgs/{quote(org, safe='')}/members/{quote(login, safe='')}", token,
                          allow=(204, 302, 404))
            if r.status_code == 204:  # 404: not a member; 302: the asker is not a member (so not this user)
                orgs.append(org)
        teams: tuple[str, ...] = ()
        if self.cfg.teams and orgs:
            try:
                teams = teams_in(self._pages("/user/teams", token), tuple(orgs))
            except ValueError as e:
                raise UpstreamUnavailable(f"{self.id}: {e}") from None
        return GithubAnswer(user=user, email=email, orgs=tuple(orgs), teams=teams)

    def identity(self, answer: GithubAnswer, *, upstream: Mapping[str, Any] | None = None) -> Identity:
        user = answer.user
        name = user.get("name") if isinstance(user.get("name"), str) and user.get("name") else user["login"]
        return Identity(connector_id=self.id, subject=str(user["id"]), issuer=self.issuer, email=answer.email,
                        name=name, groups=answer.orgs + answer.teams,
                        claims=_claims(user), mfa=False, amr=(),
                        upstream=upstream)

    # -- re-checking ----------------------------------------------------------------------
    def reverify(self, upstream_grant: Mapping[str, Any]) -> ReverifyResult:
        """Ask GitHub again with the stored access token (never logged): 401 (revoked token, app access
        withdrawn, user suspended) or another user → revoked; no longer verified primary e-mail or, with
        ``require_org_membership``, no allowed org left → revoked; network, 5xx, rate limit → unreachable;
        otherwise the identity with the current groups."""
        return logged_reverify(self.id, self._reverify(upstream_grant))

    def _reverify(self, g: Mapping[str, Any]) -> ReverifyResult:
        token, expires_at = g.get("access_token"), g.get("access_expires_at")
        if g.get("v") != GRANT_VERSION or not isinstance(token, str) or not isinstance(g.get("id"), int):
            return ReverifyExpired("upstream grant of an unknown shape")
        if isinstance(expires_at, int) and self.clock() >= expires_at:
            return ReverifyExpired("the GitHub access token has expired")
        try:
            answer = self.ask(token)
        except GithubRefused as e:
            return ReverifyRevoked(str(e))
        except UpstreamUnavailable as e:
            return ReverifyUnreachable(e.detail)
        if answer.user["id"] != g["id"]:
            return ReverifyRevoked("the token is now another GitHub user's")
        if answer.email is None:
            return ReverifyRevoked("github_email_unverified")
        if self.cfg.require_org_membership and not answer.orgs:
            return ReverifyRevoked("github_not_member")
        grant = {**g, "verified_at": int(self.clock())}
        return ReverifyOk(self.identity(answer, upstream=grant), grant)


def _implied(scope: str, granted: set[str]) -> bool:
    """GitHub's broader scopes include the narrower ones asked for."""
    return (scope == "user:email" and "user" in granted) or (
        scope == "read:org" and bool({"admin:org", "write:org"} & granted))


def _claims(user: Mapping[str, Any]) -> dict[str, Any]:
    """What rules may use beyond groups: the login and id, and whether the account has 2FA enabled
    (GitHub's ``two_factor_authentication``: a property of the account, not proof of this sign-in)."""
    out: dict[str, Any] = {"login": user["login"], "github_id": user["id"]}
    if isinstance(user.get("two_factor_authentication"), bool):
        out["two_factor_authentication"] = user["two_factor_authentication"]
    return out
