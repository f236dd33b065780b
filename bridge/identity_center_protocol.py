"""IAM Identity Center's protocol pieces that hold no state: the sso-oidc and sso error shapes (as
botocore's service models have them), checks on request bodies and redirect URIs, PKCE, and the portal's
paging. Pure: bridge/identity_center.py serves the protocol with them; bridge/web/sso.py writes the
errors as REST-JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from bridge.errors import BridgeError, NotSignedIn, RateLimited

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = frozenset({DEVICE_GRANT, "authorization_code", "refresh_token"})
DEFAULT_GRANT_TYPES = (DEVICE_GRANT, "refresh_token")
SCOPES = frozenset({"sso:account:access"})
AUTH_CODE_TTL = 300
MAX_RESULTS = 100
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})

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


def is_loopback(uri: str) -> bool:
    try:
        u = urlsplit(uri)
        return u.scheme == "http" and (u.hostname or "") in LOOPBACK_HOSTS and not u.username and not u.fragment
    except ValueError:
        return False


def redirect_matches(registered: Iterable[str], uri: str) -> bool:
    """RFC 8252 §7.3: a loopback redirect URI matches a registered one whatever its port."""
    if not is_loopback(uri):
        return False
    u = urlsplit(uri)
    for r in registered:
        ru = urlsplit(r)
        if (ru.scheme, ru.hostname, ru.path or "/", ru.query) == (u.scheme, u.hostname, u.path or "/", u.query):
            return True
    return False


def pkce_s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


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
        except (ValueError, KeyError, TypeError, binascii.Error):
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
