"""A stand-in for AWS console sign-in (federation endpoint and SAML POST), checking what AWS checks.

    python tests/peers/federation_stub.py --port 5056 --sts http://127.0.0.1:5055 [--saml-metadata URL]

moto does not emulate console sign-in (docs/aws-rules.md §5), so tests and the demo
point the bridge here:
- ``/federation?Action=getSigninToken`` (GET or POST): the ``Session`` JSON must carry
  sessionId/sessionKey/sessionToken, the credentials must work (GetCallerIdentity on the local
  STS), ``SessionDuration`` must be an integer 900..43200 when present, and absent for role-chained
  credentials (AWS refuses it then; ``chained`` tells them apart) → ``{"SigninToken": …}``.
- ``/federation?Action=login``: a known token no older than 15 minutes (single use here), an
  ``Issuer``, and a ``Destination`` on a console host → a page saying who you are signed in as.
- ``POST /saml``: the sign-in SAML endpoint: validates the SAMLResponse with the strict validator
  against the registered provider metadata, redeems it with AssumeRoleWithSAML on the local STS,
  and shows the same page (``RelayState`` = destination).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.aws.validate_saml import IdpMetadata, validate_saml_response  # noqa: E402
from bridge.domain.partitions import PARTITIONS  # noqa: E402


def is_console_host(host: str) -> bool:
    """A console host of any partition (regional hosts in ``aws``)."""
    return any(p.is_console_host(host) for p in PARTITIONS.values())


@dataclass
class FederationStub:
    sts_url: str
    saml_metadata: Callable[[], bytes] | None = None
    chained: Callable[[str], bool] | None = None  # access key id → from sts:AssumeRole by role chaining?
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    signed_in: list[dict[str, Any]] = field(default_factory=list)
    signed_out: int = 0
    url: str = ""

    def _sts(self, creds: dict[str, str] | None = None) -> Any:
        kw = {"aws_access_key_id": "stub", "aws_secret_access_key": "stub"} if creds is None else {
            "aws_access_key_id": creds["sessionId"], "aws_secret_access_key": creds["sessionKey"],
            "aws_session_token": creds["sessionToken"]}
        return boto3.client("sts", endpoint_url=self.sts_url, region_name="us-east-1", **kw)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        req = Request(environ)
        if req.path == "/federation":
            action = req.values.get("Action")
            resp = self.get_token(req) if action == "getSigninToken" else self.login(req) if action == "login" \
                else Response("unknown Action", status=400)
        elif req.path == "/oauth" and req.values.get("Action") == "logout":
            self.signed_out += 1
            resp = Response("<!doctype html><title>AWS (stand-in)</title><h1 id='signed-out'>Signed out of the AWS "
                            "console</h1>", content_type="text/html")
        elif req.path == "/saml" and req.method == "POST":
            resp = self.saml(req)
        else:
            resp = Response("not found", status=404)
        return resp(environ, start_response)

    def get_token(self, req: Request) -> Response:
        try:
            session = json.loads(req.values.get("Session", ""))
        except ValueError:
            return Response("Invalid credentials parameter", status=400)
        if not isinstance(session, dict) or set(session) != {"sessionId", "sessionKey", "sessionToken"}:
            return Response("Invalid credentials parameter: need sessionId, sessionKey, sessionToken", status=400)
        duration = req.values.get("SessionDuration")
        if duration is not None and (not re.fullmatch(r"[0-9]+", duration) or not 900 <= int(duration) <= 43200):
            return Response("SessionDuration must be an integer 900..43200", status=400)
        if duration is not None and self.chained is not None and self.chained(str(session["sessionId"])):
            return Response("SessionDuration is not supported with role-chained credentials", status=400)
        try:
            arn = self._sts(session).get_caller_identity()["Arn"]
        except (ClientError, BotoCoreError):
            return Response("Invalid credentials", status=400)
        if ":assumed-role/" not in arn:
            # The bridge only ever has AssumeRole* credentials. (AWS also takes GetFederationToken ones,
            # without SessionDuration; moto cannot mint those with a distinct identity, so not modelled.)
            return Response("credentials are not from AssumeRole*", status=400)
        token = secrets.token_urlsafe(32)
        self.tokens[token] = {"arn": arn, "created": time.time(), "duration": duration}
        return Response(json.dumps({"SigninToken": token}), content_type="application/json")

    def login(self, req: Request) -> Response:
        token = self.tokens.pop(req.values.get("SigninToken", ""), None)
        if token is None or time.time() - token["created"] > 900:
            return Response("Sign-in token missing, used or older than 15 minutes", status=400)
        if not req.values.get("Issuer"):
            return Response("Issuer is required", status=400)
        return self._signed_in(token["arn"], req.values.get("Destination", ""), token["duration"], "federation")

    def saml(self, req: Request) -> Response:
        if self.saml_metadata is None:
            return Response("no SAML provider registered", status=400)
        b64 = req.form.get("SAMLResponse", "")
        try:
            metadata = IdpMetadata.from_xml(self.saml_metadata())
        except Exception as e:  # noqa: BLE001 - no provider registered (yet): what AWS would answer
            return Response(f"no SAML provider metadata: {type(e).__name__}", status=400)
        problems = validate_saml_response(b64, metadata=metadata, now=int(time.time()))
        if problems:
            return Response("Your request included an invalid SAML response:\n" + "\n".join(map(str, problems)),
                            status=400)
        xml = base64.b64decode(b64).decode()
        pair = re.search(r'Attributes/Role"[^>]*>\s*<saml:AttributeValue>([^<]+)<', xml)
        assert pair
        role, provider = pair[1].split(",")
        try:
            r = self._sts().assume_role_with_saml(RoleArn=role, PrincipalArn=provider, SAMLAssertion=b64)
        except (ClientError, BotoCoreError) as e:
            return Response(f"AssumeRoleWithSAML failed: {e}", status=400)
        return self._signed_in(r["AssumedRoleUser"]["Arn"], req.form.get("RelayState", ""), None, "saml")

    def _signed_in(self, arn: str, destination: str, duration: Any, via: str) -> Response:
        host = urlsplit(destination).hostname or ""
        if not destination.startswith("https://") or not is_console_host(host):
            return Response(f"Destination {destination!r} is not an AWS console URL", status=400)
        self.signed_in.append({"arn": arn, "destination": destination, "duration": duration, "via": via})
        role, session = arn.split("assumed-role/")[1].split("/", 1)
        page = (f"<!doctype html><title>AWS console (stand-in)</title><h1>Signed in to the AWS console"
                f"</h1><p>Role <b id='role'>{html.escape(role)}</b>, session <b id='session'>"
                f"{html.escape(session)}</b></p><p id='arn'>{html.escape(arn)}</p><p>You would now see "
                f"<code id='destination'>{html.escape(destination)}</code> (via {via}).</p>")
        return Response(page, content_type="text/html")


def serve(stub: FederationStub, port: int = 0) -> Callable[[], None]:
    srv = make_server("127.0.0.1", port, stub, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    stub.url = f"http://127.0.0.1:{srv.server_port}"
    return srv.shutdown


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sts", required=True)
    ap.add_argument("--saml-metadata", default=None, help="URL of the bridge's /idp/metadata.xml")
    a = ap.parse_args()
    fetch = None
    if a.saml_metadata:
        import urllib.request

        def fetch() -> bytes:
            with urllib.request.urlopen(a.saml_metadata, timeout=5) as r:  # noqa: S310 - loopback demo URL
                return bytes(r.read())
    make_server("127.0.0.1", a.port, FederationStub(a.sts, fetch), threaded=True).serve_forever()
