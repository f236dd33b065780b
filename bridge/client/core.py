"""The developer's side of the CLI: device login, credential_process, ~/.aws/config, a local
container-credentials endpoint. Standard library only (urllib, loaded when a request is made), so
`credential_process` starts fast.

Files (mode 0600, directories 0700):
- ``$XDG_CONFIG_HOME/federation-bridge/tokens.json``: the bridge's own CLI token per bridge URL
  (never an IdP token, never AWS keys);
- ``$XDG_CACHE_HOME/federation-bridge/creds-<hash>.json``: credentials reused until 15 minutes
  before they expire (botocore's refresh window), so `credential_process` rarely calls the bridge —
  but not blindly: once the bridge last said this login holds the role longer ago than the recheck
  bound (``BRIDGE_CREDENTIAL_RECHECK`` seconds, default 300), the bridge is asked again, and a
  revoked login or a role no longer held ends the cache's use (docs/security.md).
"""

from __future__ import annotations

import json
import os
import re
import time

TYPE_CHECKING = False  # typing itself costs ~5 ms of start-up; annotations are strings here
if TYPE_CHECKING:
    from typing import Any

try:  # the builtin SHA-256 starts without loading OpenSSL (hashlib): ~3 ms less on the hot path
    from _sha256 import sha256 as _sha256  # Python 3.11
except ImportError:  # pragma: no cover - 3.12+ renamed it; hashlib always works
    try:
        from _sha2 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256

CLIENT_ID = "bridge-cli"
REFRESH_WINDOW = 900
RECHECK = 300  # seconds the cache is used without asking the bridge whether the login still holds the role
RECHECK_ENV = "BRIDGE_CREDENTIAL_RECHECK"
ARN_RE = re.compile(r"\Aarn:aws[a-z-]*:iam::\d{12}:role/")


class ClientError(Exception):
    """Something the user must act on; the message says what (never a secret)."""


class Unreachable(ClientError):
    """The bridge did not answer (network, timeout): nothing was said about the login."""


# os.path, not pathlib: pathlib (and the urllib.parse it imports) would double the start-up of
# `credential-process` from the cache (bridge.__main__'s hot path).


def _dir(env: str, fallback: str) -> str:
    d = os.path.join(os.environ.get(env) or os.path.join(os.path.expanduser("~"), fallback), "federation-bridge")
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write_private(path: str, data: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic: a concurrent credential_process never reads half a file


def _tokens_path() -> str:
    return os.path.join(_dir("XDG_CONFIG_HOME", ".config"), "tokens.json")


def load_tokens() -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(_read(_tokens_path()))
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
    cache = _dir("XDG_CACHE_HOME", ".cache")
    for name in os.listdir(cache):
        if name.startswith("creds-") and name.endswith(".json"):
            import contextlib  # not at the top: off the hot path

            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(cache, name))


def resolve_url(url: str | None) -> str:
    """The bridge URL: --url, else $BRIDGE_URL, else the only one logged in to. http(s) only."""
    chosen = url or os.environ.get("BRIDGE_URL")
    if not chosen:
        known = list(load_tokens())
        if len(known) != 1:
            raise ClientError("which bridge? pass --url https://bridge.example.com (or set BRIDGE_URL)")
        chosen = str(known[0])
    if chosen.partition("://")[0].lower() not in ("http", "https") or "://" not in chosen:
        raise ClientError(f"{chosen!r} is not an http(s) URL")
    return chosen.rstrip("/")


def _request(url: str, *, data: dict[str, str] | None = None, token: str | None = None,
             method: str | None = None, timeout: float = 15) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.parse
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
        raise Unreachable(f"cannot reach the bridge at {url}: {getattr(e, 'reason', e)}") from None


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
    return str(_sha256(role_arn.encode()).hexdigest())[:16]  # same as bridge.domain.identity.grant_id_for


def grants(url: str) -> list[dict[str, Any]]:
    """The roles the CLI login holds now (the rules in force), as the bridge lists them."""
    found: list[dict[str, Any]] = grants_doc(url)["grants"]
    return found


def grants_doc(url: str) -> dict[str, Any]:
    """``/api/v1/grants`` whole: ``grants``, ``expires_at`` and the bridge's default ``region``."""
    return api(url, "/api/v1/grants")


def grants_and_requestable(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the roles held now, the roles that can be requested — README "Access requests")."""
    doc = api(url, "/api/v1/grants")
    return list(doc["grants"]), list(doc.get("requestable") or [])


def sts_hint(doc: dict[str, Any]) -> str:
    """`` --endpoint-url <url>`` for the hints when the bridge names a stand-in STS (the demo's), else ''."""
    ep = doc.get("sts_endpoint_url") or doc.get("StsEndpointUrl")
    return f" --endpoint-url {ep}" if isinstance(ep, str) and ep.startswith(("http://", "https://")) else ""


def role_ref(g: dict[str, Any]) -> str:
    """The short ``--role`` value for a grant: ``<account alias or id>/<role name>``."""
    return f"{g.get('account_alias') or g['account_id']}/{g['role_name']}"


def find_grant(url: str, role: str, held: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A grant by role ARN, `<account id, alias or label>/<role name>`, its label, or a unique role name."""
    held = grants(url) if held is None else held
    matches = [g for g in held if g["role_arn"] == role or role in (
        f"{g['account_id']}/{g['role_name']}", f"{g.get('account_alias') or ''}/{g['role_name']}",
        f"{g.get('account_label') or ''}/{g['role_name']}", f"{g['label']}")]
    if not matches:
        matches = [g for g in held if g["role_name"] == role]
    if len(matches) != 1:
        # ambiguous: the ARNs tell them apart; none: the short names to pick from
        names = ", ".join(g["role_arn"] for g in matches) if matches else ", ".join(map(role_ref, held)) or "none"
        raise ClientError(f"{'ambiguous' if matches else 'no'} role {role!r}; your roles: {names}")
    return matches[0]


CREDENTIAL_PROCESS_KEYS = ("Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")


def _cache_path(url: str, role: str, duration: int | None) -> str:
    key = _sha256(f"{url}\x00{role}\x00{duration}".encode()).hexdigest()[:32]
    return os.path.join(_dir("XDG_CACHE_HOME", ".cache"), f"creds-{key}.json")


def epoch(iso: str) -> float:
    """``YYYY-MM-DDTHH:MM:SSZ`` (what the bridge and STS give) as a Unix time; ValueError otherwise.

    Arithmetic, not datetime.strptime: that loads _strptime, calendar and locale on the hot path.
    """
    if len(iso) != 20 or iso[4] != "-" or iso[7] != "-" or iso[10] != "T" or iso[13] != ":" or iso[16] != ":" \
            or iso[19] != "Z":
        raise ValueError(f"not an RFC 3339 UTC time: {iso!r}")
    y, m, d = int(iso[0:4]), int(iso[5:7]), int(iso[8:10])
    hh, mm, ss = int(iso[11:13]), int(iso[14:16]), int(iso[17:19])
    if not (1 <= m <= 12 and 1 <= d <= 31 and hh < 24 and mm < 60 and ss < 61):
        raise ValueError(f"not an RFC 3339 UTC time: {iso!r}")
    # days from 1970-01-01 (H. Hinnant's days_from_civil)
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return float(days * 86400 + hh * 3600 + mm * 60 + ss)


def _fresh(doc: dict[str, Any], window: int = REFRESH_WINDOW) -> bool:
    try:
        return epoch(doc["Expiration"]) - time.time() > window
    except (KeyError, TypeError, ValueError):
        return False


def recheck_seconds(value: str | None = None) -> int:
    """The recheck bound: ``value`` (``--recheck``), else ``$BRIDGE_CREDENTIAL_RECHECK``, else 300 s;
    0 asks the bridge every time. ClientError for anything but a whole number of seconds."""
    raw = value if value is not None else os.environ.get(RECHECK_ENV)
    if raw is None or raw == "":
        return RECHECK
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ClientError(f"BRIDGE_CREDENTIAL_RECHECK / --recheck must be a whole number of seconds, not {raw[:20]!r}")
    return int(raw)


def _cached(url: str, role: str, duration: int | None) -> dict[str, Any] | None:
    """The cached document for ``role`` while its credentials are fresh (checked or not), else None."""
    try:
        cached: dict[str, Any] = json.loads(_read(_cache_path(url, role, duration)))
    except (OSError, ValueError):
        return None
    return cached if isinstance(cached, dict) and _fresh(cached) else None


def _checked_recently(doc: dict[str, Any], recheck: int) -> bool:
    checked = doc.get("CheckedAt")
    return isinstance(checked, (int, float)) and 0 <= time.time() - checked < recheck


def cached_credentials(url: str, role: str, duration: int | None = None,
                       recheck: int | None = None) -> dict[str, Any] | None:
    """The cached document for ``role`` while it is fresh and the bridge said, within the recheck
    bound, that this login holds the role; else None. No network, no click."""
    doc = _cached(url, role, duration)
    bound = recheck_seconds() if recheck is None else recheck
    return doc if doc is not None and _checked_recently(doc, bound) else None


def _still_held(url: str, role: str, duration: int | None, doc: dict[str, Any]) -> dict[str, Any]:
    """Ask the bridge whether this CLI login still holds the cached role: the document, re-stamped, if
    so. A refused login or a role no longer held deletes the cached credentials (ClientError); a
    bridge that does not answer leaves them on disk, unused (Unreachable)."""
    path = _cache_path(url, role, duration)
    try:
        held = grants(url)
        arn = doc.get("RoleArn") or role
        if not any(g.get("role_arn") == arn for g in held):
            raise ClientError(f"{arn} is no longer one of your roles at {url}: see `bridge roles --url {url}`")
    except Unreachable:
        raise
    except ClientError:
        import contextlib  # not at the top: off the hot path

        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    doc["CheckedAt"] = time.time()
    _write_private(path, json.dumps(doc))
    return doc


def credential_process_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """Exactly the ``credential_process`` fields (Version 1), in their order."""
    return {k: doc[k] for k in CREDENTIAL_PROCESS_KEYS}


def credentials(url: str, role: str, duration: int | None = None, recheck: int | None = None) -> dict[str, Any]:
    """Credentials for ``role``: from the local cache when fresh (and, past the recheck bound, once the
    bridge says the login still holds the role), else the bridge. The credential_process fields plus,
    when the bridge said them, ``RoleArn``, ``Region`` (its configured region) and ``StsEndpointUrl``."""
    bound = recheck_seconds() if recheck is None else recheck
    cached = _cached(url, role, duration)
    if cached is not None:
        return cached if _checked_recently(cached, bound) else _still_held(url, role, duration, cached)
    gid = grant_id_for(role) if ARN_RE.match(role) else find_grant(url, role)["id"]
    body = api(url, f"/api/v1/credentials/{gid}", data={"duration": str(duration)} if duration else {})
    doc = credential_process_doc(body)
    doc.update({k: body[k] for k in ("RoleArn", "Region", "StsEndpointUrl") if body.get(k)})  # for `env`, `exec`
    doc["CheckedAt"] = time.time()  # the bridge just issued them: it holds the login as alive now
    _write_private(_cache_path(url, role, duration), json.dumps(doc))
    return doc


def console_url(url: str, role: str, *, destination: str | None = None, region: str | None = None,
                duration: int | None = None) -> str:
    """A console sign-in URL for ``role`` (good for 15 minutes: open it, do not keep it)."""
    gid = grant_id_for(role) if ARN_RE.match(role) else find_grant(url, role)["id"]
    data = {k: v for k, v in (("destination", destination), ("region", region),
                              ("duration", str(duration) if duration else None)) if v}
    return str(api(url, f"/api/v1/console/{gid}", data=data)["login_url"])


# ---- ~/.aws/config -------------------------------------------------------------------------


def profile_name(g: dict[str, Any]) -> str:
    """``<account alias>-<role name>`` (``sandbox-Admin``), the account id when there is no alias."""
    return re.sub(r"[^A-Za-z0-9_.+@-]", "-", f"{g.get('account_alias') or g['account_id']}-{g['role_name']}")[:64]


def _argv_word(word: str) -> str:
    """One word of a ``credential_process`` line: botocore splits it like a POSIX shell (Windows: like
    CommandLineToArgvW), and double quotes mean the same to both for paths with spaces."""
    return f'"{word}"' if re.search(r"\s", word) else word


def profile_block(name: str, url: str, role_arn: str, region: str | None, command: list[str] | None = None) -> str:
    """A ``[profile NAME]`` running ``COMMAND credential-process`` (default: ``bridge``, from $PATH)."""
    run = " ".join(_argv_word(w) for w in (command or ["bridge"]))
    lines = [f"[profile {name}]", f"credential_process = {run} credential-process --url {url} --role {role_arn}"]
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
