"""Our OIDC issuer documents (what the IAM OIDC provider reads) and health endpoints."""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, jsonify, make_response, request
from flask.typing import ResponseReturnValue

from bridge.web.common import METRICS_LISTENER, RETRY_AFTER, services, wants_json

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
    # No problem text here: it quotes rules (group names, regexes, ARNs) and /readyz is unauthenticated.
    rules = {k: v for k, v in svc.rules.status().items() if k != "problems"}
    resp = jsonify(status="ok" if ok else "unavailable", redis=ok, rules=rules)
    resp.status_code = 200 if ok else 503
    if not ok:
        resp.headers["Retry-After"] = str(RETRY_AFTER)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _scrape_allowed(token: str) -> bool:
    """The request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    sent = request.headers.get("Authorization", "")
    scheme, _, value = sent.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _unauthorized() -> ResponseReturnValue:
    message = "This endpoint needs a bearer token (metrics.bearer_token_file)."
    resp = jsonify(error="unauthorized", message=message) if wants_json() else make_response(message + "\n")
    if not wants_json():
        resp.headers["Content-Type"] = "text/plain; charset=utf-8"
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus metrics, summed over every gunicorn worker of this instance."""
    svc = services()
    cfg = svc.settings.metrics
    if not cfg.enabled or (cfg.listen is not None and not request.environ.get(METRICS_LISTENER)):
        abort(404)  # with a metrics listener, the main one does not tell that /metrics exists
    if cfg.bearer_token is not None and not _scrape_allowed(cfg.bearer_token.get_secret_value()):
        return _unauthorized()
    body, content_type = svc.metrics.render()
    resp = make_response(body)
    resp.headers["Content-Type"] = content_type
    resp.headers["Cache-Control"] = "no-store"
    return resp
