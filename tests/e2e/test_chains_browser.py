"""What a person sees of a role reached through a hub (docs/many-accounts.md), in a real browser: the
portal row says which hub and that AWS allows it one hour at most, its duration chooser stops there,
and the credentials page it opens says so too, with working credentials of the target account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_portal_ui import sign_in
from tests.integration.test_chains import DEV_ARN, HUB_ARN, SECRET, VENDOR_ARN, chain_mapping

pytestmark = pytest.mark.integration


def test_a_chained_role_on_the_portal_and_its_credentials_page(page: Any, live_bridge: Any, make_settings: Any,
                                                               strict_sts_peer: Any, tmp_path: Path) -> None:
    secret = tmp_path / "vendor-external-id"
    secret.write_text(SECRET)
    strict_sts_peer.trust(DEV_ARN, HUB_ARN)
    strict_sts_peer.trust(VENDOR_ARN, HUB_ARN, external_id=SECRET)
    base = live_bridge(make_settings(mapping=chain_mapping(secret)))
    sign_in(page, base)
    row = page.locator("li.role", has_text="Developer")
    assert row.locator(".via").inner_text() == "via hub/BridgeHub · 1 h max"
    options = row.locator("select.dur option").all_inner_texts()
    assert options == ["15 min", "30 min", "1 h"]  # nothing longer is offered (the catalog says 43200)
    admin = page.locator("li.role", has_text="Admin")
    assert admin.locator(".via").count() == 0  # a direct role says nothing of hubs
    with page.context.expect_page() as opened:
        row.locator("a.k").click()
    creds = opened.value
    creds.wait_for_selector("#assumed-arn")
    assert creds.text_content("#assumed-arn") == "arn:aws:sts::210987654321:assumed-role/Developer/alice@example.com"
    assert "Reached through the hub hub/BridgeHub (role chaining): AWS gives such sessions at most 1 hour" in \
        creds.inner_text("#chain-note")
    vendor = page.locator("li.role", has_text="VendorAudit")
    assert vendor.locator(".via").inner_text() == "via hub/BridgeHub · 1 h max"
    page.goto(f"{base}/go/vendor/VendorAudit?auto=0")
    note = page.inner_text("#chain-note")
    assert "the console session lasts as long as the credentials" in note and "ExternalId" in note
    assert SECRET not in page.content()
