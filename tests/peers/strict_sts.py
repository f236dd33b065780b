"""A strict STS in front of moto: checks what AWS checks, then forwards.

moto validates nothing (docs/aws-rules.md §5), so tests point the bridge at
this proxy. For AssumeRoleWithWebIdentity it plays IAM's part: the token's ``iss`` must be a
registered OIDC provider, the token must pass the project's strict validator against that
provider's JWKS and audiences, RoleSessionName/DurationSeconds must be valid (including a
per-role MaxSessionDuration). A failure gets the STS error AWS would send; a pass is
forwarded to moto, which issues the credentials. Every token seen is recorded.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bridge.aws.problems import Problem
from bridge.aws.validate import validate_assume_params, validate_jwt
from bridge.aws.validate_saml import IdpMetadata, validate_saml_response


@dataclass
class Provider:
    issuer: str
    audiences: set[str]
    jwks: Callable[[], dict[str, Any]]
    http_ok: bool = False  # test IdPs on loopback speak http; AWS itself requires https


@dataclass
class Seen:
    action: str
    role_arn: str
    token: str
    problems: list[Problem]


@dataclass
class StrictSts:
    upstream: str
    providers: dict[str, Provider] = field(default_factory=dict)
    saml_providers: dict[str, Callable[[], bytes]] = field(default_factory=dict)
    role_max_duration: dict[str, int] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    injected: list[tuple[int, str, str]] = field(default_factory=list)
    raw: list[tuple[int, str]] = field(default_factory=list)
    url: str = ""
    calls: int = 0

    def register_oidc_provider(self, issuer: str, audiences: set[str], jwks: Callable[[], dict[str, Any]],
                               *, http_ok: bool = False) -> None:
        self.providers[issuer] = Provider(issuer, audiences, jwks, http_ok)

    def register_saml_provider(self, name: str, metadata: Callable[[], bytes]) -> None:
        """Like `aws iam create-saml-provider --name NAME --saml-metadata-document …` (any account)."""
        self.saml_providers[name] = metadata

    def fail_next(self, status: int, code: str, message: str) -> None:
        """Answer the next request with this STS error (throttling, AccessDenied, ...)."""
        self.injected.append((status, code, message))

    def answer_next_raw(self, status: int, body: str) -> None:
        """Answer the next request with ``body`` as it is (not STS XML: a proxy's page, a truncated reply)."""
        self.raw.append((status, body))

    def reset(self) -> None:
        self.seen.clear()
        self.injected.clear()
        self.raw.clear()
        self.role_max_duration.clear()
        self.calls = 0

    @property
    def failures(self) -> list[Seen]:
        return [s for s in self.seen if s.problems]

    # -- WSGI -----------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        req = Request(environ)
        body = req.get_data()
        self.calls += 1
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if self.raw:
            status, text = self.raw.pop(0)
            return Response(text, status=status, content_type="text/html")(environ, start_response)
        if self.injected:
            status, code, message = self.injected.pop(0)
            return _error(status, code, message)(environ, start_response)
        if form.get("Action") == "AssumeRoleWithWebIdentity":
            problems = self._check_web_identity(form)
            self.seen.append(Seen("AssumeRoleWithWebIdentity", form.get("RoleArn", ""),
                                  form.get("WebIdentityToken", ""), problems))
            if problems:
                code = "ValidationError" if problems[0].rule == "9" else "InvalidIdentityToken"
                return _error(400, code, "; ".join(map(str, problems)))(environ, start_response)
        if form.get("Action") == "AssumeRoleWithSAML":
            problems = self._check_saml(form)
            self.seen.append(Seen("AssumeRoleWithSAML", form.get("RoleArn", ""), form.get("SAMLAssertion", ""),
                                  problems))
            if problems:
                code = "ValidationError" if problems[0].rule == "11" else "InvalidIdentityToken"
                return _error(400, code, "; ".join(map(str, problems)))(environ, start_response)
        r = requests.post(self.upstream + req.path, data=body, headers={
            k: v for k, v in req.headers.items() if k.lower() not in ("host", "content-length")}, timeout=30)
        resp = Response(r.content, status=r.status_code, content_type=r.headers.get("content-type"))
        return resp(environ, start_response)

    def _check_web_identity(self, form: dict[str, str]) -> list[Problem]:
        token = form.get("WebIdentityToken", "")
        try:
            payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
            iss = payload.get("iss")
        except (IndexError, ValueError):
            return [Problem("1", "token", "token is not a JWT")]
        provider = self.providers.get(iss)
        if provider is None:
            return [Problem("3", "claims.iss", f"No OpenIDConnect provider found in your account for {iss}")]
        role = form.get("RoleArn", "")
        problems = validate_jwt(token, jwks=provider.jwks(), issuer=provider.issuer,
                                audiences=provider.audiences, now=int(time.time()))
        if provider.http_ok:
            problems = [p for p in problems
                        if not (p.rule == "3" and p.path == "issuer" and ("https" in p.message or "port" in p.message))]
        problems += validate_assume_params(form.get("RoleSessionName", ""), int(form.get("DurationSeconds", "3600")),
                                           self.role_max_duration.get(role, 43200))
        return problems

    def _check_saml(self, form: dict[str, str]) -> list[Problem]:
        principal = form.get("PrincipalArn", "")
        name = principal.rsplit("saml-provider/", 1)[-1]
        metadata = self.saml_providers.get(name)
        if metadata is None:
            return [Problem("4", "PrincipalArn", f"Specified provider doesn't exist: {principal}")]
        role = form.get("RoleArn", "")
        partition = role.split(":")[1] if role.count(":") > 2 else "aws"
        max_duration = self.role_max_duration.get(role, 43200)
        problems = validate_saml_response(form.get("SAMLAssertion", ""), metadata=IdpMetadata.from_xml(metadata()),
                                          now=int(time.time()), partition=partition, role_arn=role,
                                          principal_arn=principal, max_duration=max_duration)
        duration = int(form.get("DurationSeconds", "3600"))
        if duration > max_duration:
            problems.append(Problem("11", "DurationSeconds",
                                    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."))
        return problems


def _error(status: int, code: str, message: str) -> Response:
    kind = "Receiver" if status >= 500 else "Sender"
    xml = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>{kind}</Type>'
           f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>strict-sts</RequestId></ErrorResponse>")
    return Response(xml, status=status, content_type="text/xml")


def serve(sts: StrictSts) -> tuple[str, Callable[[], None]]:
    srv = make_server("127.0.0.1", 0, sts, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    sts.url = f"http://127.0.0.1:{srv.server_port}"
    return sts.url, srv.shutdown
