"""The fields of an OAuth token request's ``application/x-www-form-urlencoded`` body, read without werkzeug's
form parser: ``POST /oauth/token`` is a hot path (a cached token exchange), and building werkzeug's stream
parser and ``MultiDict`` for ten short fields cost more than the exchange's own checks.

The result is exactly what ``request.form`` holds (``urllib.parse.parse_qsl`` with blank values kept and
werkzeug's error handler for bad percent-escapes, the body decoded as strict UTF-8 — a body that is not gives
no fields, as werkzeug's silent parser does): name → every value sent, in order. Other content types (a
multipart body) go to werkzeug as before. The body is read within ``MAX_CONTENT_LENGTH`` (werkzeug's
limited stream: a larger one is a 413).

Short pairs that need decoding (``grant_type=urn%3Aietf%3A…``, the same few on every request) are decoded
once per worker (at most ``_KEEP`` pairs of at most ``_SHORT`` bytes: never a subject token, which is longer).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Request

URLENCODED = "application/x-www-form-urlencoded"
_SHORT = 256  # bytes: a pair longer than this (a token) is decoded each time, never kept
_KEEP = 512
_decoded: dict[str, list[tuple[str, str]]] = {}


def form_fields(req: Request) -> dict[str, list[str]]:
    """``req``'s form as name → values (see the module's docstring); the body stays readable (cached)."""
    if req.mimetype != URLENCODED:
        form = req.form
        return {k: form.getlist(k) for k in form}
    try:
        text = req.get_data(cache=True).decode()
    except UnicodeDecodeError:
        return {}
    fields: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        if "%" in pair or "+" in pair:
            for name, value in _decode(pair):
                fields.setdefault(name, []).append(value)
            continue
        name, _, value = pair.partition("=")  # no escape: what parse_qsl gives, without its work
        fields.setdefault(name, []).append(value)
    return fields


def _decode(pair: str) -> list[tuple[str, str]]:
    if len(pair) > _SHORT:
        return parse_qsl(pair, keep_blank_values=True, errors="werkzeug.url_quote")
    hit = _decoded.get(pair)
    if hit is None:
        hit = parse_qsl(pair, keep_blank_values=True, errors="werkzeug.url_quote")
        if len(_decoded) >= _KEEP:
            _decoded.clear()
        _decoded[pair] = hit
    return hit
