"""The developer's side of the CLI: device login, credential_process, ~/.aws/config, a local
container-credentials endpoint. Standard library only (urllib, loaded when a request is made), so
`credential_process` starts fast.

Files (mode 0600, directories 0700):
- ``$XDG_CONFIG_HOME/federation-bridge/tokens.json``: the bridge's own CLI token per bridge URL
  (never an IdP token, never AWS keys);
- ``$XDG_CACHE_HOME/federation-bridge/creds-<hash>.json``: credentials reused until 15 minutes
  before they expire (botocore's refresh window), so `credential_process` rarely calls the bridge.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CLIENT_ID = "bridge-cli"
REFRESH_WINDOW = 900
ARN_RE = re.compile(r"\Aarn:aws[a-z-]*:iam::\d{12}:role/")


class ClientError(Exception):
    """Something the user must act on; the message says what (never a secret)."""


def _dir(env: str, fallback: str) -> Path:
    base = Path(os.environ.get(env) or Path.home() / fallback)
    d = base / "federation-bridge"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def _write_private(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic: a concurrent credential_process never reads half a file


def _tokens_path() -> Path:
    return _dir("XDG_CONFIG_HOME", ".config") / "tokens.json"


def load_tokens() -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(_tokens_path().read_text(encoding="utf-8"))
        return doc
    except (OSError, ValueError):
        return {}


def save_token(url: str, token: dict[str, Any]) -> None:
    tokens = load_tokens()
    tokens[url] = token
    _write_private(_tokens_path(), json.dumps(tokens, indent=2))


def forget_token(url: str) -> None:
    tokens = load_tokens()
    if tokens.pop(url, None) is not None:
        _write_private(_tokens_path(), json.dumps(tokens, indent=2))
    for f in _dir("XDG_CACHE_HOME", ".cache").glob("creds-*.json"):
        f.unlink(missing_ok=True)


def resolve_url(url: str | None) -> str:
    """The bridge URL: --url, else $BRIDGE_URL, else the only one logged in to. http(s) only."""
    chosen = url or os.environ.get("BRIDGE_URL")
    if not chosen:
        known = list(load_tokens())
        if len(known) != 1:
            raise ClientError("which bridge? pass --url https://bridge.example.com (or set BRIDGE_URL)")
        chosen = str(known[0])
    if urllib.parse.urlsplit(chosen).scheme not in ("http", "https"):
        raise ClientError(f"{chosen!r} is not an http(s) URL")
    return chosen.rstrip("/")


def _request(url: str, *, data: dict[str, str] | None = None, token: str | None = None,
             method: str | None = None, timeout: float = 15) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request  # here, not above: credentials fresh in the cache need no HTTP (~15 ms less)

    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body,  # noqa: S310 - scheme checked in resolve_url
                                 method=method or ("POST" if body is not None else "GET"))
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - the user's bridge URL
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {"error": f"http_{e.code}"}
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise ClientError(f"cannot reach the bridge at {url}: {getattr(e, 'reason', e)}") from None


def _token(url: str) -> str:
    t = load_tokens().get(url)
    if not t or t.get("expires_at", 0) <= time.time():
        raise ClientError(f"not signed in to {url} (or the login expired): run `bridge login --url {url}`")
    return str(t["access_token"])


def api(url: str, path: str, *, data: dict[str, str] | None = None) -> dict[str, Any]:
    status, body = _request(f"{url}{path}", data=data, token=_token(url))
    if status == 401:
        raise ClientError(f"the bridge refused the CLI login ({body.get('message', 'expired or revoked')}): "
                          f"run `bridge login --url {url}`")
    if status >= 400:
        msg = body.get("message") or body.get("error") or f"HTTP {status}"
        hint = body.get("hint")
        raise ClientError(f"{msg}{' ' + hint if hint else ''} (request id {body.get('request_id', '-')})")
    return body


# ---- device login -----------------------------------------------------------------------


def start_login(url: str) -> dict[str, Any]:
    status, body = _request(f"{url}/oauth/device_authorization", data={"client_id": CLIENT_ID})
    if status != 200:
        raise ClientError(f"the bridge did not start a login: {body.get('error_description') or status}")
    return body


def poll_login(url: str, start: dict[str, Any], *, sleep: Any = time.sleep, clock: Any = time.time) -> dict[str, Any]:
    """Poll the token endpoint as RFC 8628 says (interval, +5 s on slow_down) until done."""
    interval = int(start.get("interval", 5))
    deadline = clock() + int(start.get("expires_in", 600))
    while clock() < deadline:
        sleep(interval)
        status, body = _request(f"{url}/oauth/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": CLIENT_ID,
            "device_code": start["device_code"]})
        if status == 200:
            token = {"access_token": body["access_token"], "expires_at": int(time.time()) + int(body["expires_in"])}
            save_token(url, token)
            return token
        err = body.get("error")
        if err == "authorization_pending":
            continue
        if err == "slow_down":
            interval += 5
            continue
        if err == "access_denied":
            raise ClientError("the sign-in was denied in the browser")
        if err == "expired_token":
            raise ClientError("the code expired before it was approved; run `bridge login` again")
        raise ClientError(f"login failed: {body.get('error_description') or err or status}")
    raise ClientError("the code expired before it was approved; run `bridge login` again")


# ---- roles and credentials --------------------------------------------------------------


def grant_id_for(role_arn: str) -> str:
    return hashlib.sha256(role_arn.encode()).hexdigest()[:16]  # same as bridge.identity.grant_id_for


def find_grant(url: str, role: str) -> dict[str, Any]:
    """A grant by role ARN, `<account id or label>/<role name>`, or a unique role name."""
    grants: list[dict[str, Any]] = api(url, "/api/v1/grants")["grants"]
    matches = [g for g in grants if g["role_arn"] == role or role in (
        f"{g['account_id']}/{g['role_name']}", f"{g.get('account_alias') or ''}/{g['role_name']}",
        f"{g['label']}")]
    if not matches:
        matches = [g for g in grants if g["role_name"] == role]
    if len(matches) != 1:
        names = ", ".join(g["role_arn"] for g in (matches or grants)) or "none"
        raise ClientError(f"{'ambiguous' if matches else 'no'} role {role!r}; your roles: {names}")
    return matches[0]


def _cache_path(url: str, role: str, duration: int | None) -> Path:
    key = hashlib.sha256(f"{url}\x00{role}\x00{duration}".encode()).hexdigest()[:32]
    return _dir("XDG_CACHE_HOME", ".cache") / f"creds-{key}.json"


def _fresh(doc: dict[str, Any], window: int = REFRESH_WINDOW) -> bool:
    try:
        exp = datetime.strptime(doc["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (KeyError, ValueError):
        return False
    return exp - time.time() > window


def credentials(url: str, role: str, duration: int | None = None) -> dict[str, Any]:
    """The credential_process document for ``role``: from the local cache when fresh, else the bridge."""
    path = _cache_path(url, role, duration)
    try:
        cached: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if _fresh(cached):
            return cached
    except (OSError, ValueError):
        pass
    gid = grant_id_for(role) if ARN_RE.match(role) else find_grant(url, role)["id"]
    body = api(url, f"/api/v1/credentials/{gid}", data={"duration": str(duration)} if duration else {})
    doc = {k: body[k] for k in ("Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}
    _write_private(path, json.dumps(doc))
    return doc


def console_url(url: str, role: str, *, destination: str | None = None, region: str | None = None,
                duration: int | None = None) -> str:
    """A console sign-in URL for ``role`` (good for 15 minutes: open it, do not keep it)."""
    gid = grant_id_for(role) if ARN_RE.match(role) else find_grant(url, role)["id"]
    data = {k: v for k, v in (("destination", destination), ("region", region),
                              ("duration", str(duration) if duration else None)) if v}
    return str(api(url, f"/api/v1/console/{gid}", data=data)["login_url"])


# ---- ~/.aws/config -------------------------------------------------------------------------


def profile_block(name: str, url: str, role_arn: str, region: str | None) -> str:
    lines = [f"[profile {name}]",
             f"credential_process = bridge credential-process --url {url} --role {role_arn}"]
    if region:
        lines.append(f"region = {region}")
    return "\n".join(lines) + "\n"


def upsert_profiles(text: str, blocks: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """Add or replace ``[profile NAME]`` sections in config ``text``; every other byte stays as it was.

    Returns the new text, the names replaced and the names added.
    """
    heads = list(re.finditer(r"^\[\s*profile\s+([^\]]+?)\s*\]\s*$|^\[[^\]]*\]\s*$", text, re.M))
    out = [text[: heads[0].start()] if heads else text]
    replaced: list[str] = []
    for i, m in enumerate(heads):
        section = text[m.start(): heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        name = m.group(1)
        if name in blocks and name not in replaced:
            # Keep the blank lines that separated this section from the next one.
            trailing = section[len(section.rstrip("\n")):]
            out.append(blocks[name] + trailing[1:] if trailing else blocks[name])
            replaced.append(name)
        else:
            out.append(section)
    added = [n for n in blocks if n not in replaced]
    result = "".join(out)
    for name in added:
        if result and not result.endswith("\n"):
            result += "\n"
        result += ("\n" if result else "") + blocks[name]
    return result, replaced, added
