"""The ``dev`` connector: a form to pick a test user. Demos and local testing only.

Refused by config validation unless ``insecure_dev_login: true``, and warned about at startup.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from bridge.domain.errors import LoginError
from bridge.domain.identity import Identity
from bridge.upstream.base import LoginStart, PendingLogin
from bridge.upstream.dev_settings import DevConnectorSettings, DevUser


class DevConnector:
    type = "dev"
    allows_unsolicited = False

    def __init__(self, cfg: DevConnectorSettings, *, base_url: str) -> None:
        self.cfg = cfg
        self.policy = cfg.policy()
        self.id = cfg.id
        self.name = cfg.name or "Dev login (insecure)"
        self.base_url = base_url
        self.users: dict[str, DevUser] = {u.subject: u for u in cfg.users}

    def start_login(self, pending: PendingLogin, redirect_uri: str) -> LoginStart:
        return LoginStart(f"{self.base_url}/dev-login/{self.id}?{urlencode({'state': pending.state})}")

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str],
                     redirect_uri: str) -> Identity:
        user = self.users.get(params.get("user", ""))
        if user is None:
            raise LoginError("dev login: unknown user")
        return Identity(connector_id=self.id, subject=user.subject, issuer=f"{self.base_url}/dev/{self.id}",
                        email=user.email, name=user.name, groups=tuple(user.groups), claims=dict(user.claims),
                        mfa=user.mfa, amr=("mfa",) if user.mfa else ("pwd",))
