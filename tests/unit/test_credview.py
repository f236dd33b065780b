"""The credentials page's sealed records (bridge/core/credview.py): bound to the session, opaque ids, no
secret readable from the store alone; and the ``support`` setting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.config import settings_from_dict
from bridge.core import credview
from bridge.domain.identity import Credentials
from bridge.storage.memory import MemoryStore

NOW = 1_800_000_000.0
DEV = [{"id": "dev", "type": "dev", "users": [{"subject": "a"}]}]


def memory_store() -> MemoryStore:
    return MemoryStore(prefix="t:", clock=lambda: NOW)


def held(store: MemoryStore) -> dict[str, tuple[bytes, float | None]]:
    """What the store holds (key → (value, expiry)): what someone with a copy of Redis would see."""
    return {k: v for k, v in store._data.items() if k.startswith("t:credview:")}  # noqa: SLF001


def creds(expires: float = NOW + 3600) -> Credentials:
    return Credentials(access_key_id="ASIAEXAMPLE", secret_access_key="s3cr3t-key", session_token="tok3n",
                       expiration=datetime.fromtimestamp(expires, UTC),
                       assumed_role_arn="arn:aws:sts::1:assumed-role/A/a", role_arn="arn:aws:iam::1:role/A",
                       session_name="a", region="us-east-1")


def test_kept_for_the_session_that_asked_only() -> None:
    store = memory_store()
    view_id = credview.keep(store, "session-one", "g1", 3600, creds(), session_expires_at=NOW + 43200, at=NOW)
    assert credview.VIEW_ID_RE.match(view_id)
    view = credview.load(store, "session-one", view_id)
    assert view is not None and view.grant_id == "g1" and view.duration == 3600
    assert view.creds.secret_access_key == "s3cr3t-key" and view.creds.expiration == creds().expiration
    assert credview.load(store, "session-two", view_id) is None  # another session: nothing
    assert credview.load(store, "session-one", "x" * 22) is None
    assert credview.load(store, "session-one", "../../etc") is None
    # What the store holds is sealed: neither the secret nor the view id is in it.
    (key, (raw, until)), = held(store).items()
    assert view_id not in key and b"s3cr3t" not in raw and b"ASIAEXAMPLE" not in raw
    # Kept until the credentials expire plus the grace, never past the session.
    assert until == NOW + 3600 + credview.GRACE
    credview.keep(store, "session-one", "g1", 3600, creds(), session_expires_at=NOW + 600, at=NOW)
    assert NOW + 600 in [u for _, u in held(store).values()]


def test_a_tampered_record_is_a_miss() -> None:
    store = memory_store()
    view_id = credview.keep(store, "s", "g", 900, creds(), session_expires_at=NOW + 43200, at=NOW)
    (key, (raw, until)), = held(store).items()
    store._data[key] = (raw[:-4] + bytes(b ^ 1 for b in raw[-4:]), until)  # noqa: SLF001
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
    from bridge.domain.errors import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        settings_from_dict({"base_url": "https://bridge.example.com", "support": value,
                            "connectors": DEV, "insecure_dev_login": True})
