"""The token exchange from a real browser page of another origin (Chromium): an app served from 127.0.0.2 signs
its user in at npm oidc-provider as a public client (code + PKCE, in the page), exchanges the ID token at the
bridge across origins (CORS), and the AWS SDK for JavaScript v3 (bundled for the browser by esbuild) calls the
local STS's GetCallerIdentity with the result — by running the browser snippet of docs/apps-and-workloads.md,
read from that page, with its DPoP proof (RFC 9449: a non-extractable WebCrypto P-256 key signs each exchange;
the app's ``dpop: required``). The key is kept in IndexedDB: after a reload the page's exchange is proven by the
same key. With ``dpop_nonce: true`` the snippet's first exchange is asked for the bridge's nonce
(``use_dpop_nonce``), which it reads from the ``DPoP-Nonce`` header (CORS exposes it) and sends again with. A page
of an origin the app does not list gets no CORS headers and no credentials."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from bridge.core.dpop import thumbprint
from tests.conftest import ACCOUNT, OIDC_CONNECTOR, PEERS, ROOT, oidc_provider
from tests.e2e.conftest import SHOTS
from tests.integration.test_exchange import APP_CLIENT, EXCHANGE, ID_TOKEN, POLICY

pytestmark = pytest.mark.integration
DOC = ROOT / "docs" / "apps-and-workloads.md"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/PhotoUploads"


def doc_snippet() -> str:
    """The browser snippet exactly as the docs show it (the block after ``<!-- browser-snippet -->``)."""
    m = re.search(r"<!-- browser-snippet -->\n```js\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S)
    assert m, "no browser snippet in docs/apps-and-workloads.md"
    assert len(m[1].splitlines()) <= 52, "the snippet is meant to be short (about 20 lines, and DPoP's 30: its " \
                                         "key kept in IndexedDB, its proof, the nonce retry)"
    return m[1]


def localised(snippet: str, bridge: str, sts: str) -> str:
    """The snippet pointed at this test's bridge and STS: the two lines a reader changes, and nothing else."""
    out = snippet.replace('const BRIDGE = "https://bridge.example.com";', f'const BRIDGE = "{bridge}";')
    out = out.replace('region: "us-east-1",', f'region: "us-east-1", endpoint: "{sts}",')
    assert out.count(bridge) == 1 and out.count(sts) == 1, "the snippet's BRIDGE or region line changed"
    return out


class Pages:
    """A static site on one loopback address (another origin than the bridge's 127.0.0.1)."""

    def __init__(self, host: str) -> None:
        self.files: dict[str, tuple[str, bytes]] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                kind, body = files.get(self.path.split("?", 1)[0], ("text/plain", b"not found"))
                self.send_response(200 if body != b"not found" else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.origin = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class CorsSts:
    """moto's STS as a browser reaches AWS's: the preflight answered (moto routes a bare OPTIONS to S3), the
    signed POST passed through unchanged, its answer readable by any origin (AWS's STS allows CORS)."""

    def __init__(self, upstream: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def _cors(self) -> None:
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Headers", "*")
                self.send_header("Access-Control-Allow-Methods", "POST")

            def do_OPTIONS(self) -> None:  # noqa: N802
                self.send_response(204)
                self._cors()
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "origin", "referer")}
                r = requests.post(upstream, data=body, headers=headers, timeout=30)
                self.send_response(r.status_code)
                self._cors()
                self.send_header("Content-Type", r.headers.get("Content-Type", "text/xml"))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def browser_sts(moto_url: str) -> Iterator[str]:
    sts = CorsSts(moto_url)
    yield sts.url
    sts.close()


@pytest.fixture(scope="module")
def sdk_bundle() -> bytes:
    """@aws-sdk/client-sts bundled for the browser (tests/peers: esbuild, a devDependency)."""
    esbuild = PEERS / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists() or shutil.which("node") is None:
        pytest.fail("esbuild is not installed: run `make test` (npm ci in tests/peers)")
    out = subprocess.run([str(esbuild), "--bundle", "--format=esm", "--platform=browser", "--log-level=warning"],
                         input=b'export { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";',
                         cwd=PEERS, capture_output=True, timeout=120, check=True)
    return out.stdout


@pytest.fixture(scope="module")
def app_site() -> Iterator[Pages]:
    site = Pages("127.0.0.2")
    yield site
    site.close()


@pytest.fixture(scope="module")
def other_site() -> Iterator[Pages]:
    site = Pages("127.0.0.3")
    yield site
    site.close()


@pytest.fixture(scope="module")
def app_idp(bridge_port: int, app_site: Pages) -> Iterator[str]:
    with oidc_provider({"REDIRECT_URIS": f"http://127.0.0.1:{bridge_port}/callback/{OIDC_CONNECTOR}",
                        "APP_CLIENT_ID": APP_CLIENT, "APP_REDIRECT_URIS": f"{app_site.origin}/app.html"}) as issuer:
        yield issuer


APP_PAGE = """<!doctype html><title>Photo album (test app)</title>
<script type="importmap">{"imports": {"@aws-sdk/client-sts": "/sdk.js"}}</script>
<h1>Photo album</h1><p>Caller: <code id="arn"></code></p><p id="error"></p>
<script type="module">
const meta = await (await fetch("IDP/.well-known/openid-configuration")).json();
const app = {client_id: "CLIENT", redirect_uri: location.origin + "/app.html"};
const b64 = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/[+]/g, "-").replace(/[/]/g, "_")
  .replace(/=+$/, "");
window.addEventListener("unhandledrejection",
  (e) => { document.querySelector("#error").textContent = String(e.reason); });
const code = new URLSearchParams(location.search).get("code");
if (!code) {
  const verifier = b64(crypto.getRandomValues(new Uint8Array(32)));
  sessionStorage.setItem("verifier", verifier);
  const challenge = b64(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  location.href = meta.authorization_endpoint + "?" + new URLSearchParams({...app, response_type: "code",
    scope: "openid email profile groups", code_challenge: challenge, code_challenge_method: "S256",
    state: "s1", nonce: "n1"});
} else {
  if (!sessionStorage.getItem("idToken")) {  // a reload keeps the sign-in (the code is spent)
    const t = await (await fetch(meta.token_endpoint, {method: "POST", body: new URLSearchParams({...app, code,
      grant_type: "authorization_code", code_verifier: sessionStorage.getItem("verifier")})})).json();
    sessionStorage.setItem("idToken", t.id_token);
  }
  window.idToken = sessionStorage.getItem("idToken");
  try { await import("/snippet.js"); } catch (e) { document.querySelector("#error").textContent = String(e); }
}
</script>"""


@pytest.fixture
def bridge(request, live_bridge, make_settings, app_idp, app_site):  # type: ignore[no-untyped-def]
    nonce = bool(getattr(request, "param", False))  # parametrized indirectly: the app's dpop_nonce
    return live_bridge(make_settings(
        connectors=[{"id": OIDC_CONNECTOR, "type": "oidc", "issuer": app_idp, "client_id": "bridge",
                     "client_secret": "bridge-secret"}],
        mapping={"accounts": {ACCOUNT: {"alias": "sandbox", "roles": {"PhotoUploads": {}}}},
                 "rules": [{"name": "photo-album", "match": {"group": "aws-admins"},
                            "grants": [{"account": "sandbox", "role": "PhotoUploads", "session_name": "{email}"}]}]},
        apps=[{"client_id": "photos", "idp_audiences": {OIDC_CONNECTOR: [APP_CLIENT]}, "origins": [app_site.origin],
               "grants": ["sandbox/PhotoUploads"], "session_policy": POLICY, "dpop": "required",
               "dpop_nonce": nonce}]))


def serve_and_sign_in(page, app_site, app_idp, sdk_bundle, bridge, browser_sts) -> None:  # type: ignore[no-untyped-def]
    """The app's page, with the docs' snippet, signed in as alice; the snippet has run (#arn or #error)."""
    app_site.files.update({
        "/app.html": ("text/html", APP_PAGE.replace("IDP", app_idp).replace("CLIENT", APP_CLIENT).encode()),
        "/sdk.js": ("text/javascript", sdk_bundle),
        "/snippet.js": ("text/javascript", localised(doc_snippet(), bridge, browser_sts).encode())})
    page.goto(f"{app_site.origin}/app.html")
    page.wait_for_selector("#username", timeout=20_000)  # the IdP's sign-in form
    page.fill("#username", "alice")
    page.fill("#password", "alice-pw")
    page.click("#submit")
    ran(page)


def ran(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("document.querySelector('#arn').textContent || document.querySelector('#error').textContent",
                           timeout=30_000)


def kept_key(page) -> str:  # type: ignore[no-untyped-def]
    """The RFC 7638 thumbprint of the public half of the key pair the page keeps in IndexedDB."""
    jwk = page.evaluate("""async () => {
        const db = await new Promise((ok) => { const q = indexedDB.open("dpop"); q.onsuccess = () => ok(q.result); });
        const key = await new Promise((ok) => {
          const q = db.transaction("keys").objectStore("keys").get("app"); q.onsuccess = () => ok(q.result); });
        return { extractable: key.privateKey.extractable, ...(await crypto.subtle.exportKey("jwk", key.publicKey)) };
    }""")
    assert jwk.pop("extractable") is False  # the private half stays in the browser
    return thumbprint(jwk)


def exchanged(bridge_logs) -> list[str]:  # type: ignore[no-untyped-def]
    """The dpop_jkt of each exchange that issued credentials, from the bridge's log (never the proof)."""
    return [json.loads(line)["dpop_jkt"] for line in bridge_logs.lines if '"token_exchanged"' in line]


def test_a_page_of_another_origin_exchanges_its_id_token_and_calls_sts(page, bridge, app_site, other_site, app_idp,  # type: ignore[no-untyped-def]
                                                                       sdk_bundle, strict_sts_peer, browser_sts,
                                                                       bridge_logs):
    serve_and_sign_in(page, app_site, app_idp, sdk_bundle, bridge, browser_sts)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "exchange.png"))
    assert page.text_content("#error") == ""
    assert page.text_content("#arn") == f"arn:aws:sts::{ACCOUNT}:assumed-role/PhotoUploads/photos.alice@example.com"
    (seen,) = [c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"]
    assert seen.problems == [] and seen.role_arn == ROLE and "photos/00ualice/*" in seen.params["Policy"]
    id_token = page.evaluate("window.idToken")
    # the exchange was proven: the key's thumbprint is logged (never the proof), and it is a P-256 key's
    (jkt,) = exchanged(bridge_logs)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", jkt) and jkt == kept_key(page), jkt
    assert "eyJ0eXAiOiJkcG9wK2p3dCI" not in bridge_logs.text and id_token not in bridge_logs.text  # {"typ":"dpop+jwt"

    # A reload: the page runs again and proves its exchange with the key it kept in IndexedDB, not a new one.
    page.reload()
    ran(page)
    assert page.text_content("#error") == "" and page.text_content("#arn").endswith("/photos.alice@example.com")
    assert exchanged(bridge_logs) == [jkt, jkt] and kept_key(page) == jkt
    issued = len([c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"])

    # Another origin, with the same valid ID token: the browser gets no CORS headers, the bridge no credentials.
    other_site.files["/other.html"] = ("text/html", b"<!doctype html><title>Another site</title><p>other</p>")
    page.goto(f"{other_site.origin}/other.html")
    outcome = page.evaluate("""async ([url, body]) => {
        try { const r = await fetch(url, {method: "POST", body: new URLSearchParams(body)});
              return "read: " + r.status; } catch (e) { return "blocked: " + e.name; } }""",
                            [f"{bridge}/oauth/token", {"grant_type": EXCHANGE, "client_id": "photos",
                                                       "subject_token": id_token, "subject_token_type": ID_TOKEN,
                                                       "audience": "sandbox/PhotoUploads"}])
    assert outcome == "blocked: TypeError"
    direct = requests.post(f"{bridge}/oauth/token", headers={"Origin": other_site.origin}, timeout=30, data={
        "grant_type": EXCHANGE, "client_id": "photos", "subject_token": id_token, "subject_token_type": ID_TOKEN,
        "audience": "sandbox/PhotoUploads"})
    assert direct.status_code == 400 and direct.json()["error"] == "unauthorized_client"
    assert not [h for h in direct.headers if h.lower().startswith("access-control")]
    assert len([c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"]) == issued


@pytest.mark.parametrize("bridge", [True], ids=["dpop_nonce"], indirect=True)
def test_with_dpop_nonce_the_snippet_retries_once_with_the_bridges_nonce(page, bridge, app_site, app_idp,  # type: ignore[no-untyped-def]
                                                                         sdk_bundle, strict_sts_peer, browser_sts,
                                                                         bridge_logs):
    serve_and_sign_in(page, app_site, app_idp, sdk_bundle, bridge, browser_sts)
    assert page.text_content("#error") == ""
    assert page.text_content("#arn") == f"arn:aws:sts::{ACCOUNT}:assumed-role/PhotoUploads/photos.alice@example.com"
    # its first proof had no nonce (refused, with the header the page read through CORS); the retry had it
    events = [json.loads(line) for line in bridge_logs.lines if '"exchange_dpop_refused"' in line
              or '"token_exchanged"' in line]
    assert [(e["event"], e.get("code")) for e in events] == [("exchange_dpop_refused", "dpop_nonce_required"),
                                                             ("token_exchanged", None)]
    assert events[0]["level"] == "info"  # by design, each client's first exchange: no warning
    assert events[1]["dpop_jkt"] == kept_key(page)
    (seen,) = [c for c in strict_sts_peer.seen if c.action == "AssumeRoleWithWebIdentity"]
    assert seen.problems == [] and seen.role_arn == ROLE
