"""Sign in with Apple: ``preset: apple`` on the OIDC connector (settings: ``bridge.upstream.apple_settings``).

Everything the OIDC connector verifies is verified the same way (state bound to the pending login and its
browser, nonce, signature with Apple's published keys, ``iss``, ``aud``, ``exp``, ``iat``); Apple's
differences are handled here, and nowhere else:

- **Client secret**: an ES256 JWT signed with the team's private key (``iss`` = team id, ``sub`` = the
  Services ID = ``client_id``, ``aud`` = Apple's issuer, ``exp`` a few minutes ahead, ``kid`` the key id),
  minted for a token request and reused until shortly before it expires. Never logged.
- **Form-POST callback** (``response_mode=form_post``): asked for here; the cross-site POST that loses the
  pre-sign-in cookie goes through the same-site hop (bridge/web/login.py), then through the usual checks.
- **String booleans**: Apple sends ``email_verified`` and ``is_private_email`` as ``true``/``false`` or
  as the strings ``"true"``/``"false"``; both become booleans here, after the signature is verified. Any
  other value is left as it is, so the e-mail check refuses it (reject, don't repair). Other connectors
  stay strict: there a string ``"true"`` is refused.
- **Private relay**: ``is_private_email`` (a boolean after the above) is kept as a claim rules can match
  (``claims.is_private_email: "true"``); the relay address (``…@privaterelay.appleid.com``) is the e-mail.
- **The name**: Apple sends it only on the first authorization, in the ``user`` form field, unsigned and
  chosen by the user: taken as the display name when the ID token has none, never as anything else.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

from bridge.domain.identity import Identity
from bridge.upstream.apple_settings import SECRET_LIFETIME, SECRET_RENEW_BEFORE, AppleSettings
from bridge.upstream.base import PendingLogin
from bridge.upstream.oidc import OidcConnector
from bridge.upstream.oidc_settings import OidcConnectorSettings

# The ID token claims Apple sends as strings (or booleans).
BOOLEAN_CLAIMS = ("email_verified", "is_private_email")
MAX_USER_FIELD = 2048  # bytes of the `user` form field read at most
MAX_NAME = 128


def apple_bool(value: Any) -> Any:
    """``true``/``false`` or the exact strings ``"true"``/``"false"`` → a boolean; anything else unchanged."""
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


def with_apple_booleans(claims: Mapping[str, Any]) -> dict[str, Any]:
    """``claims`` with Apple's boolean claims as booleans (where they are one of the accepted spellings)."""
    return {k: apple_bool(v) if k in BOOLEAN_CLAIMS else v for k, v in claims.items()}


def name_from_user_field(raw: str | None) -> str | None:
    """The name in Apple's first-authorization ``user`` form field (``{"name": {"firstName": …, "lastName":
    …}, "email": …}``), or None when there is none or it is not that shape. Only the name is read."""
    if not raw or len(raw.encode()) > MAX_USER_FIELD:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    if not isinstance(name, dict):
        return None
    parts = [name.get(k) for k in ("firstName", "lastName")]
    text = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")  # no control characters
    return text[:MAX_NAME] or None


class ClientSecret:
    """Apple's client secret: an ES256 JWT minted with the team's key, reused until near its expiry."""

    def __init__(self, apple: AppleSettings, *, client_id: str, audience: str, clock: Callable[[], float]) -> None:
        self._key = ECKey.import_key(apple.private_key.get_secret_value())
        self._header = {"alg": "ES256", "kid": apple.key_id}
        self._team_id, self._client_id, self._audience = apple.team_id, client_id, audience
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._expires = 0

    def __repr__(self) -> str:
        return f"ClientSecret(team_id={self._team_id!r}, client_id={self._client_id!r})"  # never the key or JWT

    def value(self) -> str:
        with self._lock:
            now = int(self._clock())
            if self._value is None or now >= self._expires - SECRET_RENEW_BEFORE:
                self._expires = now + SECRET_LIFETIME
                claims = {"iss": self._team_id, "sub": self._client_id, "aud": self._audience,
                          "iat": now, "exp": self._expires}
                self._value = jwt.encode(self._header, claims, self._key, algorithms=["ES256"])
            return self._value


class AppleConnector(OidcConnector):
    """The OIDC connector with Apple's client secret, form-POST callback and claim spellings."""

    response_mode = "form_post"

    def __init__(self, cfg: OidcConnectorSettings, **kw: Any) -> None:
        super().__init__(cfg, **kw)
        if cfg.apple is None:  # the settings refuse this; a guard for direct construction
            raise ValueError(f"{cfg.id}: preset apple without an apple section")
        self.secret = ClientSecret(cfg.apple, client_id=cfg.client_id, audience=cfg.issuer, clock=self.clock)

    def _client_secret(self) -> str | None:
        return self.secret.value()

    def verify_id_token(self, id_token: str, *, nonce: str, refreshed: bool = False) -> dict[str, Any]:
        # Verified exactly as any ID token first; only then are the string booleans read.
        return with_apple_booleans(super().verify_id_token(id_token, nonce=nonce, refreshed=refreshed))

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str], redirect_uri: str) -> Identity:
        identity = super().finish_login(pending, params, redirect_uri)
        if identity.name is None and (name := name_from_user_field(params.get("user"))):
            identity = replace(identity, name=name)
        return identity
