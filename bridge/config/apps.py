"""``apps:`` — applications registered as clients of the token exchange (RFC 8693, docs/apps-and-workloads.md).

An app is a web or mobile application (or a workload) whose user signed in at a configured connector; it
exchanges that sign-in's ID token at ``POST /oauth/token`` for AWS credentials of one grant the rules give
the user, narrowed by the app's mandatory session policy. Each app lists what it may do, and nothing beyond:

- ``client_id``: how the app names itself at the bridge (``client_id=`` of the exchange);
- ``idp_audiences``: connector id → the app's own client id(s) at that IdP (the subject token's ``aud``);
- ``origins``: the browser origins allowed to call (CORS is answered for those only; empty: no browser);
- ``grants``: the roles it may ask for (a role ARN, ``<account id or alias>/<role name>``, or a grant id) —
  a subset of what the rules give the user, at each exchange;
- ``max_duration`` (default 900 s), ``session_policy`` (a template, like a rule's ``policy``), rate limits;
- ``dpop``: whether each exchange carries a DPoP proof (RFC 9449, bridge/core/dpop.py): ``required`` (the
  default — every app is a public client, it has no secret), ``insecure_optional`` or ``insecure_off`` (both
  warn at startup; the old ``optional``/``off`` are refused, naming the new spelling);
- ``dpop_nonce``: an added check (off by default: one more round trip on a client's first exchange): proofs
  carry a nonce of the bridge's (RFC 9449 §8, bridge/core/dpop_nonce.py); not with ``dpop: insecure_off``.

pydantic here; ``apps_problems`` (run with the other semantic checks) reports what spans sections: unknown
connectors, duplicate client ids, a session policy that does not compile.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from bridge.domain.settings_base import SettingsModel, renamed
from bridge.domain.webhook_address import is_loopback
from bridge.mapping.chains import compile_policy
from bridge.mapping.ruleset import PolicyT
from bridge.mapping.template import Template, template

if TYPE_CHECKING:
    from bridge.config.schema import Settings

CLIENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_MAX_DURATION = 900  # AWS's shortest session: an app's credentials live 15 minutes unless it says more
DpopMode = Literal["required", "insecure_optional", "insecure_off"]
DPOP_RENAMED = {"optional": "insecure_optional", "off": "insecure_off"}


class AppRateLimits(SettingsModel):
    """Exchanges per minute (0 = off), counted in Redis across instances."""

    per_app_per_minute: int = Field(600, ge=0, description="exchanges of this app, all users together")
    per_user_per_minute: int = Field(30, ge=0, description="exchanges of this app for one user")


class AppSettings(SettingsModel):
    """One registered app (a client of ``POST /oauth/token``'s token exchange)."""

    client_id: str = Field(description="the app's client id at the bridge (`client_id=` of the exchange)")
    name: str = Field("", description="shown in the audit trail and logs; default: client_id")
    idp_audiences: dict[str, list[str]] = Field(
        min_length=1, description="connector id → the app's own client id(s) at that IdP: the subject token's "
                                  "`aud` must be one of them")
    origins: list[str] = Field(default_factory=list, description="browser origins allowed to call (exact "
                               "`https://host[:port]`); CORS is answered for these only; empty: no browser")
    grants: list[str] = Field(min_length=1, description="the roles the app may ask for: a role ARN, `<account id "
                              "or alias>/<role name>`, or a grant id; the user must hold it too")
    max_duration: int = Field(DEFAULT_MAX_DURATION, ge=900, le=43200,
                              description="seconds; also never more than the role allows")
    session_policy: dict[str, Any] | str = Field(
        description="mandatory inline session policy (a mapping or its JSON text; string values are templates "
                    "over the identity, e.g. `arn:aws:s3:::bucket/{subject}/*`)")
    rate_limits: AppRateLimits = Field(default_factory=AppRateLimits)
    dpop: DpopMode = Field("required", description="DPoP proofs (RFC 9449) on each exchange: `required` (a proof "
                           "of the app's key with every request), `insecure_optional` (checked when sent, or when "
                           "the subject token is DPoP-bound), `insecure_off` (a DPoP header or a bound token is "
                           "refused); an app is a public client (no secret): the insecure_ modes warn at startup")
    dpop_nonce: bool = Field(False, description="adds a check: each DPoP proof must carry a nonce the bridge handed "
                             "out (RFC 9449 §8, the `DPoP-Nonce` header of every answer; it lives 5 to 10 minutes), "
                             "so a proof made ahead of time is refused (`use_dpop_nonce`). Off by default: it costs "
                             "a client one more round trip on its first exchange (refused, then sent again with the "
                             "nonce). Needs a credential cache key in `issuer.keys_dir` (nonces are derived from it)")

    @property
    def label(self) -> str:
        return self.name or self.client_id

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        if not CLIENT_ID_RE.fullmatch(v):
            raise ValueError("1..64 characters: letters, digits and . _ - (starting with a letter or digit)")
        return v

    @field_validator("dpop", mode="before")
    @classmethod
    def _dpop_renamed(cls, v: object) -> object:
        return renamed(v, DPOP_RENAMED, "dpop")

    @field_validator("idp_audiences")
    @classmethod
    def _audiences(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for cid, auds in v.items():
            if not auds or not all(isinstance(a, str) and a.strip() for a in auds):
                raise ValueError(f"{cid}: list the app's client id(s) at that IdP (non-empty strings)")
        return v

    @field_validator("origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if origin_problem(o)]
        if bad:
            raise ValueError("; ".join(f"{o!r}: {origin_problem(o)}" for o in bad))
        return v

    @field_validator("grants")
    @classmethod
    def _grants(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not s.strip() or "*" in s]
        if bad:
            raise ValueError(f"{bad}: name each role exactly (no wildcards, no empty entries)")
        return v


def origin_problem(origin: str) -> str | None:
    """Why ``origin`` is not an exact web origin (None: it is): ``scheme://host[:port]``, nothing after it."""
    if origin == "*" or "*" in origin:
        return "no wildcards: list each origin"
    u = urlsplit(origin)
    if u.scheme not in ("https", "http") or not u.hostname:
        return "an origin is http(s)://host[:port]"
    if u.path or u.query or u.fragment or u.username or origin.endswith("/"):
        return "an origin has no path, query, user or trailing slash"
    if origin != origin.lower():
        return "write the origin in lower case, as browsers send it"
    return None


def app_policy(raw: Any, where: str, problems: list[str]) -> PolicyT | None:
    """An app's session policy compiled like a rule's (templates over the identity; no ``{match.…}``: an app
    has no rule match), every problem appended to ``problems``."""

    def problem(at: str, message: str) -> None:
        problems.append(f"{at}: {message}")

    def tmpl(text: str, at: str) -> Template | None:
        t, found = template(text)
        for p in found:
            problem(at, p)
        if t is not None and t.uses_match:
            problem(at, "an app's policy cannot use {match.…}: there is no rule match")
            return None
        return t

    return compile_policy(raw, where, tmpl, problem)


def apps_warnings(apps: list[AppSettings]) -> list[str]:
    """Startup warnings: a plain-http origin other than loopback (credentials readable on the network); DPoP
    weakened (``insecure_optional``, ``insecure_off``), or not set (clients without proofs fail)."""
    out = [f"apps[{i}].origins: {o} is plain http: the AWS credentials the page receives cross the network "
           "unencrypted." for i, a in enumerate(apps) for o in a.origins
           if urlsplit(o).scheme == "http" and not is_loopback(urlsplit(o).hostname or "")]
    for i, a in enumerate(apps):
        if "dpop" not in a.model_fields_set:
            out.append(f"apps[{i}] ({a.label}): dpop is not set, so DPoP proofs are REQUIRED (the default for "
                       "public clients): an exchange without a DPoP header is refused (dpop_proof_missing). Set "
                       "`dpop: required` to confirm, or `dpop: insecure_optional` while the app's client learns "
                       "DPoP (docs/apps-and-workloads.md#dpop).")
        elif a.dpop != "required":
            # Truthfully: with a plain ID token (no cnf) even `required` stops no thief, who signs proofs with a
            # key of their own; what is lost is replay protection and the key in the audit trail.
            out.append(f"apps[{i}] ({a.label}): dpop: {a.dpop}: exchanges without a DPoP proof are accepted, so a "
                       "copied exchange request can be replayed while its subject token is valid, and the audit "
                       "names no key. (Even `required` does not stop whoever holds a user's plain ID token: it is "
                       "bound to no key, so they sign proofs with their own; only tokens the IdP binds, cnf.jkt, "
                       "are.) Set `dpop: required` once the client sends proofs.")
    return out


def apps_problems(s: Settings) -> list[str]:
    """Across sections: each app names configured connectors, client ids are unique, policies compile."""
    problems: list[str] = []
    known = {c.id for c in s.connectors}
    seen: set[str] = set()
    for i, app in enumerate(s.apps):
        where = f"apps[{i}]"
        if app.client_id in seen:
            problems.append(f"{where}.client_id: {app.client_id!r} is used by another app")
        seen.add(app.client_id)
        problems += [f"{where}.idp_audiences: {cid!r} is not a configured connector (known: {sorted(known)})"
                     for cid in app.idp_audiences if cid not in known]
        app_policy(app.session_policy, f"{where}.session_policy", problems)
        if app.dpop_nonce and app.dpop == "insecure_off":
            problems.append(f"{where}.dpop_nonce: the app takes no DPoP proof (dpop: insecure_off), so no nonce "
                            "either: set dpop to required (or insecure_optional), or drop dpop_nonce")
    return problems
