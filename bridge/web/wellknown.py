"""Our OIDC issuer documents (what the IAM OIDC provider reads) and health endpoints."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, make_response
from flask.typing import ResponseReturnValue

from bridge.web.common import RETRY_AFTER, services

bp = Blueprint("wellknown", __name__)


def discovery_document(issuer: str) -> dict[str, object]:
    """Minimal discovery for a token *issuer* (no authorization endpoint is used by STS)."""
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "claims_supported": ["iss", "sub", "aud", "iat", "exp", "jti", "https://aws.amazon.com/tags",
                             "https://aws.amazon.com/source_identity"],
    }


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> ResponseReturnValue:
    resp = jsonify(discovery_document(services().settings.issuer_url))
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/.well-known/jwks.json")
def jwks() -> ResponseReturnValue:
    resp = jsonify(services().keyring.jwks())
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/idp/metadata.xml")
def idp_metadata() -> ResponseReturnValue:
    """Our SAML IdP metadata, to upload with `aws iam create-saml-provider`."""
    resp = make_response(services().idp_metadata())
    resp.headers["Content-Type"] = "application/samlmetadata+xml"
    resp.headers["Content-Disposition"] = 'inline; filename="bridge-idp-metadata.xml"'
    return resp


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: Redis answers (a load balancer stops sending users here until it does).

    ``rules`` tells what this worker serves and whether its last reload was refused. A refused
    reload keeps the old rules serving, so it never makes the instance unready: taking every pod out
    of rotation over a bad rules file would turn a kept-safe state into an outage."""
    svc = services()
    ok = svc.store.ping()
    resp = jsonify(status="ok" if ok else "unavailable", redis=ok, rules=svc.rules.status())
    resp.status_code = 200 if ok else 503
    if not ok:
        resp.headers["Retry-After"] = str(RETRY_AFTER)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus metrics, summed over every gunicorn worker of this instance."""
    svc = services()
    if not svc.settings.metrics.enabled:
        abort(404)
    body, content_type = svc.metrics.render()
    resp = make_response(body)
    resp.headers["Content-Type"] = content_type
    resp.headers["Cache-Control"] = "no-store"
    return resp
