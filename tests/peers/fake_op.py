"""A scriptable OpenID Provider for the bad-token cases a real OP will not produce.

It serves discovery and JWKS, answers /authorize by redirecting straight back with a code,
and answers /token with an ID token built from the test's ``tamper`` instructions
(wrong signer, audience, issuer, expiry, nonce, unknown kid). Keys are generated in the
test run. The happy path uses the real npm oidc-provider peer instead.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class FakeOp:
    client_id: str = "bridge"
    client_secret: str = "fake-secret"
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    published: list[RSAKey] = field(default_factory=list)
    issuer: str = ""
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tamper: dict[str, Any] = field(default_factory=dict)
    token_error: str | None = None
    token_status: int = 400  # HTTP status of a token_error answer
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> the sign-in's nonce
    claims: dict[str, Any] = field(default_factory=lambda: {
        "sub": "dave", "email": "dave@example.com", "email_verified": True, "name": "Dave", "groups": ["aws-admins"],
        "amr": ["pwd"]})
    jwks_fetches: int = 0

    def __post_init__(self) -> None:
        self.published = [self.key]

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        t = self.tamper
        claims = {"iss": t.get("iss", self.issuer), "aud": t.get("aud", self.client_id),
                  "iat": t.get("iat", now), "exp": t.get("exp", now + 300), "nonce": t.get("nonce", nonce),
                  **self.claims}
        claims = {k: v for k, v in claims.items() if v is not None}  # tamper {"nonce": None}: no nonce
        signer = t.get("signer", self.key)
        return jwt.encode({"alg": "RS256", "kid": signer.kid}, claims, signer)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        req = Request(environ)
        if req.path == "/.well-known/openid-configuration":
            resp = _json({"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                          "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                          "id_token_signing_alg_values_supported": ["RS256"]})
        elif req.path == "/jwks":
            self.jwks_fetches += 1
            resp = _json(KeySet(self.published).as_dict(private=False))  # type: ignore[arg-type]
        elif req.path == "/authorize":
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"nonce": req.args.get("nonce", ""), "challenge": req.args.get("code_challenge")}
            q = urlencode({"code": code, "state": req.args.get("state", "")})
            resp = Response(status=302, headers={"Location": f"{req.args['redirect_uri']}?{q}"})
        elif req.path == "/token" and req.form.get("grant_type") == "refresh_token":
            # Non-rotating refresh tokens; tamper["no_id_token"]: answer without an ID token.
            nonce = self.refresh_tokens.get(req.form.get("refresh_token", ""))
            if self.token_error or nonce is None:
                resp = _json({"error": self.token_error or "invalid_grant"}, self.token_status)
            else:
                doc = {"access_token": "fake-at", "token_type": "Bearer", "expires_in": 300}
                if not self.tamper.get("no_id_token"):
                    doc["id_token"] = self.id_token(nonce)
                resp = _json(doc)
        elif req.path == "/token":
            rec = self.codes.pop(req.form.get("code", ""), None)
            if self.token_error or rec is None:
                resp = _json({"error": self.token_error or "invalid_grant"}, 400)
            elif not req.form.get("code_verifier") or not rec["challenge"]:
                resp = _json({"error": "invalid_request", "error_description": "PKCE required"}, 400)
            else:
                rt = secrets.token_urlsafe(16)
                self.refresh_tokens[rt] = rec["nonce"]
                resp = _json({"access_token": "fake-at", "token_type": "Bearer", "expires_in": 300,
                              "id_token": self.id_token(rec["nonce"]), "refresh_token": rt})
        else:
            resp = Response("not found", status=404)
        return resp(environ, start_response)


def _json(doc: Any, status: int = 200) -> Response:
    import json

    return Response(json.dumps(doc), status=status, content_type="application/json")


def serve(op: FakeOp) -> Callable[[], None]:
    srv = make_server("127.0.0.1", 0, op, threaded=True)
    op.issuer = f"http://127.0.0.1:{srv.server_port}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.shutdown
