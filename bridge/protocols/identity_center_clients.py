"""IAM Identity Center's ``RegisterClient``, and the clients it registers (bridge/protocols/identity_center.py serves
the rest of the protocol with them).

RegisterClient needs no sign-in, so what it can make the bridge keep is bounded (docs/identity-center.md):
the web layer rate-limits it per address (``rate_limits.sso_register_per_minute``); here, live
registrations are capped per address (``cli.sso_clients_per_address``; an IPv6 address counts as its /64)
and in all (``cli.sso_clients_max``), and one that is never used for a token ends after
``cli.sso_client_unused_lifetime`` (1 h) instead of ``cli.sso_client_lifetime`` (90 days). Its answer
still says the whole lifetime: SDKs refresh tokens only while the registration they cached lives.

Public clients only; the secret is kept hashed; ``authorization_code`` clients register loopback redirect
URIs only (RFC 8252 §7.3, exactly as ``loopback_problem`` says) and must use PKCE S256.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from bridge.config import CliSettings
from bridge.protocols.identity_center_protocol import (
    DEFAULT_GRANT_TYPES,
    GRANT_TYPES,
    SCOPES,
    SsoError,
    address_key,
    body_str,
    body_str_list,
    loopback_problem,
)
from bridge.storage import SsoClient, SsoClientStore, hash_id

# What an SDK user is told when a registration is unknown: the AWS CLI keeps using the one it cached.
AGAIN = ("register again (the AWS CLI keeps its registration in ~/.aws/sso/cache: remove the files there, then "
         "run `aws sso login` again)")


class SsoClients:
    """Registration (bounded), and authentication of registered clients."""

    def __init__(self, cfg: CliSettings, store: SsoClientStore, clock: Callable[[], float],
                 on_register: Callable[[str], None] = lambda outcome: None) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.on_register = on_register  # the outcome (registered | address_full | total_full): the metrics

    def register(self, body: Mapping[str, Any], *, client_ip: str, endpoint: str) -> dict[str, Any]:
        name = body_str(body, "clientName", limit=256)
        if body_str(body, "clientType", limit=64) != "public":
            raise SsoError.oidc("invalid_client_metadata", "only public clients are served")
        grants = body_str_list(body, "grantTypes")
        grant_types = tuple(dict.fromkeys(grants)) if grants else DEFAULT_GRANT_TYPES
        if unknown := [g for g in grant_types if g not in GRANT_TYPES]:
            raise SsoError("UnsupportedGrantTypeException", 400,
                           {"error": "unsupported_grant_type", "error_description": f"unsupported: {unknown[0][:64]}"})
        scopes = body_str_list(body, "scopes") or []
        if unknown := [s for s in scopes if s not in SCOPES]:
            raise SsoError.oidc("invalid_scope", f"unknown scope {unknown[0][:64]!r}; this bridge serves "
                                f"{', '.join(sorted(SCOPES))}")
        redirects = body_str_list(body, "redirectUris") or []
        for i, uri in enumerate(redirects):
            if (problem := loopback_problem(uri)) is not None:  # the URI itself is not echoed: it may be anything
                raise SsoError.oidc("invalid_redirect_uri", f"redirectUris[{i}] is not a loopback redirect URI "
                                    f"(http://127.0.0.1[:port]/path, [::1] or localhost; RFC 8252): {problem}")
        if "authorization_code" in grant_types and not redirects:
            raise SsoError.oidc("invalid_redirect_uri", "the authorization_code grant needs redirectUris")
        cfg = self.cfg
        now = int(self.clock())
        # The approval page shows the client id: a readable prefix from the name, then randomness.
        prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:48] or "client"
        client_id = f"{prefix}.{secrets.token_urlsafe(24)}"
        secret = secrets.token_urlsafe(48)
        client = SsoClient(client_id=client_id, secret_hash=hash_id(secret), name=name, issued_at=now,
                           expires_at=now + cfg.sso_client_lifetime, grant_types=grant_types,
                           redirect_uris=tuple(redirects), scopes=tuple(scopes),
                           address=hash_id(address_key(client_ip))[:32], use_by=now + cfg.sso_client_unused_lifetime)
        full = self.store.add_sso_client(client, cfg.sso_client_unused_lifetime,
                                         per_address=cfg.sso_clients_per_address, total=cfg.sso_clients_max)
        self.on_register(f"{full}_full" if full else "registered")
        if full:
            raise self._full(full)
        out: dict[str, Any] = {"clientId": client_id, "clientSecret": secret, "clientIdIssuedAt": now,
                               "clientSecretExpiresAt": client.expires_at}
        if "authorization_code" in grant_types:
            out.update(authorizationEndpoint=f"{endpoint}/authorize", tokenEndpoint=f"{endpoint}/token")
        return out

    def _full(self, which: str) -> SsoError:
        cfg = self.cfg
        minutes = max(1, cfg.sso_client_unused_lifetime // 60)
        unused = f"one never used to sign in ends {minutes} minutes after it was made"
        if which == "address":
            return SsoError.oidc("invalid_request", f"the bridge keeps at most {cfg.sso_clients_per_address} client "
                                 f"registrations made from your address (cli.sso_clients_per_address); {unused}. "
                                 "Use the registration you have, try again later, or ask your administrator")
        return SsoError.oidc("invalid_request", f"the bridge keeps at most {cfg.sso_clients_max} client registrations "
                             f"in all (cli.sso_clients_max) and has them; {unused}. Try again later, or ask your "
                             "administrator")

    def authenticate(self, client_id: str, client_secret: str) -> SsoClient:
        """The registered client, authenticated by its secret; InvalidClientException otherwise."""
        c = self.store.get_sso_client(client_id) if client_id and len(client_id) <= 128 else None
        if c is None or not hmac.compare_digest(c.secret_hash, hash_id(client_secret)):
            raise SsoError.oidc("invalid_client", f"unknown client or wrong client secret; {AGAIN}")
        now = self.clock()
        if c.use_by is not None and c.use_by <= now:
            raise SsoError.oidc("invalid_client", f"this client registration was never used to sign in and has "
                                f"ended; {AGAIN}")
        if c.expires_at <= now:
            raise SsoError.oidc("invalid_client", f"the client registration expired; {AGAIN}")
        return c

    def used(self, client: SsoClient) -> None:
        """``client`` got its first token: from now on it lives its whole lifetime."""
        if client.use_by is not None:
            self.store.put_sso_client(replace(client, use_by=None), max(1, client.expires_at - int(self.clock())))
