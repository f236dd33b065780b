"""What a person reads on *Why these roles?* after signing in through an IdP that speaks LDAP (issue 23):
the pysaml2 IdP's ``lola`` sends mail / memberOf, the connector reads the default email / groups."""

from __future__ import annotations

import pytest

from tests.conftest import ACCOUNT, SAML_CONNECTOR
from tests.e2e.conftest import SHOTS

pytestmark = pytest.mark.integration


def test_why_page_names_the_attributes_the_idp_sent_instead(page, live_bridge, make_settings, saml_idp) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    rules = [{"name": "admins", "match": {"group": "aws-admins"},
              "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin", "label": "Administrator"}]}]
    base = live_bridge(make_settings(connectors=[{"id": SAML_CONNECTOR, "type": "saml", "name": "Campus login",
                                                  "metadata_url": f"{saml_idp.url}/metadata"}],
                                     mapping={"rules": rules}))
    page.goto(f"{base}/")
    page.click(f"#idp-{SAML_CONNECTOR}")
    page.fill("#username", "lola")
    page.fill("#password", "lola-pw")
    with page.expect_navigation(url=f"{base}/portal"):
        page.click("#submit")
    page.goto(f"{base}/portal/why")
    section = page.inner_text("#why-idp-warnings")
    page.screenshot(path=str(SHOTS / "why-idp-warnings.png"), full_page=True)
    assert "What your identity provider sent looks misconfigured" in section
    assert "but it has `mail`: set email_attribute: mail (or attribute_preset: ldap)." in section
    assert "but it has `memberOf`: set groups_attribute: memberOf (or attribute_preset: ldap)." in section
    summary = page.inner_text("#why-summary")
    assert "No rule gives you a role" in summary and "looks misconfigured" in summary
    assert "add you to the right group" not in summary  # the cause is the connector, not the user's groups
