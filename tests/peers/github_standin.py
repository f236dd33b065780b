"""A stand-in for GitHub's OAuth app endpoints and the REST API calls the ``github`` connector makes.

Its answers are built from GitHub's own OpenAPI description (npm ``@octokit/openapi``, in
tests/peers/node_modules): each body starts from the description's example for that operation, gets the
test's user, e-mails, orgs and teams put in, and is validated against the operation's response schema
before it is sent — a body GitHub would not send fails the request (HTTP 599) and lands in
``schema_errors``. Served like GitHub Enterprise Server: the web endpoints at the root, the API under
``/api/v3``.

- ``GET /login/oauth/authorize``: a consent page (the user's login, "Authorize" / "Cancel") — the test
  plays the signed-in GitHub user; ``POST`` redirects back with ``code`` and ``state`` (or
  ``error=access_denied``).
- ``POST /login/oauth/access_token``: checks client id + secret, code, redirect_uri and PKCE (S256);
  answers JSON, errors with HTTP 200 and ``error`` as GitHub does (``bad_verification_code``, ...).
- ``GET /api/v3/user``, ``/user/emails``, ``/user/orgs``, ``/user/teams``, ``/orgs/{org}/members/{username}``
  (204 / 404 / 302), paginated with ``per_page``/``page``; 401 with GitHub's body for an unknown or
  revoked token. ``fail_status`` makes every API call answer that status (``rate_limited``: 403 with
  ``x-ratelimit-remaining: 0``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

SPEC = Path(__file__).parent / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"


@cache
def spec() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SPEC.read_text())
    return doc


def deref(ref: str) -> Any:
    node: Any = spec()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    while isinstance(node, dict) and "$ref" in node:
        node = deref(node["$ref"])
    return node


def example(path: str, status: str = "200") -> Any:
    """A deep copy of the first example GitHub's description gives for ``GET path`` answering ``status``."""
    content = deref_node(spec()["paths"][path]["get"]["responses"][status])["content"]["application/json"]
    first = next(iter(content["examples"].values()))
    return copy.deepcopy(deref_node(first)["value"])


def deref_node(node: Any) -> Any:
    return deref(node["$ref"]) if isinstance(node, dict) and "$ref" in node else node


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` as JSON Schema's ``type: [..., "null"]`` (jsonschema knows no nullable)."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k not in ("nullable", "discriminator", "example")}
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _components() -> dict[str, Any]:
    converted: dict[str, Any] = _nullable(spec()["components"])
    return converted


def schema_errors_for(path: str, status: str, body: Any) -> list[str]:
    """Why ``body`` is not what GitHub's description says ``GET path`` answers with ``status`` ([] if it is)."""
    from jsonschema import Draft202012Validator

    response = deref_node(spec()["paths"][path]["get"]["responses"][status])
    schema = _nullable(response["content"]["application/json"]["schema"])
    validator = Draft202012Validator({**schema, "components": _components()})
    return [f"{path} {status}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(body)]


@dataclass
class GithubUser:
    login: str
    id: int
    name: str | None = None
    # (address, primary, verified)
    emails: list[tuple[str, bool, bool]] = field(default_factory=list)
    two_factor: bool = True


@dataclass
class GithubStandin:
    client_id: str = "gh-client"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    base: str = ""
    users: dict[str, GithubUser] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)  # org -> logins
    teams: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (org, team slug) -> logins
    granted_scope: str = "read:org,read:user,user:email"
    token_error: str | None = None
    fail_status: int | str | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> login
    schema_errors: list[str] = field(default_factory=list)
    api_calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what a test changes -----------------------------------------------------------------
    def add_user(self, login: str, *, name: str | None = None, email: str | None = None, verified: bool = True,
                 orgs: tuple[str, ...] = (), teams: tuple[str, ...] = ()) -> GithubUser:
        user = GithubUser(login=login, id=1000 + len(self.users), name=name,
                          emails=[(email, True, verified)] if email else [])
        self.users[login] = user
        for org in orgs:
            self.members.setdefault(org, set()).add(login)
        for t in teams:
            org, slug = t.split("/")
            self.teams.setdefault((org, slug), set()).add(login)
        return user

    def remove_from_team(self, login: str, team: str) -> None:
        org, slug = team.split("/")
        self.teams.get((org, slug), set()).discard(login)

    def revoke_tokens(self, login: str) -> None:
        with self.lock:
            for t in [t for t, who in self.tokens.items() if who == login]:
                del self.tokens[t]

    # -- WSGI ----------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        req = Request(environ)
        if req.path == "/login/oauth/authorize":
            resp = self._authorize(req)
        elif req.path == "/login/oauth/access_token" and req.method == "POST":
            resp = self._token(req)
        elif req.path.startswith("/api/v3/"):
            resp = self._api(req, req.path.removeprefix("/api/v3"))
        else:
            resp = Response("not found", status=404)
        return resp(environ, start_response)

    def _authorize(self, req: Request) -> Response:
        a = req.values
        if a.get("client_id") != self.client_id:
            return Response("<h1>404 unknown OAuth application</h1>", status=404, content_type="text/html")
        if req.method == "GET":
            hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                             for k, v in a.items(multi=False))
            page = (f"<!doctype html><title>Authorize application</title><h1>Authorize {html.escape(self.client_id)}"
                    f"</h1><p>Scopes: {html.escape(a.get('scope', ''))}</p><form method=post>{hidden}"
                    '<label>Signed in as <input id="login" name="login"></label>'
                    '<button name="decision" value="authorize">Authorize</button>'
                    '<button name="decision" value="cancel">Cancel</button></form>')
            return Response(page, content_type="text/html")
        redirect, state = a.get("redirect_uri", ""), a.get("state", "")
        if a.get("decision") != "authorize":
            q = {"error": "access_denied", "error_description": "The user has denied your application access.",
                 "state": state}
            return Response(status=302, headers={"Location": f"{redirect}?{urlencode(q)}"})
        if a.get("login") not in self.users:
            return Response("unknown user", status=400)
        code = secrets.token_hex(10)
        self.codes[code] = {"login": a["login"], "redirect_uri": redirect, "challenge": a.get("code_challenge"),
                            "method": a.get("code_challenge_method")}
        return Response(status=302, headers={"Location": f"{redirect}?{urlencode({'code': code, 'state': state})}"})

    def _token(self, req: Request) -> Response:
        f = req.form

        def error(code: str, desc: str) -> Response:
            return Response(json.dumps({"error": code, "error_description": desc}), content_type="application/json")

        if f.get("client_id") != self.client_id or f.get("client_secret") != self.client_secret:
            return error("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
        if self.token_error:
            return error(self.token_error, "scripted")
        grant = self.codes.pop(f.get("code", ""), None)
        if grant is None:
            return error("bad_verification_code", "The code passed is incorrect or expired.")
        if f.get("redirect_uri") != grant["redirect_uri"]:
            return error("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL.")
        verifier = f.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant["method"] != "S256" or digest != grant["challenge"]:
            return error("bad_verification_code", "The code_verifier does not match the code_challenge.")
        token = "gho_" + secrets.token_urlsafe(27)
        with self.lock:
            self.tokens[token] = grant["login"]
        body = {"access_token": token, "token_type": "bearer", "scope": self.granted_scope}
        return Response(json.dumps(body), content_type="application/json")

    def _api(self, req: Request, path: str) -> Response:
        self.api_calls.append(path)
        if self.fail_status is not None:
            if self.fail_status == "rate_limited":
                return self._send("/user", "403", {"message": "API rate limit exceeded", "documentation_url": ""},
                                  headers={"x-ratelimit-remaining": "0"})
            return Response("upstream trouble", status=int(self.fail_status))
        auth = req.headers.get("Authorization", "")
        login = self.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if login is None:
            return self._send("/user", "401", {"message": "Bad credentials", "status": "401",
                                               "documentation_url": ""})
        user = self.users[login]
        page, per_page = int(req.args.get("page", 1)), int(req.args.get("per_page", 30))

        def paged(items: list[Any]) -> list[Any]:
            return items[(page - 1) * per_page: page * per_page]

        if path == "/user":
            return self._send(path, "200", self._user(user))
        if path == "/user/emails":
            return self._send(path, "200", paged(self._emails(user)))
        if path == "/user/orgs":
            return self._send(path, "200", paged(self._orgs(login)))
        if path == "/user/teams":
            return self._send(path, "200", paged(self._teams(login)))
        m = re.fullmatch(r"/orgs/([^/]+)/members/([^/]+)", path)
        if m:
            org, who = m[1].lower(), m[2]
            if login not in self.members.get(org, set()):  # the asker is no member: GitHub redirects
                return Response(status=302, headers={"Location": f"{self.base}/api/v3/orgs/{org}/public_members/{who}"})
            return Response(status=204 if who in self.members.get(org, set()) else 404)
        return Response(json.dumps({"message": "Not Found"}), status=404, content_type="application/json")

    def _send(self, path: str, status: str, body: Any, *, headers: dict[str, str] | None = None) -> Response:
        errors = schema_errors_for(path, status, body)
        if errors:
            self.schema_errors.extend(errors)
            return Response("\n".join(errors), status=599)
        return Response(json.dumps(body), status=int(status), headers=headers,
                        content_type="application/json; charset=utf-8")

    # -- bodies, from the description's examples ---------------------------------------------------
    def _user(self, user: GithubUser) -> dict[str, Any]:
        body: dict[str, Any] = example("/user")
        primary = next((e for e, p, _ in user.emails if p), None)
        body.update(login=user.login, id=user.id, node_id=f"U_{user.id}", name=user.name, email=primary,
                    two_factor_authentication=user.two_factor, user_view_type="private",
                    url=f"{self.base}/api/v3/users/{user.login}", html_url=f"{self.base}/{user.login}")
        return body

    def _emails(self, user: GithubUser) -> list[dict[str, Any]]:
        template = example("/user/emails")[0]
        return [{**template, "email": e, "primary": p, "verified": v, "visibility": "private" if p else None}
                for e, p, v in user.emails]

    def _orgs(self, login: str) -> list[dict[str, Any]]:
        template = example("/user/orgs")[0]
        return [{**template, "login": org, "id": 5000 + i, "url": f"{self.base}/api/v3/orgs/{org}"}
                for i, (org, logins) in enumerate(sorted(self.members.items())) if login in logins]

    def _teams(self, login: str) -> list[dict[str, Any]]:
        template = example("/user/teams")[0]
        out = []
        for i, ((org, slug), logins) in enumerate(sorted(self.teams.items())):
            if login in logins:
                team = copy.deepcopy(template)
                # The description's own example predates two required fields: as GitHub sends them now.
                team.setdefault("type", "organization")
                team["organization"].setdefault("archived_at", None)
                team.update(id=7000 + i, slug=slug, name=slug.replace("-", " ").title(),
                            url=f"{self.base}/api/v3/teams/{7000 + i}")
                team["organization"].update(login=org, id=5000 + i, url=f"{self.base}/api/v3/orgs/{org}")
                out.append(team)
        return out


@contextmanager
def serve(standin: GithubStandin | None = None) -> Iterator[GithubStandin]:
    """The stand-in on 127.0.0.1 at a free port (``standin.base``), in a thread, for the ``with`` block."""
    s = standin or GithubStandin()
    srv = make_server("127.0.0.1", 0, s, threaded=True)
    s.base = f"http://127.0.0.1:{srv.server_port}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield s
    finally:
        srv.shutdown()
        srv.server_close()


def demo_standin(client_id: str, client_secret: str) -> GithubStandin:
    """The demo's GitHub (``DEMO_GITHUB=stand-in make demo``): octocat in org acme, team platform; outsider
    in another org only."""
    s = GithubStandin(client_id=client_id, client_secret=client_secret)
    s.add_user("octocat", name="The Octocat", email="octocat@example.com", orgs=("acme",), teams=("acme/platform",))
    s.add_user("outsider", name="Outsider", email="outsider@example.com", orgs=("other",))
    return s


if __name__ == "__main__":  # the demo runs it as a process
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ns = ap.parse_args()
    standin = demo_standin(ns.client_id, ns.client_secret)
    standin.base = f"http://127.0.0.1:{ns.port}"
    spec()  # read GitHub's description before answering the first sign-in
    make_server("127.0.0.1", ns.port, standin, threaded=True).serve_forever()
