"""``/scim/v2``: the SCIM 2.0 service provider (bridge/scim), registered only when ``scim.token`` is set.

Every request is counted against ``rate_limits.scim_per_minute`` per client address, then must carry
``Authorization: Bearer <scim.token>`` (compared in constant time). Every answer is ``application/scim+json``;
every refusal is a SCIM error (RFC 7644 §3.12), never an HTML page or a stack trace."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from bridge.domain.errors import BridgeError
from bridge.scim import discovery
from bridge.scim.errors import ScimError
from bridge.scim.service import ScimService
from bridge.telemetry.logs import event
from bridge.web.common import RETRY_AFTER, audit_context, client_address, rate_limit, services

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
SCIM_JSON = "application/scim+json"
_KINDS = {"Users": "User", "Groups": "Group"}
_WRITES = ("POST", "PUT", "PATCH", "DELETE")
MAX_DEPTH = 16  # SCIM resources nest three levels; anything deeper is not one


def _service() -> ScimService:
    svc = services().scim
    assert svc is not None  # the blueprint is registered only with it
    return svc


def _answer(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(doc), status, headers=headers, mimetype=SCIM_JSON)


def _error(err: ScimError, headers: dict[str, str] | None = None) -> Response:
    event("scim_refused", logging.WARNING if err.status < 500 else logging.ERROR, status=err.status,
          scim_type=err.scim_type, method=request.method, path=request.path, detail=err.detail[:200])
    return _answer(err.to_json(), err.status, headers)


@bp.errorhandler(ScimError)
def _scim_error(err: ScimError) -> ResponseReturnValue:
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if err.status == 401 else {}
    if err.allowed:
        headers["Allow"] = err.allowed
    if err.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER)
    return _error(err, headers)


@bp.errorhandler(BridgeError)
def _bridge_error(err: BridgeError) -> ResponseReturnValue:
    """Rate limit (429), Redis or the audit sink away (503): as SCIM errors."""
    headers = {"Retry-After": str(getattr(err, "retry_after", RETRY_AFTER))} if err.status in (429, 503) else {}
    return _error(ScimError(err.status, err.message, "tooMany" if err.status == 429 else None), headers)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> ResponseReturnValue:
    status = err.code or 400
    return _error(ScimError(status, err.description or err.name or "bad request",
                            "tooLarge" if status == 413 else None))


@bp.before_request
def _authenticate() -> None:
    rate_limit("scim", client_address())  # before the token is compared: guessing is limited too
    settings = services().settings.scim
    assert settings.token is not None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             settings.token.get_secret_value().encode()):
        if request.method in _WRITES:
            services().auditor.record("scim", audit_context(), outcome="denied", error="unauthorized",
                                      action=request.method, path=request.path[:200])
        raise ScimError(401, "a valid SCIM bearer token is required (Authorization: Bearer <token>)")


def _body() -> Any:
    if request.mimetype not in (SCIM_JSON, "application/json", ""):
        raise ScimError(415, f"send {SCIM_JSON}, not {request.mimetype[:60]}", "invalidSyntax")
    try:
        body = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, RecursionError):
        raise ScimError(400, "the body is not JSON", "invalidSyntax") from None
    if _depth(body) > MAX_DEPTH:
        raise ScimError(400, f"the body nests deeper than {MAX_DEPTH} levels", "invalidSyntax")
    return body


def _depth(node: Any, level: int = 0) -> int:
    """How deep ``node`` nests (counting stops past ``MAX_DEPTH``)."""
    if level > MAX_DEPTH or not isinstance(node, dict | list):
        return level
    children = node.values() if isinstance(node, dict) else node
    return max((_depth(c, level + 1) for c in children), default=level + 1)


def _int(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ScimError(400, f"{name} must be a number", "invalidValue") from None


def _listed(name: str) -> list[str]:
    return [a.strip() for a in request.args.get(name, "").split(",") if a.strip()]


def _kind(collection: str) -> str:
    if collection not in _KINDS:
        raise ScimError(404, f"no SCIM endpoint /{collection[:40]}")
    return _KINDS[collection]


def _created(doc: dict[str, Any]) -> Response:
    return _answer(doc, 201, {"Location": doc["meta"]["location"], "ETag": doc["meta"]["version"]})


@bp.get("/<any(Users, Groups):collection>")
def search(collection: str) -> ResponseReturnValue:
    return _answer(_service().search(_kind(collection), request.args.get("filter"), _int("startIndex", 1),
                                     _int("count", 100), _listed("attributes"), _listed("excludedAttributes")))


@bp.post("/<any(Users, Groups):collection>")
def create(collection: str) -> ResponseReturnValue:
    s, body, ctx = _service(), _body(), audit_context()
    return _created(s.create_user(body, ctx) if collection == "Users" else s.create_group(body, ctx))


@bp.get("/<any(Users, Groups):collection>/<rid>")
def get(collection: str, rid: str) -> ResponseReturnValue:
    return _answer(_service().get(_kind(collection), rid, _listed("attributes"), _listed("excludedAttributes")))


@bp.put("/<any(Users, Groups):collection>/<rid>")
def put(collection: str, rid: str) -> ResponseReturnValue:
    s, body, ctx = _service(), _body(), audit_context()
    return _answer(s.replace_user(rid, body, ctx) if collection == "Users" else s.replace_group(rid, body, ctx))


@bp.patch("/<any(Users, Groups):collection>/<rid>")
def patch(collection: str, rid: str) -> ResponseReturnValue:
    s, body, ctx = _service(), _body(), audit_context()
    return _answer(s.patch_user(rid, body, ctx) if collection == "Users" else s.patch_group(rid, body, ctx))


@bp.delete("/<any(Users, Groups):collection>/<rid>")
def delete(collection: str, rid: str) -> ResponseReturnValue:
    s, ctx = _service(), audit_context()
    s.delete_user(rid, ctx) if collection == "Users" else s.delete_group(rid, ctx)
    return Response(status=204)


@bp.get("/ServiceProviderConfig")
def service_provider_config() -> ResponseReturnValue:
    return _answer(discovery.service_provider_config(_service().base))


@bp.get("/ResourceTypes")
def resource_types() -> ResponseReturnValue:
    return _answer(discovery.listed(discovery.resource_types(_service().base)))


@bp.get("/Schemas")
def schemas() -> ResponseReturnValue:
    return _answer(discovery.listed(discovery.schemas(_service().base)))


@bp.get("/<any(ResourceTypes, Schemas):collection>/<path:rid>")
def discovery_item(collection: str, rid: str) -> ResponseReturnValue:
    base = _service().base
    items = discovery.resource_types(base) if collection == "ResourceTypes" else discovery.schemas(base)
    found = [i for i in items if i["id"] == rid]
    if not found:
        raise ScimError(404, f"no {collection} {rid[:80]!r}")
    return _answer(found[0])


# What each endpoint answers to, for the 405s (Allow) of any other method.
_ALLOWED = {"Users": "GET, POST", "Groups": "GET, POST", "ServiceProviderConfig": "GET", "ResourceTypes": "GET",
            "Schemas": "GET"}


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str) -> ResponseReturnValue:
    head, _, tail = rest.partition("/")
    allowed = _ALLOWED.get(head) if not tail else "GET" if head in ("ResourceTypes", "Schemas") else (
        "GET, PUT, PATCH, DELETE" if head in _KINDS else None)
    if allowed is not None and request.method not in allowed.split(", "):
        raise ScimError(405, f"{request.method} is not allowed on /scim/v2/{head}{'/…' if tail else ''} "
                             f"(allowed: {allowed})", allowed=allowed)
    raise ScimError(404, f"no SCIM endpoint {request.method} /scim/v2/{rest[:60]} (this bridge serves Users, Groups, "
                         "ServiceProviderConfig, ResourceTypes, Schemas)")
