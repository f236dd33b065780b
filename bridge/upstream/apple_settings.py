"""Settings of ``preset: apple`` on the ``oidc`` connector (Sign in with Apple; docs/idps/apple.md).

Pydantic only at import time (loading the config stays light). Apple differs from a plain OIDC provider in
three ways the connector (``bridge.upstream.apple``) handles: its client secret is an ES256 JWT the bridge
mints with the team's private key (``apple.private_key_file``, the ``.p8`` file), its callback is a form
POST (``response_mode=form_post``: through the same-site hop, bridge/web/login.py), and it sends
``email_verified`` / ``is_private_email`` as the strings ``"true"`` / ``"false"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import Field, SecretStr, field_validator

from bridge.domain.settings_base import SettingsModel

APPLE_ISSUER = "https://appleid.apple.com"
# Apple knows the scopes `name` and `email` only (no `profile`, no `groups`).
APPLE_SCOPES = ("openid", "email", "name")
# The client secret JWT: Apple accepts up to 6 months; the bridge mints short ones and reuses each until
# this close to its expiry.
SECRET_LIFETIME = 600
SECRET_RENEW_BEFORE = 120


class AppleSettings(SettingsModel):
    """The team's key that signs the client secret (Apple developer account → Keys, "Sign in with Apple")."""

    team_id: str = Field(pattern=r"^[A-Z0-9]{10}$", description="the Apple developer team id (10 characters)")
    key_id: str = Field(pattern=r"^[A-Z0-9]{10}$", description="the id of the Sign in with Apple key (10 characters)")
    private_key: SecretStr = Field(description="the key's .p8 file (PEM, EC P-256): give private_key_file")

    @field_validator("private_key")
    @classmethod
    def _p8(cls, v: SecretStr) -> SecretStr:
        from cryptography.hazmat.primitives.asymmetric import ec  # only when an Apple connector is configured
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        text = v.get_secret_value().strip()
        if "-----BEGIN PRIVATE KEY-----" not in text:
            raise ValueError("is not a .p8 file (PEM, PKCS#8): give private_key_file: "
                             "the AuthKey_<key id>.p8 file Apple let you download")
        try:
            key = load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("the .p8 file does not hold a readable private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the .p8 file is not an EC P-256 key (Sign in with Apple keys are ES256)")
        return v


def apple_problems(cfg: object) -> list[str]:
    """What is wrong with an ``oidc`` connector's ``preset`` / ``apple`` pair (``cfg``: its settings)."""
    preset, apple = getattr(cfg, "preset"), getattr(cfg, "apple")  # noqa: B009 - no import cycle with oidc_settings
    if preset != "apple":
        return ["the apple section is only for preset: apple"] if apple is not None else []
    out = []
    if apple is None:
        out.append("preset: apple needs an apple section (team_id, key_id, private_key_file)")
    if getattr(cfg, "client_secret") is not None:  # noqa: B009
        out.append("preset: apple mints its client secret from apple.private_key_file: remove client_secret")
    if getattr(cfg, "token_endpoint_auth_method") == "none":  # noqa: B009
        out.append("preset: apple authenticates at Apple's token endpoint: token_endpoint_auth_method cannot be none")
    return out


def apple_defaults(given: set[str]) -> dict[str, object]:
    """The options ``preset: apple`` sets unless the connector's config gives them (``given``)."""
    defaults: dict[str, object] = {
        "scopes": list(APPLE_SCOPES),
        "token_endpoint_auth_method": "client_secret_post",  # noqa: S106 - a method name
        # Apple lets a refresh token be checked about once a day: more often is throttled.
        "reverify_interval": 86400,
    }
    return {k: v for k, v in defaults.items() if k not in given}


# ``{name}`` in a template (``{name}``, ``{name|lower}``), or ``name`` as a match condition's claim path.
_USES_NAME = re.compile(r'\{\s*name\s*[|}]|"claim":\s*"name"')


def apple_name_warnings(connectors: Sequence[Any], rules: Sequence[Any], apps: Sequence[Any]) -> list[str]:
    """``check-config`` / startup warnings: a rule (its match, session name, tags or policy) or an app's session
    policy that uses the identity's ``name`` and applies to an Apple connector's users — Apple's name is the
    unsigned ``user`` form field of the first sign-in, typed by the user (bridge/upstream/apple.py)."""
    apple = {c.id for c in connectors if getattr(c, "preset", None) == "apple"}
    if not apple:
        return []
    why = ("Apple's name is not signed: the user types it at the first sign-in and the browser posts it, so "
           "anyone can choose theirs. Use {email} or {subject}, or limit the rule with connectors:.")
    out = [f"mapping.rules[{i}] ({r.name}): uses the identity's name and applies to the Apple connector(s) "
           f"{', '.join(sorted(apple & set(r.connectors or apple)))}: {why}" for i, r in enumerate(rules)
           if (r.connectors is None or apple & set(r.connectors)) and _USES_NAME.search(r.model_dump_json())]
    out += [f"apps[{i}] ({a.label}).session_policy: uses {{name}} for users of the Apple connector(s) "
            f"{', '.join(sorted(apple & set(a.idp_audiences)))}: {why}" for i, a in enumerate(apps)
            if apple & set(a.idp_audiences) and _USES_NAME.search(json.dumps(a.session_policy))]
    return out
