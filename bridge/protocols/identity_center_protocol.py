"""IAM Identity Center's protocol pieces that hold no state: the sso-oidc and sso error shapes (as
botocore's service models have them), checks on request bodies and redirect URIs, PKCE, and the portal's
paging. Pure: bridge/protocols/identity_center.py serves the protocol with them; bridge/web/sso.py writes the
errors as REST-JSON.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.domain.errors import BridgeError, NotSignedIn, RateLimited

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = frozenset({DEVICE_GRANT, "authorization_code", "refresh_token"})
DEFAULT_GRANT_TYPES = (DEVICE_GRANT, "refresh_token")
SCOPES = frozenset({"sso:account:access"})
AUTH_CODE_TTL = 300
MAX_RESULTS = 100

# OAuth error code → the sso-oidc exception shape (and its HTTP status, as the model has it).
OIDC_ERRORS: dict[str, tuple[str, int]] = {
    "authorization_pending": ("AuthorizationPendingException", 400),
    "slow_down": ("SlowDownException", 400),
    "expired_token": ("ExpiredTokenException", 400),
    "access_denied": ("AccessDeniedException", 400),
    "invalid_grant": ("InvalidGrantException", 400),
    "invalid_client": ("InvalidClientException", 401),
    "unauthorized_client": ("UnauthorizedClientException", 400),
    "unsupported_grant_type": ("UnsupportedGrantTypeException", 400),
    "invalid_request": ("InvalidRequestException", 400),
    "invalid_scope": ("InvalidScopeException", 400),
    "invalid_client_metadata": ("InvalidClientMetadataException", 400),
    "invalid_redirect_uri": ("InvalidRedirectUriException", 400),
    "server_error": ("InternalServerException", 500),
}


class SsoError(Exception):
    """An error as Identity Center answers it: ``type`` goes in the ``x-amzn-ErrorType`` header (what
    the SDKs turn into their exception class), ``body`` is the JSON body of that shape."""

    def __init__(self, type_: str, status: int, body: dict[str, str]) -> None:
        super().__init__(f"{type_}: {body}")
        self.type = type_
        self.status = status
        self.body = body

    @classmethod
    def oidc(cls, error: str, description: str) -> SsoError:
        type_, status = OIDC_ERRORS[error]
        return cls(type_, status, {"error": error, "error_description": description})

    @classmethod
    def portal(cls, type_: str, status: int, message: str) -> SsoError:
        return cls(type_, status, {"message": message})


def unauthorized(message: str = "Session token not found or invalid") -> SsoError:
    return SsoError.portal("UnauthorizedException", 401, message)


def forbidden(message: str = "No access") -> SsoError:
    """What Identity Center answers for a role the user does not (or no longer) hold. Not in the
    model's error list: SDKs raise their generic service error with this code, as against AWS."""
    return SsoError.portal("ForbiddenException", 403, message)


def invalid_request(message: str) -> SsoError:
    return SsoError.portal("InvalidRequestException", 400, message)


def normalize_start_url(url: str) -> str:
    """``https://b.example.com/``, ``…/start``, ``…/start/#/`` → ``https://b.example.com``."""
    u = url.split("#", 1)[0].strip().rstrip("/")
    if u.endswith("/start"):
        u = u[: -len("/start")]
    return u.rstrip("/").lower()


# RFC 8252 §7.3 loopback redirect URIs, and nothing else: ``http://``, a loopback host as written here, a
# port 1-65535 or none, a path and an optional query of plain characters. Parts of a redirect URI reach
# the Location and Content-Security-Policy headers, so anything that could end or add a header value or
# a CSP directive (``;`` ``,`` spaces, quotes, control characters) is refused, as are fragments, user
# info and any spelling the canonical form would change (``HTTP://``, ``LOCALHOST``, port ``080``).
_PCHAR = r"(?:[A-Za-z0-9._~!$&*+=:@-]|%[0-9A-Fa-f]{2})"
_LOOPBACK_RE = re.compile(r"http://(?P<host>127\.0\.0\.1|localhost|\[::1\])(?::(?P<port>[0-9]{1,5}))?"
                          rf"(?P<path>(?:/{_PCHAR}*)*)(?:\?(?P<query>(?:{_PCHAR}|[/?])+))?")
_HOSTS = "127.0.0.1, [::1] or localhost"


@dataclass(frozen=True)
class LoopbackUri:
    """A parsed loopback redirect URI. ``str()`` rebuilds it from these parts (what headers are made of)."""

    host: str
    port: int | None
    path: str
    query: str

    @property
    def origin(self) -> str:
        return f"http://{self.host}" + (f":{self.port}" if self.port is not None else "")

    def __str__(self) -> str:
        return self.origin + self.path + (f"?{self.query}" if self.query else "")

    def same_target(self, other: LoopbackUri) -> bool:
        """RFC 8252 §7.3: the same redirect URI whatever the port."""
        return (self.host, self.path or "/", self.query) == (other.host, other.path or "/", other.query)


def loopback_problem(uri: str) -> str | None:
    """Why ``uri`` is not a redirect URI the bridge accepts (None when it is one)."""
    if any(not 0x20 < ord(c) < 0x7F for c in uri):
        return "it holds a space, a control character or a character outside ASCII"
    if bad := next((c for c in uri if c in ";,'\"<>\\`{}|^"), None):
        return f"it holds {bad!r}"
    if "#" in uri:
        return "it has a fragment (#)"
    if not uri.startswith("http://"):
        return "it must start with http:// (a loopback redirect URI, RFC 8252)"
    authority = re.split(r"[/?]", uri[len("http://"):], maxsplit=1)[0]
    if "@" in authority:
        return "it has user info (@)"
    host, sep, port = authority.rpartition(":") if not authority.endswith("]") else ("", "", "")
    if (host if sep else authority) not in ("127.0.0.1", "localhost", "[::1]"):
        return f"the host must be {_HOSTS}"
    if sep and not _port_ok(port):
        return "the port must be a number from 1 to 65535, or none"
    m = _LOOPBACK_RE.fullmatch(uri)
    if m is None:
        return "its path or query holds characters a redirect URI here may not hold"
    return None


def _port_ok(port: str | None) -> bool:
    return port is not None and port.isascii() and port.isdigit() and not port.startswith("0") and int(port) <= 65535


def parse_loopback(uri: str) -> LoopbackUri | None:
    """``uri`` as a ``LoopbackUri``, or None when it is not one the bridge accepts (``loopback_problem``)."""
    m = _LOOPBACK_RE.fullmatch(uri)
    if m is None or (m["port"] is not None and not _port_ok(m["port"])):
        return None
    return LoopbackUri(m["host"], int(m["port"]) if m["port"] else None, m["path"], m["query"] or "")


def redirect_matches(registered: Iterable[str], uri: str) -> LoopbackUri | None:
    """The parsed ``uri`` when it is a loopback URI matching one of ``registered`` whatever its port (RFC 8252
    §7.3); None otherwise. Registered URIs that are not (an earlier version took more) match nothing."""
    given = parse_loopback(uri)
    if given is None:
        return None
    for r in registered:
        reg = parse_loopback(r)
        if reg is not None and reg.same_target(given):
            return given
    return None


# RFC 7636 §4.2: an S256 challenge is BASE64URL(SHA-256(verifier)) without padding: 43 of these characters;
# nothing else could ever match (and a challenge is compared, so it must be plain ASCII).
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


def pkce_s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def pkce_matches(verifier: str, challenge: str) -> bool:
    """Whether the S256 of ``verifier`` is ``challenge``: in constant time, as bytes (``compare_digest`` raises
    on a str outside ASCII, and a code issued by an earlier version may carry any challenge)."""
    return hmac.compare_digest(pkce_s256(verifier).encode(), challenge.encode("utf-8", "surrogatepass"))


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON's \\u escapes carry them, UTF-8 cannot
        return False
    return True


def check_text(body: Mapping[str, Any]) -> None:
    """Refuse (InvalidRequestException) a JSON body whose names or strings are not Unicode text, naming the
    top-level field: nothing of it is hashed, stored, logged or shown."""
    for key, value in body.items():
        stack: list[Any] = [key, value]
        while stack:
            v = stack.pop()
            if isinstance(v, str) and not _is_text(v):
                name = key if _is_text(key) else "a field name"
                raise SsoError.oidc("invalid_request", f"{name} must be Unicode text: it holds a lone surrogate "
                                    "(\\ud800-\\udfff without its pair)")
            if isinstance(v, dict):
                stack.extend(k for kv in v.items() for k in kv)
            elif isinstance(v, list):
                stack.extend(v)


@functools.lru_cache(maxsize=4096)  # a pure function of the text, asked on every exchange: the same few addresses
def address_key(ip: str) -> str:
    """What RegisterClient counts per: the client's IPv4 address, or its IPv6 /64 (one host has a whole /64)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def body_str(body: Mapping[str, Any], key: str, *, required: bool = True, limit: int = 2048) -> str:
    v = body.get(key)
    if v is None or v == "":
        if required:
            raise SsoError.oidc("invalid_request", f"{key} is required")
        return ""
    if not isinstance(v, str) or len(v) > limit:
        raise SsoError.oidc("invalid_request", f"{key} must be a string of at most {limit} characters")
    return v


def body_str_list(body: Mapping[str, Any], key: str) -> list[str] | None:
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > 20 or not all(isinstance(x, str) and 0 < len(x) <= 2048 for x in v):
        raise SsoError.oidc("invalid_request", f"{key} must be a list of strings")
    return list(v)


def page_of(items: Sequence[dict[str, str]], next_token: str | None, max_results: str | None,
            scope: str) -> tuple[list[dict[str, str]], str | None]:
    """One page of ``items``; tokens are opaque to the client (an offset bound to what is listed)."""
    size = MAX_RESULTS
    if max_results not in (None, ""):
        if not max_results.isascii() or not max_results.isdigit() or not 1 <= int(max_results[:4]) <= MAX_RESULTS:
            raise invalid_request(f"maxResults must be between 1 and {MAX_RESULTS}")
        size = int(max_results)
    start = 0
    if next_token:
        try:
            doc = json.loads(base64.urlsafe_b64decode(next_token[:256].encode() + b"=="))
            start, bound = int(doc["o"]), str(doc["s"])
        except (ValueError, KeyError, TypeError, OverflowError, binascii.Error):  # OverflowError: {"o": Infinity}
            raise invalid_request("invalid nextToken") from None
        if bound != scope or not 0 <= start <= len(items):
            raise invalid_request("invalid nextToken")
    page = list(items[start:start + size])
    end = start + size
    token = (base64.urlsafe_b64encode(json.dumps({"o": end, "s": scope}).encode()).rstrip(b"=").decode()
             if end < len(items) else None)
    return page, token


def portal_error(e: BridgeError) -> SsoError:
    """A bridge error met while serving the portal, as an Identity Center error."""
    if isinstance(e, RateLimited):
        return SsoError.portal("TooManyRequestsException", 429, "Too many requests")
    if isinstance(e, NotSignedIn):
        return unauthorized()
    if e.status < 500:
        return invalid_request(e.message or e.code)
    return SsoError.portal("InternalServerException", e.status, e.message or "the bridge could not do this now")
