"""The AWS sign-in federation endpoint client (getSigninToken). Network I/O; URL building is in console.py."""

from __future__ import annotations

import requests

from bridge.aws.console import signin_token_params
from bridge.domain.errors import StsError, StsUnavailable
from bridge.domain.identity import Credentials


def get_signin_token(endpoint: str, creds: Credentials, session_duration: int | None, *,
                     timeout: float = 10.0, http: requests.Session | None = None) -> str:
    """Exchange credentials for a sign-in token (POST: the secrets stay out of URLs and logs)."""
    try:
        r = (http or requests).post(endpoint, data=signin_token_params(creds, session_duration), timeout=timeout)
    except requests.RequestException as e:
        raise StsUnavailable(f"federation endpoint: {type(e).__name__}", code="signin_unavailable",
                             title="AWS sign-in unreachable",
                             message="The bridge could not reach the AWS sign-in service.") from None
    if r.status_code != 200:
        raise StsError(f"getSigninToken HTTP {r.status_code}: {r.text[:200]}", code="signin_refused", status=502,
                       message="AWS sign-in refused the console session.",
                       hint="Try again; if it persists, give the request id to your administrator.")
    try:
        token = r.json()["SigninToken"]
    except (ValueError, KeyError, TypeError):
        raise StsError("getSigninToken answered without a SigninToken", code="signin_bad_response",
                       status=502, message="AWS sign-in answered with something the bridge could not read.") from None
    return str(token)
