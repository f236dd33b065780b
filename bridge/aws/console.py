"""AWS console sign-in: federation endpoint URLs and destinations (docs/aws-rules.md §3). Pure.

Hosts come from the partition table (bridge/domain/partitions.py). A destination is a console path or a
full console URL of the configured partition only (allowlist), so a link can never send a user's
sign-in token elsewhere.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode, urlsplit

from bridge.domain.identity import Credentials
from bridge.domain.partitions import REGION_RE, by_name

MIN_SESSION = 900
MAX_SESSION = 43200
TOKEN_LIFETIME = 900  # an Action=login URL works for 15 minutes


def federation_endpoint(partition: str, region: str | None = None) -> str:
    """``https://[<region>.]signin.<partition host>/federation`` (regional hosts exist in ``aws`` only)."""
    return by_name(partition).federation_url(region)


def console_base(partition: str, region: str | None = None) -> str:
    return by_name(partition).console_url(region)


def console_origins(partition: str) -> list[str]:
    """Origins a console sign-in may pass through after the sign-in endpoint: the console and (``aws``) its
    regional hosts, which AWS redirects to."""
    return by_name(partition).console_origins()


def resolve_destination(destination: str | None, partition: str, region: str | None = None) -> str:
    """A console URL for ``destination`` (a path like ``/s3/home`` or a console URL); ValueError otherwise."""
    if region is not None and not REGION_RE.match(region):
        raise ValueError(f"{region!r} is not a region name")
    dest = (destination or "/console/home").strip()
    if dest.startswith("/") and not dest.startswith("//") and "\\" not in dest:
        url = console_base(partition, region) + dest
    else:
        parts = urlsplit(dest)
        if parts.scheme != "https" or not parts.hostname or not by_name(partition).is_console_host(parts.hostname) \
                or parts.username or parts.password or parts.port:
            raise ValueError("the destination must be a console path or a console URL of this partition")
        url = dest
    if any(c in url for c in "\r\n\t "):
        raise ValueError("the destination has whitespace in it")
    if region and "region=" not in url:
        url += ("&" if "?" in url else "?") + urlencode({"region": region})
    return url


def session_json(creds: Credentials) -> str:
    """The ``Session`` parameter of getSigninToken (exact key names AWS expects)."""
    return json.dumps({"sessionId": creds.access_key_id, "sessionKey": creds.secret_access_key,
                       "sessionToken": creds.session_token})


def signin_token_params(creds: Credentials, session_duration: int | None) -> dict[str, str]:
    """Form fields for ``Action=getSigninToken`` (POSTed, so the secrets never sit in a URL)."""
    params = {"Action": "getSigninToken", "Session": session_json(creds)}
    if session_duration is not None:
        if not MIN_SESSION <= session_duration <= MAX_SESSION:
            raise ValueError(f"SessionDuration must be {MIN_SESSION}..{MAX_SESSION}")
        params["SessionDuration"] = str(session_duration)
    return params


def login_url(endpoint: str, signin_token: str, *, issuer: str, destination: str) -> str:
    """The ``Action=login`` URL: a secret for 15 minutes; send it with a 302, never log it."""
    return f"{endpoint}?" + urlencode({"Action": "login", "Issuer": issuer, "Destination": destination,
                                       "SigninToken": signin_token})
