"""Drivers for the login flows, shared by the integration tests."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urljoin

import boto3
import requests


class TestClock:
    """The wall clock plus an offset the test moves: time runs as usual, and a test jumps it instead of
    sleeping. Give it to the part under test (``svc.device.clock = clock``, ``svc.store.clock``,
    ``svc.keys.clock``) of a bridge served in this process."""

    __test__ = False  # not a test class, despite the name

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def to_window_start(self, window: int = 60, into: float = 1.0) -> None:
        """Move back to ``into`` seconds after the start of the current fixed window (rate limits count in
        one-minute windows), so a counting test never straddles two windows however long it takes."""
        self.offset -= self() % window - into


def redis_keys_holding(store: Any, secret: str) -> list[str]:
    """The keys under the store's prefix whose value holds ``secret`` in clear: what a reader of
    Redis (a dump, a replica, a backup) would find. Strings, lists, sets and streams are read."""
    r, found, needle = store.r, [], secret.encode()
    for key in r.scan_iter(match=f"{store.prefix}*", count=1000):
        kind = r.type(key).decode()
        if kind == "string":
            values = [r.get(key) or b""]
        elif kind == "list":
            values = r.lrange(key, 0, -1)
        elif kind == "set":
            values = list(r.smembers(key))
        elif kind == "stream":
            values = [v for _, fields in r.xrange(key) for v in fields.values()]
        else:
            values = [repr(r.dump(key)).encode()]
        if any(needle in v for v in values):
            found.append(key.decode())
    return found


def oidc_login(base: str, connector: str, username: str, password: str,
               session: requests.Session | None = None, return_to: str | None = None) -> requests.Response:
    """Full browser-like login through the real OP's form; returns the final response (the portal)."""
    s = session or requests.Session()
    params = {"return_to": return_to} if return_to else None
    r = s.get(f"{base}/login/{connector}", params=params, timeout=10)
    assert r.status_code == 200 and 'id="username"' in r.text, r.text[:500]
    action = re.search(r'action="([^"]+)"', r.text)
    assert action
    return s.post(urljoin(r.url, action[1]), data={"username": username, "password": password}, timeout=20)


def dev_login(base: str, user: str, session: requests.Session | None = None) -> requests.Session:
    s = session or requests.Session()
    r = s.get(f"{base}/login/dev", allow_redirects=False, timeout=10)
    state = re.search(r"state=([\w-]+)", r.headers["location"])
    assert state
    r = s.post(f"{base}/callback/dev", data={"state": state[1], "user": user}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text[:300]
    return s


def portal_json(s: requests.Session, base: str) -> dict[str, Any]:
    r = s.get(f"{base}/portal", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text[:300]
    doc: dict[str, Any] = r.json()
    return doc


def grant_id(portal: dict[str, Any], role_suffix: str) -> str:
    return next(g["id"] for g in portal["grants"] if g["role_arn"].endswith(role_suffix))


def caller_arn(sts_url: str, creds: dict[str, str]) -> str:
    client = boto3.client("sts", endpoint_url=sts_url, region_name="us-east-1",
                          aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                          aws_session_token=creds["SessionToken"])
    return str(client.get_caller_identity()["Arn"])


def cli_token(base: str, s: requests.Session) -> str:
    """A CLI token by the device flow, approved (with the explicit confirmation) in the signed-in ``s``."""
    d = requests.post(f"{base}/oauth/device_authorization", data={"client_id": "bridge-cli"}, timeout=10).json()
    page = s.get(f"{base}/device", params={"user_code": d["user_code"]}, timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    form = {"csrf_token": csrf[1], "user_code": d["user_code"], "decision": "approve", "confirm": "yes"}
    assert "Approved" in s.post(f"{base}/device", data=form, timeout=10).text
    r = requests.post(f"{base}/oauth/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                                   "client_id": "bridge-cli", "device_code": d["device_code"]},
                      timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records every POST exactly as it arrived (path, headers, the
    body's bytes) and answers ``status`` — with ``redirect_to`` a 302 to that URL instead (a receiver
    that sends the bridge on to another host)."""

    __test__ = False

    def __init__(self, status: int = 200, redirect_to: str | None = None, tls: Any = None) -> None:
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.got: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.got.append((self.path, dict(self.headers), body))
                if redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                else:
                    self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _record  # noqa: N815

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # tests/redis_topologies.py make_ca: a certificate for 127.0.0.1 and localhost
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.url = f"{'https' if tls is not None else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def bodies(self, path: str) -> list[bytes]:
        return [b for p, _, b in self.got if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
