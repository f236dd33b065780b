"""The per-grant console method (`console:` on a grant) and the Grant round trip the portal relies on."""

from __future__ import annotations

import pytest

from bridge.domain.errors import ConfigError
from bridge.domain.identity import Grant
from bridge.mapping import load_mapping
from tests.unit.test_mapping import ACCOUNT, AUD, ident


def _grants(grant: dict[str, object]) -> list[Grant]:
    from bridge.mapping import evaluate

    m = load_mapping({"rules": [{"name": "r", "match": {"group": "aws-admins"}, "grants": [grant]}]})
    return evaluate(m, ident(), default_audience=AUD)


def test_console_method_per_grant() -> None:
    (gr,) = _grants({"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin", "console": "saml_post"})
    assert gr.console == "saml_post"
    (gr,) = _grants({"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin"})
    assert gr.console == ""  # aws.console_method decides


def test_console_method_is_checked() -> None:
    with pytest.raises((ConfigError, ValueError)):
        _grants({"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin", "console": "iframe"})


def test_grant_json_round_trip_keeps_every_field_and_defaults() -> None:
    (gr,) = _grants({"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Admin", "console": "saml_post",
                     "tags": {"Team": "x"}, "transitive_tags": ["Team"]})
    back = Grant.from_json(gr.to_json())
    assert back == gr and back.id == gr.id and back.tags == {"Team": "x"} and back.transitive_keys == ("Team",)
    minimal = Grant.from_json({"role_arn": gr.role_arn, "account_id": ACCOUNT, "label": "A", "session_name": "s",
                               "via": "r", "unknown_future_field": 1})
    assert minimal.max_duration == 3600 and minimal.path == "jwt" and minimal.tags == {} and minimal.console == ""
    with pytest.raises(TypeError):
        Grant.from_json({"role_arn": gr.role_arn})


def test_portal_rows_escape_and_link() -> None:
    from bridge.domain.present import go_path
    from bridge.web.portal_html import rows_html

    gr = Grant(role_arn=f"arn:aws:iam::{ACCOUNT}:role/ops/Deploy", account_id=ACCOUNT, label='<b>"x"</b>',
               session_name="s", via="r", account_alias="a b/c", max_duration=7200)
    assert go_path(gr) == "/go/a%20b%2Fc/Deploy"
    html = str(rows_html([gr], {gr.id}))
    assert '&lt;b&gt;&#x27;' not in html and "&lt;b&gt;&quot;x&quot;&lt;/b&gt;" in html and "<b>" not in html
    assert f"data-g={gr.id} data-m=7200 data-f>" in html and 'href="/go/a%20b%2Fc/Deploy"' in html
