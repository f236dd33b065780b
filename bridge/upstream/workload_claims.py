"""What a workload token's claims mean, per platform (the ``workload`` connector's presets). Pure: a verified
token's claims in, an ``Identity`` (or the problems with them) out — used by the connector after it has
verified a token, and by ``bridge explain --token-claims`` / ``bridge rules test`` (``token_claims``) without one.

A preset gives the issuer default, the claims a token must carry (each a non-empty string, or, for
Kubernetes, the ``kubernetes.io`` object), the identity's display name, and whether each token may be
exchanged once only (then it must carry a ``jti``). The identity's ``subject`` is the token's ``sub``; its
claims are every claim of the token but the registered ones (``iss sub aud exp nbf iat jti``), so rules
match ``claims.repository``, ``claims.ref``, ``claims.environment``, ``claims.job_workflow_ref``,
``claims.project_path``, ``claims["kubernetes.io"].namespace``, ``claims["kubernetes.io"].serviceaccount.name``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.domain.identity import Identity

REGISTERED = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti")
NOT_SESSION = re.compile(r"[^A-Za-z0-9_+=,.@-]")  # outside STS's RoleSessionName charset
SESSION_MAX = 64
K8S = "kubernetes.io"


@dataclass(frozen=True)
class Preset:
    """One platform's tokens: ``issuer`` (None: give one), ``required`` string claims, ``name`` (the claim
    shown as the identity's name), ``single_use`` (each token exchanged once: a ``jti`` is required)."""

    issuer: str | None
    required: tuple[str, ...]
    name: str
    single_use: bool
    rule_claims: tuple[str, ...]  # what rules usually match on (docs, explain's hints)
    session: tuple[str, ...] = ()  # claims joined with "." into the AWS session name (the last kept whole)


PRESETS: dict[str, Preset] = {
    # GitHub Actions' OIDC tokens: sub is repo:<owner>/<repo>:ref:<ref> or :environment:<name> or :pull_request
    "github_actions": Preset(
        issuer="https://token.actions.githubusercontent.com",
        required=("repository", "repository_owner", "job_workflow_ref"), name="repository", single_use=True,
        rule_claims=("repository", "repository_owner", "ref", "environment", "job_workflow_ref", "workflow",
                     "actor", "event_name", "ref_type"), session=("repository", "run_id")),
    # GitLab CI/CD ID tokens (id_tokens: in .gitlab-ci.yml); self-managed GitLab: set issuer to its URL
    "gitlab_ci": Preset(
        issuer="https://gitlab.com", required=("project_path", "namespace_path", "pipeline_source"),
        name="project_path", single_use=True,
        rule_claims=("project_path", "namespace_path", "ref", "ref_type", "ref_protected", "environment",
                     "pipeline_source"), session=("project_path", "pipeline_id")),
    # Projected service-account tokens; the issuer is the cluster's --service-account-issuer. A pod reuses
    # its token (the kubelet renews it at 80% of its life) for every exchange: not single-use, so no jti is
    # needed (clusters before 1.30 send none) and a copied token's replay is bounded by max_token_lifetime.
    "kubernetes": Preset(
        issuer="https://kubernetes.default.svc.cluster.local", required=(K8S,), name=K8S, single_use=False,
        rule_claims=(f'["{K8S}"].namespace', f'["{K8S}"].serviceaccount.name')),
    "generic": Preset(issuer=None, required=(), name="sub", single_use=True, rule_claims=(), session=("sub",)),
}


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    v = claims.get(name)
    return v if isinstance(v, str) and v else None


def _k8s_name(claims: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """``<namespace>/<service account>`` of a service-account token, or the problems with its ``kubernetes.io``."""
    k8s = claims.get(K8S)
    if not isinstance(k8s, Mapping):
        return None, [f"the {K8S} claim must be an object (a service-account token's)"]
    sa = k8s.get("serviceaccount")
    namespace, account = k8s.get("namespace"), sa.get("name") if isinstance(sa, Mapping) else None
    problems = [f"{K8S}.{what} must be a non-empty string" for what, v in
                (("namespace", namespace), ("serviceaccount.name", account)) if not (isinstance(v, str) and v)]
    return (None, problems) if problems else (f"{namespace}/{account}", [])


def claims_problems(preset: str, claims: Mapping[str, Any], required: tuple[str, ...] = ()) -> list[str]:
    """What keeps ``claims`` from being an identity of ``preset`` (empty: nothing): ``sub`` and the preset's
    claims (plus ``required``) present, strings where rules read text."""
    p = PRESETS[preset]
    problems = [] if _string(claims, "sub") else ["the token has no sub (a non-empty string)"]
    for name in (*p.required, *required):
        if name == K8S:
            problems += _k8s_name(claims)[1]
        elif _string(claims, name) is None:
            problems.append(f"the token has no {name} claim (a non-empty string), which the {preset} preset needs")
    return problems


def identity_from_claims(connector_id: str, preset: str, claims: Mapping[str, Any],
                         required: tuple[str, ...] = ()) -> Identity:
    """The identity a verified token of ``preset`` names; ValueError listing every problem with its claims."""
    problems = claims_problems(preset, claims, required)
    if problems:
        raise ValueError("; ".join(problems))
    p = PRESETS[preset]
    name = _k8s_name(claims)[0] if p.name == K8S else _string(claims, p.name)
    iat = claims.get("iat")
    return Identity(connector_id=connector_id, subject=str(claims["sub"]), issuer=str(claims.get("iss") or ""),
                    name=name, claims={k: v for k, v in claims.items() if k not in REGISTERED},
                    authn_time=int(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else None)


def session_name(preset: str, claims: Mapping[str, Any]) -> str:
    """The workload's name for its AWS session: the preset's claims joined with ``.`` (GitHub Actions
    ``<repository>.<run_id>``, GitLab ``<project_path>.<pipeline_id>``, Kubernetes ``<namespace>.<service
    account>``, generic ``sub``), each character outside STS's ``[\\w+=,.@-]`` a ``-``, at most 64 characters:
    the first part is cut, so the run id stays whole. Claims it lacks are left out; none at all: ``sub``."""
    p = PRESETS[preset]
    if p.name == K8S:
        k8s = _k8s_name(claims)[0]
        parts = k8s.split("/", 1) if k8s else []
    else:
        parts = [v for v in (_string(claims, c) for c in p.session) if v]
    parts = [NOT_SESSION.sub("-", v) for v in (parts or [str(claims.get("sub") or "workload")])]
    tail = ".".join(parts[1:])[:SESSION_MAX - 3]
    head = parts[0][:SESSION_MAX - len(tail) - 1] if tail else parts[0][:SESSION_MAX]
    return f"{head}.{tail}" if tail else head
