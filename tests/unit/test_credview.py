"""The credentials page's sealed records (bridge/credview.py): bound to the session, opaque ids, no
secret readable from the store alone; and the ``support`` setting."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge import credview
from bridge.config import settings_from_dict
from bridge.identity import Credentials
from bridge.store import Store

NOW = 1_800_000_000.0
DEV = [{"id": "dev", "type": "dev", "users": [{"subject": "a"}]}]


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttl: dict[str, int] = {}

    def get(self, k: str) -> Any:
        return self.data.get(k)

    def set(self, k: str, v: Any, ex: int | None = None) -> None:
        self.data[k] = v
        self.ttl[k] = ex or 0


def creds(expires: float = NOW + 3600) -> Credentials:
    return Credentials(access_key_id="ASIAEXAMPLE", secret_access_key="s3cr3t-key", session_token="tok3n",
                       expiration=datetime.fromtimestamp(expires, UTC),
                       assumed_role_arn="arn:aws:sts::1:assumed-role/A/a", role_arn="arn:aws:iam::1:role/A",
                       session_name="a", region="us-east-1")


def test_kept_for_the_session_that_asked_only() -> None:
    r = FakeRedis()
    store = Store(r, "t:")  # type: ignore[arg-type]
    view_id = credview.keep(store, "session-one", "g1", 3600, creds(), session_expires_at=NOW + 43200, at=NOW)
    assert credview.VIEW_ID_RE.match(view_id)
    view = credview.load(store, "session-one", view_id)
    assert view is not None and view.grant_id == "g1" and view.duration == 3600
    assert view.creds.secret_access_key == "s3cr3t-key" and view.creds.expiration == creds().expiration
    assert credview.load(store, "session-two", view_id) is None  # another session: nothing
    assert credview.load(store, "session-one", "x" * 22) is None
    assert credview.load(store, "session-one", "../../etc") is None
    # What Redis holds is sealed: neither the secret nor the view id is in it.
    (key, raw), = r.data.items()
    assert view_id not in key and b"s3cr3t" not in raw.encode() and "ASIAEXAMPLE" not in raw
    # Kept until the credentials expire plus the grace, never past the session.
    assert r.ttl[key] == 3600 + credview.GRACE
    credview.keep(store, "session-one", "g1", 3600, creds(), session_expires_at=NOW + 600, at=NOW)
    assert 600 in r.ttl.values()


def test_a_tampered_record_is_a_miss() -> None:
    r = FakeRedis()
    store = Store(r, "t:")  # type: ignore[arg-type]
    view_id = credview.keep(store, "s", "g", 900, creds(), session_expires_at=NOW + 43200, at=NOW)
    (key, raw), = r.data.items()
    doc = json.loads(raw)
    doc["v"] = doc["v"][:-4] + ("AAAA" if not doc["v"].endswith("AAAA") else "BBBB")
    r.data[key] = json.dumps(doc)
    assert credview.load(store, "s", view_id) is None


@pytest.mark.parametrize(("value", "href"), [("", ""), ("help@example.com", "mailto:help@example.com"),
                                             ("https://help.example.com/aws", "https://help.example.com/aws"),
                                             ("mailto:aws@example.com", "mailto:aws@example.com")])
def test_support_setting(value: str, href: str) -> None:
    s = settings_from_dict({"base_url": "https://bridge.example.com", "support": value,
                            "connectors": DEV, "insecure_dev_login": True})
    assert s.support_href == href


@pytest.mark.parametrize("value", ["javascript:alert(1)", "not a contact", "ftp://x.example.com"])
def test_support_setting_refuses_other_things(value: str) -> None:
    from bridge.errors import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        settings_from_dict({"base_url": "https://bridge.example.com", "support": value,
                            "connectors": DEV, "insecure_dev_login": True})
