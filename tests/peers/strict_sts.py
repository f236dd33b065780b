"""A strict STS in front of moto: checks what AWS checks, then forwards.

moto validates nothing (docs/aws-rules.md §5), so tests point the bridge at
this proxy. For AssumeRoleWithWebIdentity it plays IAM's part: the token's ``iss`` must be a
registered OIDC provider, the token must pass the project's strict validator against that
provider's JWKS and audiences, RoleSessionName/DurationSeconds must be valid (including a
per-role MaxSessionDuration). A failure gets the STS error AWS would send; a pass is
forwarded to moto, which issues the credentials. Every token seen is recorded.

For sts:AssumeRole (role chaining, docs/aws-rules.md §7) it plays the target role's trust policy and
the hub's session: the request must be signed (SigV4, verified here) with credentials this STS issued;
the target must trust the calling role (``trust``) and get the ExternalId its trust policy names; the
parameters must pass ``validate_assume_role`` against what the calling session carries (its source
identity, its transitive tags, the one-hour cap of a chained session). ``sessions`` keeps what each
issued session carries; ``seen[i].params`` every parameter of every call, so a test asserts each hop.

A role given a trust policy document (``trust_policy``) has it played on every call into it, with the
request context AWS builds (docs/aws-rules.md §2.8: the provider's ``aud``/``sub`` keys, ``SAML:*``,
``aws:RequestTag/*``, ``aws:TagKeys``, ``sts:TransitiveTagKeys``; for sts:AssumeRole the caller's
``aws:PrincipalArn`` and ``aws:PrincipalTag/*`` — its session tags and inherited transitive ones — and
``sts:ExternalId``), evaluated by ``bridge doctor``'s policy logic: a refusal is AWS's AccessDenied.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from lxml import etree
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bridge.aws.doctor import Value, _principal_matches, _statements, admits
from bridge.aws.doctor_chain import _trusts
from bridge.aws.limits import policy_problems
from bridge.aws.problems import Problem
from bridge.aws.validate import (
    SOURCE_IDENTITY_CLAIM,
    TAGS_CLAIM,
    AssumeRoleCall,
    validate_assume_params,
    validate_assume_role,
    validate_jwt,
)
from bridge.aws.validate_saml import AWS_ATTR, IdpMetadata, validate_saml_response


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
    params: dict[str, str] = field(default_factory=dict)  # every form field of the call
    caller: str = ""  # AssumeRole: the calling session's assumed-role ARN
    denied: str = ""  # why a played trust policy refused the call (AWS's AccessDenied; not a broken rule)


@dataclass
class Session:
    """What a session this STS issued carries (what AWS keeps for a later sts:AssumeRole)."""

    arn: str
    secret: str
    token: str
    source_identity: str | None
    transitive: dict[str, str]
    chained: bool
    tags: dict[str, str] = field(default_factory=dict)  # every principal tag (session tags and inherited ones)


@dataclass
class Trust:
    principal: str  # the role ARN allowed to call sts:AssumeRole
    external_id: str | None = None


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
    sessions: dict[str, Session] = field(default_factory=dict)  # access key id → what it carries
    trusts: dict[str, list[Trust]] = field(default_factory=dict)  # role ARN → who may AssumeRole it
    trust_policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # role ARN → its trust policy document

    def trust(self, role_arn: str, principal: str, *, external_id: str | None = None) -> None:
        """The trust policy of ``role_arn``: ``principal`` (a role ARN) may sts:AssumeRole it, with this
        ExternalId when given (the ``sts:ExternalId`` condition a vendor's trust policy sets)."""
        self.trusts.setdefault(role_arn, []).append(Trust(principal, external_id))

    def trust_policy(self, role_arn: str, document: dict[str, Any]) -> None:
        """Play ``document`` as ``role_arn``'s trust policy on every call into it (instead of ``trust``)."""
        self.trust_policies[role_arn] = document

    def is_chained(self, access_key_id: str) -> bool:
        """Whether these credentials came from sts:AssumeRole by role chaining (the console stand-in asks)."""
        s = self.sessions.get(access_key_id)
        return bool(s and s.chained)

    @property
    def assume_role_calls(self) -> list[Seen]:
        return [s for s in self.seen if s.action == "AssumeRole"]

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
        self.trusts.clear()
        self.trust_policies.clear()
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
        carried: Carried | None = None  # what the new session will carry
        if form.get("Action") == "AssumeRoleWithWebIdentity":
            problems = self._check_web_identity(form)
            self.seen.append(Seen("AssumeRoleWithWebIdentity", form.get("RoleArn", ""),
                                  form.get("WebIdentityToken", ""), problems, form))
            if problems:
                code = "ValidationError" if problems[0].rule == "9" else "InvalidIdentityToken"
                return _error(400, code, "; ".join(map(str, problems)))(environ, start_response)
            token = form.get("WebIdentityToken", "")
            carried = (*_jwt_carries(token), False, _jwt_tags(token)[1])
            if refused := self._play_trust(form.get("RoleArn", ""), "sts:AssumeRoleWithWebIdentity",
                                           *_web_identity_context(token, form.get("RoleArn", "")), carried):
                return refused(environ, start_response)
        if form.get("Action") == "AssumeRoleWithSAML":
            problems = self._check_saml(form)
            self.seen.append(Seen("AssumeRoleWithSAML", form.get("RoleArn", ""), form.get("SAMLAssertion", ""),
                                  problems, form))
            if problems:
                code = "ValidationError" if problems[0].rule == "11" else "InvalidIdentityToken"
                return _error(400, code, "; ".join(map(str, problems)))(environ, start_response)
            assertion = form.get("SAMLAssertion", "")
            carried = (*_saml_carries(assertion), False, _saml_attrs(assertion)[2])
            if refused := self._play_trust(form.get("RoleArn", ""), "sts:AssumeRoleWithSAML",
                                           *_saml_context(assertion, form.get("PrincipalArn", "")), carried):
                return refused(environ, start_response)
        if form.get("Action") == "AssumeRole":
            refused, carried = self._check_assume_role(req, body, form)
            if refused is not None:
                return refused(environ, start_response)
        r = requests.post(self.upstream + req.path, data=body, headers={
            k: v for k, v in req.headers.items() if k.lower() not in ("host", "content-length")}, timeout=30)
        if carried is not None and r.status_code == 200:
            self._keep_session(r.text, *carried)
        resp = Response(r.content, status=r.status_code, content_type=r.headers.get("content-type"))
        return resp(environ, start_response)

    def _keep_session(self, xml: str, source_identity: str | None, transitive: dict[str, str], chained: bool,
                      tags: dict[str, str]) -> None:
        def one(tag: str) -> str:
            m = re.search(f"<{tag}>([^<]*)</{tag}>", xml)
            return m[1] if m else ""

        self.sessions[one("AccessKeyId")] = Session(one("Arn"), one("SecretAccessKey"), one("SessionToken"),
                                                    source_identity, transitive, chained, tags)

    def _play_trust(self, role: str, action: str, principal: Callable[[Mapping[str, Any]], bool],
                    ctx: dict[str, Value], carried: Carried) -> Response | None:
        """AccessDenied unless ``role``'s trust policy (when it has one) allows ``action`` — and sts:TagSession /
        sts:SetSourceIdentity when the call sends tags / a source identity — to ``principal`` under ``ctx``."""
        policy = self.trust_policies.get(role)
        if policy is None:
            return None
        statements = _statements(policy)
        actions = [action] + (["sts:TagSession"] if ctx.get("aws:tagkeys") else []) + (
            ["sts:SetSourceIdentity"] if carried[0] else [])
        for a in actions:
            if admits(statements, principal, a, ctx) is not True:
                self.seen[-1].denied = f"the trust policy of {role} refuses {a}"
                return _error(403, "AccessDenied", f"Not authorized to perform {a}")
        return None

    def _check_assume_role(self, req: Request, body: bytes, form: dict[str, str],
                           ) -> tuple[Response | None, Carried | None]:
        """Signature, caller, trust and ExternalId, then the §7.4 rules; (refusal or None, what the new session
        will carry)."""
        role = form.get("RoleArn", "")
        seen = Seen("AssumeRole", role, "", [], form)
        self.seen.append(seen)
        caller = self._signed_by(req, body)
        if caller is None:
            seen.problems.append(Problem("0", "Authorization", "not signed with credentials this STS issued"))
            return _error(403, "InvalidClientTokenId", "The security token included in the request is invalid."), None
        seen.caller = caller.arn
        caller_role = _role_of(caller.arn)
        trusted = [t for t in self.trusts.get(role, []) if t.principal == caller_role]
        call = _assume_role_call(form, caller)
        if role in self.trust_policies:
            ctx: dict[str, Value] = {"aws:principalarn": [caller_role],
                                     **{f"aws:principaltag/{k.lower()}": [v] for k, v in caller.tags.items()},
                                     **_tag_context(call.tags or {}, call.transitive_keys, call.source_identity)}
            if call.external_id is not None:
                ctx["sts:externalid"] = [call.external_id]
            refused = self._play_trust(role, "sts:AssumeRole", lambda st: _trusts(st, caller_role), ctx,
                                       (call.source_identity, {}, True, {}))
            if refused is not None:
                return refused, None
        elif not trusted or all(t.external_id is not None and t.external_id != form.get("ExternalId")
                                for t in trusted):
            # What AWS answers (and not a broken rule: the bridge sent what it was told to).
            return _error(403, "AccessDenied", f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on "
                                               f"resource: {role}"), None
        seen.problems += validate_assume_role(call, self.role_max_duration.get(role, 43200))
        if seen.problems:
            code = "ValidationError" if seen.problems[0].rule in ("1", "2", "3", "5") else "InvalidParameterValue"
            return _error(400, code, "; ".join(map(str, seen.problems))), None
        transitive = dict(caller.transitive)
        transitive.update({k: v for k, v in (call.tags or {}).items() if k in call.transitive_keys})
        return None, (call.source_identity or caller.source_identity, transitive, True,
                      {**caller.transitive, **(call.tags or {})})

    def _signed_by(self, req: Request, body: bytes) -> Session | None:
        """The session whose credentials signed ``req`` (SigV4, recomputed here), or None."""
        auth = req.headers.get("Authorization", "")
        m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/sts/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})", auth)
        session = self.sessions.get(m[1]) if m else None
        if m is None or session is None or req.headers.get("X-Amz-Security-Token") != session.token:
            return None
        signed = m[4].split(";")
        request = AWSRequest(method="POST", url=self.url + req.path, data=body,
                             headers={h: req.headers.get(h, "") for h in signed})
        request.context["timestamp"] = req.headers.get("X-Amz-Date", "")
        signer = SigV4Auth(ReadOnlyCredentials(m[1], session.secret, session.token), "sts", m[3])
        signer._modify_request_before_signing(request)
        want = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return session if hmac.compare_digest(want, m[5]) else None

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
        return problems + _policy_problems(form, "9")

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
        return problems + _policy_problems(form, "11")


def _role_of(assumed_role_arn: str) -> str:
    """``arn:aws:sts::<acct>:assumed-role/<role>/<session>`` → the role's ARN (what a trust policy names)."""
    m = re.fullmatch(r"arn:([\w-]+):sts::(\d{12}):assumed-role/(.+)/[^/]+", assumed_role_arn)
    return f"arn:{m[1]}:iam::{m[2]}:role/{m[3]}" if m else ""


def _policy_problems(form: dict[str, str], rule: str) -> list[Problem]:
    """Session policies on AssumeRoleWithWebIdentity/SAML: the same limits as on AssumeRole (§7.3)."""
    arns = tuple(v for k, v in sorted(form.items()) if re.fullmatch(r"PolicyArns\.member\.\d+\.arn", k))
    return [Problem(rule, "Policy", p) for p in policy_problems(form.get("Policy"), arns)]


def _members(form: dict[str, str], name: str) -> list[str]:
    """``Name.member.1``, ``Name.member.2``… of a query form, in order."""
    found = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in form.items() if re.fullmatch(rf"{name}\.member\.\d+", k))
    return [v for _, v in found]


def _assume_role_call(form: dict[str, str], caller: Session) -> AssumeRoleCall:
    keys = {int(m[1]): v for k, v in form.items() if (m := re.fullmatch(r"Tags\.member\.(\d+)\.Key", k))}
    tags = {v: form.get(f"Tags.member.{i}.Value", "") for i, v in sorted(keys.items())}
    arns = tuple(v for k, v in sorted(form.items()) if re.fullmatch(r"PolicyArns\.member\.\d+\.arn", k))
    return AssumeRoleCall(
        role_session_name=form.get("RoleSessionName", ""), duration=int(form.get("DurationSeconds", "3600")),
        external_id=form.get("ExternalId"), policy=form.get("Policy"), policy_arns=arns,
        source_identity=form.get("SourceIdentity"), tags=tags,
        transitive_keys=tuple(_members(form, "TransitiveTagKeys")), chained=True,
        caller_source_identity=caller.source_identity, inherited_transitive=tuple(caller.transitive))


# (source identity, transitive tags, chained, every session tag) of a session about to be issued
Carried = tuple[str | None, dict[str, str], bool, dict[str, str]]


def _jwt_tags(token: str) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(claims, session tags, transitive keys) of a web-identity token."""
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    tags = claims.get(TAGS_CLAIM) or {}
    return (claims, {k: v[0] for k, v in (tags.get("principal_tags") or {}).items()},
            list(tags.get("transitive_tag_keys") or []))


def _jwt_carries(token: str) -> tuple[str | None, dict[str, str]]:
    """(source identity, transitive tags) of a web-identity session, from its token's claims."""
    claims, principal, keys = _jwt_tags(token)
    lowered = {k.lower() for k in keys}
    return claims.get(SOURCE_IDENTITY_CLAIM), {k: v for k, v in principal.items() if k.lower() in lowered}


def _saml_attrs(b64: str) -> tuple[etree._Element, dict[str, list[str]], dict[str, str]]:
    """(the Response, its attributes, its session tags)."""
    root = etree.fromstring(base64.b64decode(b64), etree.XMLParser(resolve_entities=False, no_network=True))
    ns = "{urn:oasis:names:tc:SAML:2.0:assertion}"
    attrs = {a.get("Name", ""): [v.text or "" for v in a.iter(f"{ns}AttributeValue")]
             for a in root.iter(f"{ns}Attribute")}
    tags = {k.removeprefix(AWS_ATTR + "PrincipalTag:"): v[0] for k, v in attrs.items()
            if k.startswith(AWS_ATTR + "PrincipalTag:") and v}
    return root, attrs, tags


def _saml_carries(b64: str) -> tuple[str | None, dict[str, str]]:
    """(source identity, transitive tags) of a SAML session, from its assertion's attributes."""
    _, attrs, tags = _saml_attrs(b64)
    keys = {k.lower() for k in attrs.get(AWS_ATTR + "TransitiveTagKeys", [])}
    source = attrs.get(AWS_ATTR + "SourceIdentity")
    return (source[0] if source else None), {k: v for k, v in tags.items() if k.lower() in keys}


def _tag_context(tags: Mapping[str, str], transitive: tuple[str, ...] | list[str],
                 source_identity: str | None) -> dict[str, Value]:
    """The condition keys AWS sets from a call's tags and source identity (docs/aws-rules.md §2.8)."""
    ctx: dict[str, Value] = {f"aws:requesttag/{k.lower()}": [v] for k, v in tags.items()}
    if tags:
        ctx["aws:tagkeys"] = list(tags)
    if transitive:
        ctx["sts:transitivetagkeys"] = list(transitive)
    if source_identity:
        ctx["sts:sourceidentity"] = [source_identity]
    return ctx


def _web_identity_context(token: str, role_arn: str) -> tuple[Callable[[Mapping[str, Any]], bool], dict[str, Value]]:
    """(who the call is, its request context): the IAM OIDC provider of the token's issuer in the role's account."""
    claims, tags, keys = _jwt_tags(token)
    host = str(claims.get("iss", "")).split("://", 1)[-1].rstrip("/")
    provider = f"arn:{role_arn.split(':')[1]}:iam::{role_arn.split(':')[4]}:oidc-provider/{host}"
    ctx: dict[str, Value] = {f"{host}:aud": [str(claims.get("aud"))], f"{host}:sub": [str(claims.get("sub"))],
                             **_tag_context(tags, keys, claims.get(SOURCE_IDENTITY_CLAIM))}
    return (lambda st: _principal_matches(st, [provider])), {k.lower(): v for k, v in ctx.items()}


def _saml_context(b64: str, principal_arn: str) -> tuple[Callable[[Mapping[str, Any]], bool], dict[str, Value]]:
    """(who the call is, its request context): the IAM SAML provider; ``SAML:aud`` is the Recipient."""
    root, attrs, tags = _saml_attrs(b64)
    ns = "{urn:oasis:names:tc:SAML:2.0:assertion}"
    scd = root.find(f".//{ns}SubjectConfirmationData")
    name_id = root.find(f".//{ns}NameID")
    source = attrs.get(AWS_ATTR + "SourceIdentity")
    ctx: dict[str, Value] = {"saml:aud": [scd.get("Recipient", "") if scd is not None else ""],
                             "saml:sub": [name_id.text or "" if name_id is not None else ""],
                             "saml:sub_type": [str(name_id.get("Format", "")).rsplit(":", 1)[-1]
                                               if name_id is not None else ""],
                             **_tag_context(tags, attrs.get(AWS_ATTR + "TransitiveTagKeys", []),
                                            source[0] if source else None)}
    return (lambda st: _principal_matches(st, [principal_arn])), ctx


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
