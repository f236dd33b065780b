"""Continuous evaluation, connector side: settings, the result types, the grant kept off the identity's JSON."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.config import ConfigError, OidcConnectorSettings, SamlConnectorSettings, settings_from_dict
from bridge.domain.identity import Identity
from bridge.upstream.base import (
    Reverifier,
    ReverifyExpired,
    ReverifyOk,
    ReverifyRevoked,
    ReverifyUnreachable,
)
from bridge.upstream.oidc import OidcConnector

OIDC: dict[str, Any] = {"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "bridge",
                        "client_secret": "s"}
SAML: dict[str, Any] = {"id": "adfs", "type": "saml", "idp_entity_id": "https://idp", "sso_url": "https://idp/sso",
                        "idp_cert_files": ["idp.crt"]}


def oidc(**kw: Any) -> OidcConnectorSettings:
    return OidcConnectorSettings.model_validate({**OIDC, **kw})


def test_oidc_defaults() -> None:
    s = oidc()
    assert (s.reverify_interval, s.reverify_grace, s.reverify_unreachable) == (900, 3600, "fail_closed")
    assert (s.request_offline_access, s.offline_access_consent) == (False, True)
    assert s.request_scopes() == s.scopes


@pytest.mark.parametrize("kw, problem", [
    ({"reverify_interval": 30}, "at least 60"),
    ({"reverify_interval": -1}, "greater than or equal"),
    ({"reverify_interval": 86401}, "less than or equal"),
    ({"reverify_grace": -5}, "greater than or equal"),
    ({"reverify_unreachable": "ignore"}, "fail_closed"),
    ({"reverify_unreachable": "fail_open"}, "`reverify_unreachable: fail_open` is now spelled "
                                             "`reverify_unreachable: insecure_fail_open`"),
    ({"request_offline_access": True, "reverify_interval": 0}, "needs reverify_interval"),
])
def test_oidc_reverify_settings_are_validated(kw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        oidc(**kw)


def test_insecure_fail_open_is_taken_and_warned_at_startup() -> None:
    s = oidc(reverify_unreachable="insecure_fail_open")
    assert s.policy().reverify_fail_closed is False
    assert [w for w in s.warnings() if "insecure_fail_open keeps a user's roles" in w]
    assert not [w for w in oidc().warnings() if "insecure_fail_open" in w]
    from bridge.upstream.github_settings import GithubConnectorSettings

    with pytest.raises(ValidationError, match="now spelled `reverify_unreachable: insecure_fail_open`"):
        GithubConnectorSettings.model_validate({"id": "gh", "type": "github", "client_id": "c", "client_secret": "s",
                                                "orgs": ["acme"], "reverify_unreachable": "fail_open"})
    gh = GithubConnectorSettings.model_validate({"id": "gh", "type": "github", "client_id": "c", "client_secret": "s",
                                                 "orgs": ["acme"], "reverify_unreachable": "insecure_fail_open"})
    assert [w for w in gh.warnings() if "insecure_fail_open keeps a user's roles" in w]


def test_reverify_off_and_offline_access_scope() -> None:
    assert oidc(reverify_interval=0).reverify_interval == 0
    s = oidc(request_offline_access=True)
    assert s.request_scopes() == [*s.scopes, "offline_access"]
    s = oidc(request_offline_access=True, scopes=["openid", "offline_access"])
    assert s.request_scopes() == ["openid", "offline_access"]  # not twice


def test_saml_max_session(tmp_path: Any) -> None:
    assert SamlConnectorSettings.model_validate(SAML).max_session is None
    assert SamlConnectorSettings.model_validate({**SAML, "max_session": 3600}).max_session == 3600
    with pytest.raises(ValidationError):
        SamlConnectorSettings.model_validate({**SAML, "max_session": 60})
    (tmp_path / "idp.crt").write_text("x")
    raw = {"base_url": "https://bridge.example.com", "session": {"absolute_timeout": 7200},
           "connectors": [{**copy.deepcopy(SAML), "idp_cert_files": [str(tmp_path / "idp.crt")], "max_session": 9000}]}
    with pytest.raises(ConfigError, match=r"max_session: longer than session.absolute_timeout"):
        settings_from_dict(raw)
    raw["connectors"][0]["max_session"] = 3600
    assert settings_from_dict(raw).connectors[0].max_session == 3600  # type: ignore[union-attr]


def test_upstream_grant_is_never_serialised_nor_shown() -> None:
    grant = {"v": 1, "refresh_token": "RT-secret", "nonce": "n"}
    i = Identity(connector_id="corp", subject="00ualice", issuer="https://idp", groups=("g",), upstream=grant)
    assert "upstream" not in i.to_json() and "RT-secret" not in str(i.to_json())
    assert "RT-secret" not in repr(i)
    assert i == Identity(connector_id="corp", subject="00ualice", issuer="https://idp", groups=("g",))
    ok = ReverifyOk(i, grant)
    assert "RT-secret" not in repr(ok) and ok.identity is i and ok.grant is grant


def test_result_types_are_distinct() -> None:
    results = [ReverifyOk(None, {}), ReverifyRevoked("r"), ReverifyUnreachable("u"), ReverifyExpired("e")]
    assert len({type(r) for r in results}) == 4
    assert not isinstance(ReverifyRevoked("x"), ReverifyUnreachable)
    assert ReverifyRevoked("x") != ReverifyUnreachable("x")


def test_oidc_connector_is_a_reverifier_and_rejects_unknown_grants() -> None:
    conn = OidcConnector(oidc(issuer="http://127.0.0.1:9"))  # never reached: the shape is checked first
    assert isinstance(conn, Reverifier)
    for grant in ({}, {"v": 2, "sub": "s", "nonce": "n"}, {"v": 1, "sub": 5, "nonce": "n"}):
        assert isinstance(conn.reverify(grant), ReverifyExpired)
