"""A stand-in workload token issuer: what GitHub Actions' OIDC issuer serves (discovery, JWKS) on 127.0.0.1, and
tokens with GitHub's published claim set (``github_claims``), signed RS256 (or ES256) by its published keys;
``gitlab_claims`` and ``k8s_claims`` are GitLab's and a Kubernetes service account's (``mint_as``).

``mint(**claims)`` is a token as a job would get it (``ACTIONS_ID_TOKEN_REQUEST_URL`` with ``audience=``); the
keyword arguments override or (``None``) remove claims; ``header=`` overrides header fields, ``signer=`` signs
with another key (an unpublished one: a forged token), ``alg="none"`` gives an unsigned token. ``rotate()``
publishes a new key (the issuer rotated). ``jwks_fetches`` counts what the bridge fetched.
"""

from __future__ import annotations

import base64
import inspect
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

Key = RSAKey | ECKey


def github_claims(issuer: str, *, audience: str, repository: str = "octo-org/octo-repo", ref: str = "refs/heads/main",
                  environment: str | None = "prod", now: int | None = None, lifetime: int = 300) -> dict[str, Any]:
    """GitHub Actions' OIDC token claims, as GitHub documents them (a workflow_dispatch run of a job that deploys
    to ``environment``), with a fresh ``jti``."""
    now = int(time.time()) if now is None else now
    owner = repository.split("/")[0]
    sub = f"repo:{repository}:environment:{environment}" if environment else f"repo:{repository}:ref:{ref}"
    claims: dict[str, Any] = {
        "jti": secrets.token_hex(16), "sub": sub, "aud": audience, "ref": ref, "sha": "e" * 40,
        "repository": repository, "repository_owner": owner, "actor_id": "12", "repository_visibility": "private",
        "repository_id": "74", "repository_owner_id": "65", "run_id": "5431", "run_number": "10",
        "run_attempt": "2", "runner_environment": "github-hosted", "actor": "octocat", "workflow": "deploy",
        "head_ref": "", "base_ref": "", "event_name": "workflow_dispatch", "ref_type": "branch",
        "workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}", "workflow_sha": "e" * 40,
        "job_workflow_ref": f"{owner}/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "job_workflow_sha": "f" * 40, "iss": issuer, "nbf": now - 5, "exp": now + lifetime, "iat": now}
    if environment:
        claims["environment"] = environment
    return claims


def gitlab_claims(issuer: str, *, audience: str, project_path: str = "platform/billing-api", ref: str = "main",
                  ref_type: str = "branch", ref_protected: bool = True, environment: str | None = "staging",
                  now: int | None = None, lifetime: int = 3600) -> dict[str, Any]:
    """A GitLab CI/CD ID token's claims (``id_tokens:`` in .gitlab-ci.yml) as GitLab documents them ("OpenID
    Connect (OIDC) Authentication Using ID Tokens", "Token payload"): a push pipeline's job on ``ref`` deploying
    to ``environment``, with a fresh ``jti`` (a UUID); its life is the job's timeout (an hour by default)."""
    now = int(time.time()) if now is None else now
    namespace = project_path.rsplit("/", 1)[0]
    full_ref = f"refs/{'heads' if ref_type == 'branch' else 'tags'}/{ref}"
    claims: dict[str, Any] = {
        "namespace_id": "72", "namespace_path": namespace, "project_id": "2042", "project_path": project_path,
        "user_id": "17", "user_login": "release-bot", "user_email": "release-bot@example.com",
        "user_access_level": "maintainer", "pipeline_id": "99120", "pipeline_source": "push", "job_id": "530017",
        "ref": ref, "ref_type": ref_type, "ref_path": full_ref, "ref_protected": str(ref_protected).lower(),
        "runner_id": 12270, "runner_environment": "gitlab-hosted", "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "project_visibility": "private", "ci_config_ref_uri": f"gitlab.com/{project_path}//.gitlab-ci.yml@{full_ref}",
        "ci_config_sha": "714a629c0b401fdce83e847fc9589983fc6f46bc", "jti": str(uuid.uuid4()), "iss": issuer,
        "iat": now, "nbf": now - 5, "exp": now + lifetime,
        "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}", "aud": audience}
    if environment:
        claims.update(environment=environment, environment_protected="true", deployment_tier="staging")
    return claims


def k8s_claims(issuer: str, *, audience: str, namespace: str = "billing", account: str = "exporter",
               pod: str | None = "exporter-7c9f8d6b5-x2k4q", jti: bool = True, now: int | None = None,
               lifetime: int = 3600) -> dict[str, Any]:
    """A projected service-account token's claims (``serviceAccountToken:`` in a pod's volumes) as the API server
    issues them: ``aud`` a list, ``sub`` ``system:serviceaccount:<namespace>:<name>``, the ``kubernetes.io``
    object (namespace, service account, the pod it is bound to and, since 1.30, its node); a ``jti`` since 1.30
    (``jti=False``: an older cluster's token, none)."""
    now = int(time.time()) if now is None else now
    k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": account, "uid": str(uuid.uuid4())}}
    if pod:
        k8s.update(pod={"name": pod, "uid": str(uuid.uuid4())}, node={"name": "node-3", "uid": str(uuid.uuid4())})
    claims: dict[str, Any] = {"aud": [audience], "exp": now + lifetime, "iat": now, "nbf": now, "iss": issuer,
                              "kubernetes.io": k8s, "sub": f"system:serviceaccount:{namespace}:{account}"}
    if jti:
        claims["jti"] = str(uuid.uuid4())
    return claims


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


@dataclass
class WorkloadIssuer:
    audience: str = "https://bridge.test"
    key: Key = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "gh-1"}))
    published: list[Key] = field(default_factory=list)
    issuer: str = ""
    jwks_fetches: int = 0
    discovery_fetches: int = 0
    down: bool = False  # discovery and JWKS answer 503
    down_hits: int = 0  # requests answered 503
    # The runner's side (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN): GET /token-request?audience=… with the request
    # token as bearer answers {"value": <a token for that audience>}, minted with ``job_claims``;
    # ``same_token``: the same token every time (to replay it).
    request_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    job_claims: dict[str, Any] = field(default_factory=dict)
    same_token: bool = False
    _last: str | None = None

    def __post_init__(self) -> None:
        self.published = [self.key]

    def jwks(self) -> dict[str, Any]:
        return KeySet(list(self.published)).as_dict(private=False)  # type: ignore[arg-type]

    def rotate(self, kid: str = "gh-2") -> Key:
        """Publish a new signing key beside the old one, and sign with it from now on."""
        self.key = RSAKey.generate_key(2048, parameters={"kid": kid})
        self.published.append(self.key)
        return self.key

    def claims(self, **kw: Any) -> dict[str, Any]:
        base_kw = {k: kw.pop(k) for k in ("repository", "ref", "environment", "now", "lifetime") if k in kw}
        claims = github_claims(self.issuer, audience=self.audience,
                               **{k: v for k, v in base_kw.items() if v is not None or k == "environment"})
        claims.update(kw)
        if "repository" in base_kw and base_kw["repository"] is None:
            del claims["repository"]
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, *, header: dict[str, Any] | None = None, signer: Key | None = None, alg: str | None = None,
             **claims: Any) -> str:
        return self.sign(self.claims(**claims), header=header, signer=signer, alg=alg)

    def mint_as(self, platform: Callable[..., dict[str, Any]], **kw: Any) -> str:
        """A token of another platform's claim set (``gitlab_claims``, ``k8s_claims``) from this issuer;
        ``kw`` are its arguments, or claims to override (``None``: removed)."""
        names = inspect.signature(platform).parameters
        doc = platform(self.issuer, audience=kw.pop("audience", self.audience),
                       **{k: kw.pop(k) for k in list(kw) if k in names})
        doc.update(kw)
        return self.sign({k: v for k, v in doc.items() if v is not None})

    def sign(self, doc: dict[str, Any], *, header: dict[str, Any] | None = None, signer: Key | None = None,
             alg: str | None = None) -> str:
        signer = signer or self.key
        alg = alg or ("ES256" if isinstance(signer, ECKey) else "RS256")
        head = {"typ": "JWT", "alg": alg, "kid": signer.kid, **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        if alg == "none":
            return f"{_b64(head)}.{_b64(doc)}."
        if alg.startswith("HS"):  # alg confusion: the public key's text as an HMAC secret
            secret = OctKey.import_key(json.dumps(self.jwks()).encode())
            return jwt.encode(head, doc, secret, algorithms=[alg])
        return jwt.encode(head, doc, signer, algorithms=[alg])

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        req = Request(environ)
        if self.down and req.path.startswith("/.well-known/"):
            self.down_hits += 1
            resp = Response("unavailable", status=503)
        elif req.path == "/.well-known/openid-configuration":
            self.discovery_fetches += 1
            resp = _json({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/.well-known/jwks",
                          "subject_types_supported": ["public", "pairwise"], "response_types_supported": ["id_token"],
                          "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository",
                                               "repository_owner", "environment", "job_workflow_ref", "actor"],
                          "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid"]})
        elif req.path == "/token-request":
            resp = self._token_request(req)
        elif req.path == "/.well-known/jwks":
            self.jwks_fetches += 1
            resp = _json(self.jwks())
        else:
            resp = Response("not found", status=404)
        return resp(environ, start_response)


    def _token_request(self, req: Request) -> Response:
        scheme, _, value = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(value, self.request_token):
            return _json({"message": "Bad credentials"}, 401)
        if not (self.same_token and self._last):
            # job_claims may override the audience asked for (a token for another audience)
            self._last = self.mint(**{"aud": req.args.get("audience") or self.audience, **self.job_claims})
        return _json({"count": len(self._last), "value": self._last})


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc), status=status, content_type="application/json")


@contextmanager
def running(issuer: WorkloadIssuer | None = None) -> Iterator[WorkloadIssuer]:
    """The issuer served on a free port of 127.0.0.1 (``issuer.issuer`` is its URL), stopped afterwards."""
    issuer = issuer or WorkloadIssuer()
    srv = make_server("127.0.0.1", 0, issuer, threaded=True)
    issuer.issuer = f"http://127.0.0.1:{srv.server_port}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        srv.shutdown()
        thread.join(timeout=10)


def ec_key(kid: str = "ec-1") -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})
