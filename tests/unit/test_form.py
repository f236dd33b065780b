"""``form_fields`` (bridge/web/form.py): the token endpoint's form, read fast, is exactly werkzeug's
``request.form``."""

from __future__ import annotations

import pytest
from flask import Flask, Request
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.test import EnvironBuilder

from bridge.web import form as form_module
from bridge.web.form import form_fields

APP = Flask(__name__)
APP.config["MAX_CONTENT_LENGTH"] = 4096


def _request(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> Request:
    env = EnvironBuilder(method="POST", data=body, content_type=content_type).get_environ()
    return APP.request_class(env)


def _werkzeug(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> dict[str, list[str]]:
    form = _request(body, content_type).form
    return {k: form.getlist(k) for k in form}


CASES = [
    b"",
    b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&client_id=photos",
    b"a=1&a=2&b=&c",  # repeated, blank, no '='
    b"&&a=1&&",  # empty pairs
    b"a=x+y&b=%2B&c=%20",  # '+' is a space, an escaped '+' is not
    b"na+me=v&n%61me=w",  # names are decoded too
    b"a=%zz&b=%C3%A9&c=%FF",  # a bad escape kept, UTF-8 decoded, a lone byte kept escaped (werkzeug's handler)
    b"a=1;b=2",  # ';' is no separator
    b"a==b=c",  # only the first '=' splits
    b"\xff=1",  # not UTF-8: no fields, as werkzeug's silent parser
    b"t=" + b"e" * 300 + b"%2E",  # a long pair with an escape: decoded, not kept
]


@pytest.mark.parametrize("body", CASES)
def test_the_same_fields_as_werkzeug(body: bytes) -> None:
    assert form_fields(_request(body)) == _werkzeug(body)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=0, max_size=12), st.text(min_size=0, max_size=30)), max_size=6),
       st.sampled_from(["&", "&&"]))
def test_any_encoded_form_reads_as_werkzeug_reads_it(pairs: list[tuple[str, str]], sep: str) -> None:
    from urllib.parse import quote_plus

    body = sep.join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()
    assert form_fields(_request(body)) == _werkzeug(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_read_as_werkzeug_reads_them(body: bytes) -> None:
    assert form_fields(_request(body)) == _werkzeug(body)


def test_a_multipart_body_goes_to_werkzeug() -> None:
    env = EnvironBuilder(method="POST", data={"grant_type": "x", "client_id": "photos"}).get_environ()
    assert form_fields(APP.request_class(env)) == {"grant_type": ["x"], "client_id": ["photos"]}


def test_a_body_over_the_limit_is_a_413_not_read() -> None:
    with APP.app_context():  # MAX_CONTENT_LENGTH is the app's
        assert form_fields(_request(b"a=" + b"x" * 4000)) == {"a": ["x" * 4000]}
        with pytest.raises(RequestEntityTooLarge):
            form_fields(_request(b"a=" + b"x" * 5000))


def test_a_long_pair_is_never_kept() -> None:
    form_module._decoded.clear()
    token = "eyJ" + "a" * 900 + "%2E"
    assert form_fields(_request(f"subject_token={token}&grant_type=urn%3Ax".encode())) == {
        "subject_token": ["eyJ" + "a" * 900 + "."], "grant_type": ["urn:x"]}
    assert list(form_module._decoded) == ["grant_type=urn%3Ax"]  # the short constant only, never the token


def test_the_kept_pairs_are_bounded() -> None:
    form_module._decoded.clear()
    for i in range(form_module._KEEP + 10):
        assert form_fields(_request(f"k=%41{i}".encode())) == {"k": [f"A{i}"]}
    assert len(form_module._decoded) <= form_module._KEEP


def test_the_body_stays_readable_after() -> None:
    req = _request(b"a=%41")
    assert form_fields(req) == {"a": ["A"]}
    assert req.form.getlist("a") == ["A"]  # the device-code grant's path reads request.form after the dispatch
