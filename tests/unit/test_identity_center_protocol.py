"""The stateless pieces of IAM Identity Center's protocol (bridge/protocols/identity_center_protocol.py): which redirect
URIs are loopback URIs (what reaches the Location and Content-Security-Policy headers), JSON text checks,
and what RegisterClient counts per."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.protocols.identity_center_protocol import (
    SsoError,
    address_key,
    check_text,
    loopback_problem,
    parse_loopback,
    redirect_matches,
)
from tests.integration.test_identity_center_hardening import BAD_REDIRECTS, GOOD_REDIRECTS

# URI-ish text: mostly the characters URIs are made of, and the ones that must never get through.
uri_char = st.sampled_from(list("http:/[]1270.localhost:8:65535?&=%2F;,'\" \t\r\n#@\\~-_.é\x00\x7f*!$+"))
uri_like = st.one_of(
    st.text(uri_char, max_size=40),
    st.builds(lambda host, port, path: f"http://{host}{port}{path}",
              st.sampled_from(["127.0.0.1", "localhost", "[::1]", "LOCALHOST", "127.0.0.2", "[::1", ""]),
              st.one_of(st.just(""), st.integers(-5, 70000).map(lambda p: f":{p}"), st.text(uri_char, max_size=6)
                        .map(lambda p: f":{p}")),
              st.text(uri_char, max_size=20).map(lambda p: f"/{p}")),
)


@settings(database=None)  # examples: the profile (tests/conftest.py)
@given(uri_like)
def test_a_uri_is_accepted_exactly_when_it_parses_and_rebuilds_to_itself(uri: str) -> None:
    problem, parsed = loopback_problem(uri), parse_loopback(uri)
    assert (problem is None) == (parsed is not None), (uri, problem, parsed)
    if parsed is not None:
        assert str(parsed) == uri
        assert not set(parsed.origin) & set(";, '\"\t\r\n#@\\") and parsed.origin.startswith("http://")
        assert parsed.port is None or 1 <= parsed.port <= 65535


def test_the_reviewed_uris() -> None:
    assert all(loopback_problem(u) for u in BAD_REDIRECTS)
    assert [str(parse_loopback(u)) for u in GOOD_REDIRECTS] == GOOD_REDIRECTS
    assert loopback_problem("http://127.0.0.1:1;script-src 'unsafe-inline' *;/cb") == (
        "it holds a space, a control character or a character outside ASCII")
    assert loopback_problem("http://127.0.0.1:99999/cb") == "the port must be a number from 1 to 65535, or none"
    assert loopback_problem("http://127.0.0.1/a;b") == "it holds ';'"


def test_redirects_match_whatever_the_port_and_never_a_bad_registration() -> None:
    got = redirect_matches(["http://127.0.0.1/oauth/callback"], "http://127.0.0.1:4711/oauth/callback")
    assert got is not None and got.origin == "http://127.0.0.1:4711"
    assert redirect_matches(["http://127.0.0.1/oauth/callback"], "http://localhost:4711/oauth/callback") is None
    assert redirect_matches(["http://127.0.0.1/oauth/callback"], "http://127.0.0.1:4711/other") is None
    evil = "http://127.0.0.1:1;script-src */cb"  # stored by an earlier version: matches nothing, not even itself
    assert redirect_matches([evil], evil) is None


def test_json_strings_must_be_unicode_text() -> None:
    check_text({"clientName": "Zoë 𝟗", "scopes": ["sso:account:access"], "n": {"deep": [1, None, "x"]}})
    for body, named in (({"clientId": "\ud800"}, "clientId"), ({"x": [{"y": ["\udfff"]}]}, "x"),
                        ({"\udc00": "v"}, "a field name"), ({"o": {"\ud800": 1}}, "o")):
        with pytest.raises(SsoError) as e:
            check_text(body)
        assert e.value.type == "InvalidRequestException" and e.value.body["error_description"].startswith(named)


def test_registrations_are_counted_per_ipv4_address_and_per_ipv6_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::5") != address_key("2001:db8:1:2::5")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("") == ""
