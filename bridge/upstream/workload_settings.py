"""Settings of the ``workload`` connector (``bridge.upstream.workload``): CI jobs and workloads (GitHub Actions,
GitLab CI, Kubernetes service accounts, any OIDC-token issuer) whose platform token the token exchange
(``POST /oauth/token``) takes. No browser, no session: the sign-in page does not list it.

pydantic only (no joserfc, no requests), so loading the config stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bridge.domain.identity import Identity
from bridge.upstream.base import Connector
from bridge.upstream.base_settings import ConnectorEnv, ConnectorSettingsBase
from bridge.upstream.workload_claims import PRESETS, identity_from_claims

WorkloadPreset = Literal["github_actions", "gitlab_ci", "kubernetes", "generic"]
# Asymmetric signatures only: a token signed with "none" or a shared secret (HS*) is refused before any key is read.
WorkloadAlg = Literal["RS256", "ES256"]


def _default_algs() -> list[WorkloadAlg]:
    return ["RS256", "ES256"]


def _http_url(v: str | None) -> str | None:
    if v is not None:
        u = urlsplit(v)
        if u.scheme not in ("https", "http") or not u.netloc:
            raise ValueError("must be an http(s) URL")
    return v


class WorkloadConnectorSettings(ConnectorSettingsBase):
    """A workload token issuer: whose tokens (``iss``), for whom (``aud``), signed with which keys."""

    type: Literal["workload"]
    preset: WorkloadPreset = Field(description="the platform: its issuer default, the claims its tokens must "
                                               "carry, whether each token is exchanged once only")
    issuer: str | None = Field(None, description="the tokens' `iss`, exactly; default: the preset's (github_actions, "
                                                 "gitlab_ci, kubernetes); generic needs one")
    audiences: list[str] = Field(min_length=1, description="the token's `aud` must contain one of these (e.g. the "
                                                           "bridge's URL, as the job asks for it)")
    jwks_uri: str | None = Field(None, description="where the issuer publishes its keys; default: the `jwks_uri` of "
                                                   "its discovery document (<issuer>/.well-known/openid-configuration)")
    jwks_file: Path | None = Field(None, description="the issuer's keys from a file instead (air-gapped clusters: "
                                                     "`kubectl get --raw /openid/v1/jwks`); re-read when it changes")
    allowed_algs: list[WorkloadAlg] = Field(default_factory=_default_algs, min_length=1,
                                            description="signature algorithms accepted (RS256, ES256; never none "
                                                        "or HS*)")
    clock_skew: int = Field(30, ge=0, le=120, description="seconds of leeway on exp, nbf and iat")
    single_use: bool = Field(False, description="exchange each token once only even if the preset does not "
                                                 "(kubernetes, when each exchange asks for a new token with a `jti`; "
                                                 "not with a projected token, which a pod reads again and again)")
    insecure_reusable_tokens: bool = Field(False, description="let a token of a single-use preset be exchanged "
                                                              "again until it expires (no `jti` needed)")
    max_token_lifetime: int = Field(3600, ge=600, le=86400, description="the longest lifetime (`exp` − `iat`, "
                                    "seconds) of a token, single use or not: a reusable one's (kubernetes) "
                                    "bounds a copy's replay, a single-use one's how long an unused copy stays "
                                    "good (GitLab's live the job timeout: raise it for jobs over an hour)")
    required_claims: list[str] = Field(default_factory=list, description="further claims a token must carry (non-"
                                                                         "empty strings), beyond the preset's")
    exchanges_per_minute: int = Field(60, ge=0, description="exchanges per minute of one subject (the token's "
                                      "`sub`) without an app, counted in Redis across instances; 0 = no limit")
    jwks_ttl: int = Field(3600, ge=60, le=86400, description="seconds the keys are used before they are fetched "
                                                             "again (an unknown `kid` fetches them at once)")
    http_timeout: float = Field(5.0, gt=0, le=60, description="seconds for each fetch of the discovery "
                                                               "document or the keys")

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _http_url(v)

    @model_validator(mode="after")
    def _sources(self) -> WorkloadConnectorSettings:
        problems = []
        if self.issuer is None and PRESETS[self.preset].issuer is None:
            problems.append(f"the {self.preset} preset has no default issuer: set issuer")
        if self.jwks_uri is not None and self.jwks_file is not None:
            problems.append("give at most one of jwks_uri, jwks_file")
        if self.single_use and self.insecure_reusable_tokens:
            problems.append("single_use and insecure_reusable_tokens contradict each other")
        if any(not a.strip() for a in self.audiences):
            problems.append("audiences: empty strings are not audiences")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def issuer_url(self) -> str:
        """The configured issuer, else the preset's."""
        return self.issuer or str(PRESETS[self.preset].issuer)

    @property
    def once_only(self) -> bool:
        """Whether each token is exchanged once only: the preset's default or ``single_use``, unless
        ``insecure_reusable_tokens``."""
        return (PRESETS[self.preset].single_use or self.single_use) and not self.insecure_reusable_tokens

    def identity_from_claims(self, claims: dict[str, Any]) -> Identity:
        """The identity a token with these (already verified) claims names, as the connector builds it
        (``bridge explain --token-claims``); ValueError listing what the claims lack."""
        return identity_from_claims(self.id, self.preset, claims, tuple(self.required_claims))

    def open(self, env: ConnectorEnv) -> Connector:
        from bridge.upstream.workload import WorkloadConnector  # joserfc, requests: only once the service starts

        return WorkloadConnector(self, resolve=env.resolve, on_stale=env.stale_for(self.id))

    def warnings(self) -> list[str]:
        out = []
        for what, url in (("issuer", self.issuer_url), ("jwks_uri", self.jwks_uri)):
            if url is not None and urlsplit(url).scheme != "https":
                out.append(f"connector {self.id}: {what} {url} is plain http: whoever can change the keys in transit "
                           "can mint workload tokens.")
        if self.insecure_reusable_tokens:
            out.append(f"connector {self.id}: insecure_reusable_tokens lets a {self.preset} token be exchanged again "
                       "until it expires (whoever copies it from a job log gets credentials too).")
        return out


def workload_ids(connectors: list[Any]) -> list[str]:
    """The ids of the workload connectors among ``connectors`` (settings): ``load_mapping(workloads=)``."""
    return [c.id for c in connectors if isinstance(c, WorkloadConnectorSettings)]


def unruled_warnings(connectors: list[Any], rules: list[Any]) -> list[str]:
    """A workload connector no rule names in ``connectors:``: its tokens get no role (a rule without
    ``connectors:`` does not apply to a workload's identity, bridge/mapping/engine.py). A warning, not a
    failure: it fails closed, and a connector may well be set up before its rules are written."""
    named = {cid for r in rules for cid in (getattr(r, "connectors", None) or ())}
    return [f"connector {c.id}: no rule names this workload connector in connectors:, so its tokens get no role "
            "(a rule without connectors: does not apply to workload identities; docs/workloads.md, \"Rules on "
            "workload claims\")." for c in connectors if isinstance(c, WorkloadConnectorSettings) and c.id not in named]
