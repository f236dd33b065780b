"""Identity hygiene: one spelling of the e-mail whichever connector (or stored session) it came from,
and the OIDC connector's refusal of e-mail addresses the IdP has not verified."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bridge.config import OidcConnectorSettings
from bridge.domain.errors import EmailUnverified, LoginError
from bridge.domain.identity import Identity, identity_from_sample, normalize_email
from bridge.upstream.oidc import check_email_verified


def ident(email: str | None) -> Identity:
    return Identity(connector_id="corp", subject="s", issuer="https://idp", email=email)


@pytest.mark.parametrize(("raw", "want"), [
    ("Dave@Contractor.Example.com", "Dave@contractor.example.com"),  # local part is the mailbox owner's: kept
    ("  alice@EXAMPLE.com \n", "alice@example.com"),
    ("alice@example.com", "alice@example.com"),
    ("a@b@Example.COM", "a@b@example.com"),                             # the domain follows the last @
    ("no-at-sign", "no-at-sign"),
    ("   ", None),
    ("", None),
    (None, None),
])
def test_email_is_normalized(raw: str | None, want: str | None) -> None:
    assert normalize_email(raw) == want
    assert ident(raw).email == want


def test_normalized_email_survives_json_replace_and_samples() -> None:
    i = ident("Dave@Contractor.Example.com")
    assert Identity.from_json(i.to_json()) == i
    assert Identity.from_json({**i.to_json(), "email": "Dave@CONTRACTOR.example.com "}).email == \
        "Dave@contractor.example.com"  # sessions stored before this change come back normalized
    assert replace(i, passthrough="t").email == "Dave@contractor.example.com"
    assert identity_from_sample({"subject": "s", "email": "Dave@Contractor.Example.com"}).email == \
        "Dave@contractor.example.com"


def oidc(**kw: Any) -> OidcConnectorSettings:
    return OidcConnectorSettings(id="corp", type="oidc", issuer="https://idp.example", client_id="c", **kw)


@pytest.mark.parametrize("claims", [
    {"email": "eve@example.com", "email_verified": False},
    {"email": "eve@example.com", "email_verified": "true"},        # a string is not the boolean true
    {"email": "eve@example.com", "email_verified": 1},
    {"email": "eve@example.com", "email_verified": None},
])
def test_unverified_email_is_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(EmailUnverified) as e:
        check_email_verified(claims, oidc())
    assert isinstance(e.value, LoginError) and e.value.code == "email_unverified" and 400 <= e.value.status < 500
    assert "eve@" not in str(e.value.detail)  # the log line names the connector, not the address
    public = e.value.public()
    assert public["error"] == "email_unverified" and "verif" in public["hint"].lower()


def test_email_verified_missing_says_it_is_the_idp_not_the_user() -> None:
    """Issue 23 item 11: the IdP sends no email_verified at all: not "verify your address", but what the
    administrator sets, under its own code."""
    with pytest.raises(EmailUnverified) as e:
        check_email_verified({"email": "eve@example.com"}, oidc())
    public = e.value.public()
    assert public["error"] == "email_verified_missing" and e.value.status == 403
    assert "sends no email_verified claim" in public["message"] and "nothing to verify" in public["message"]
    assert "insecure_accept_unverified_email" in public["hint"] and "Verify your e-mail" not in public["hint"]
    assert "eve@" not in e.value.detail


@pytest.mark.parametrize("claims", [
    {"email": "alice@example.com", "email_verified": True},
    {"sub": "no-email-at-all"},                                    # nothing to trust, nothing to check
    {"email": "", "email_verified": False},
])
def test_verified_or_absent_email_passes(claims: dict[str, Any]) -> None:
    check_email_verified(claims, oidc())


def test_the_configured_email_claim_is_the_one_checked() -> None:
    with pytest.raises(EmailUnverified):
        check_email_verified({"upn": "eve@example.com"}, oidc(email_claim="upn"))
    check_email_verified({"email": "x@example.com", "upn": "eve@example.com", "email_verified": True},
                         oidc(email_claim="upn"))


def test_insecure_opt_out_accepts_unverified_email() -> None:
    cfg = oidc(insecure_accept_unverified_email=True)
    check_email_verified({"email": "eve@example.com", "email_verified": False}, cfg)
    assert oidc().insecure_accept_unverified_email is False
