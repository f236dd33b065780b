"""Helpers shared by the views: services, the server-side session, CSRF, JSON vs HTML."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Response, after_this_request, current_app, g, request

from bridge.aws.console import console_origins
from bridge.config import RateLimitSettings
from bridge.domain.errors import (
    BadRequest,
    MfaRequired,
    NotGranted,
    NotSignedIn,
    PassthroughExpired,
    RateLimited,
    StoreUnavailable,
)
from bridge.domain.identity import Grant, Identity
from bridge.domain.memo import ByObject
from bridge.protocols.identity_center_protocol import address_key
from bridge.storage import CliToken, SessionRecord, hash_id
from bridge.telemetry import audit
from bridge.telemetry.logs import correlation_id, event
from bridge.web.services import Services

# Seconds a client should wait before retrying a 503 (Redis or STS away): long enough not to
# hammer a recovering dependency, short enough that users come back soon.
RETRY_AFTER = 5
RECENT_TTL, RECENT_REFRESH = 90 * 86400, 86400  # recent roles live 90 days after the last use (to a day)
# WSGI environ key: True when the request came in on ``metrics.listen`` (set in bridge/runtime/app.py).
METRICS_LISTENER = "bridge.metrics_listener"


def services() -> Services:
    svc: Services = current_app.extensions["bridge"]
    return svc


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    accept = request.headers.get("Accept", "")
    known = _ACCEPTS.get(accept)
    if known is None:
        known = request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"
        if len(accept) <= 512:  # bounded: odd headers a client invents push the common ones out, no more
            if len(_ACCEPTS) >= 256:
                _ACCEPTS.clear()
            _ACCEPTS[accept] = known
    return known


_ACCEPTS: dict[str, bool] = {}  # Accept header -> wants JSON (the same few headers come on every request)


def session_hash() -> str | None:
    """The hash of this browser's session cookie (what the store and CLI tokens know it by), or None."""
    sid = session_id()
    return hash_id(sid) if sid and len(sid) <= 128 else None


def session_id() -> str:
    """This browser's session cookie ("" without one): ``request.cookies``' value, read once per Cookie
    header (werkzeug's cookie dict walks the whole environ for the header and parses every cookie, per request)."""
    header = request.environ.get("HTTP_COOKIE", "")
    name = services().settings.session_cookie
    known = _SESSION_COOKIES.get((name, header))
    if known is None:
        known = request.cookies.get(name, "")
        if len(header) > 1024:  # a browser with many cookies: parsed each time, not kept
            return known
        if len(_SESSION_COOKIES) >= 4096:  # bounded: one entry per browser seen lately
            _SESSION_COOKIES.clear()
        _SESSION_COOKIES[(name, header)] = known
    return known


_SESSION_COOKIES: dict[tuple[str, str], str] = {}  # (cookie name, Cookie header) -> the session cookie's value


def stored_session() -> SessionRecord | None:
    """This browser's session as stored, without the re-check with the IdP: for signing out, which
    must work even while the IdP is unreachable."""
    shash = session_hash()
    return services().sessions.get(shash) if shash else None


def current_session() -> SessionRecord | None:
    """The signed-in user's session (loaded once per request, re-checked with the IdP when due), or None."""
    if "bridge_session" not in g:
        shash = session_hash()
        use_session(services().sessions.load(shash) if shash else None)
    session: SessionRecord | None = g.bridge_session
    return session


def use_session(session: SessionRecord | None) -> None:
    """``session`` is this request's session (what ``current_session`` answers from now on)."""
    g.bridge_session = session
    if session is not None and session.correlation_id:
        correlation_id.set(str(session.correlation_id))


def audit_context(record: SessionRecord | CliToken | None = None, correlation: str | None = None) -> audit.Context:
    """Who is asking, from where (client IP after ProxyFix), for which sign-in (a session's or a CLI token's)."""
    cid = correlation or (str(record.correlation_id) if record and record.correlation_id else None)
    return audit.Context(correlation_id=cid, client_ip=request.remote_addr,
                         user_agent=request.headers.get("User-Agent"))


def require_session() -> SessionRecord:
    session = current_session()
    if session is None:
        raise NotSignedIn()
    return session


def session_identity(session: SessionRecord) -> Identity:
    return session.identity


def session_access(session: SessionRecord) -> tuple[list[Grant], list[Grant]]:
    """The session's grants and MFA-locked grants under the rules in force *now*, decided from the
    session's identity at the moment of use (a rules change takes effect at once; sessions are kept).
    ``aws_passthrough`` SAML sessions hold the roles their IdP asserted instead.
    Pass-through grants are offered only while AWS takes the upstream artifact (``passthrough_spent``)."""
    grants, locked = _access(session)
    if passthrough_spent(session):
        grants = [gr for gr in grants if gr.path != "passthrough"]
    return grants, locked


def _access(session: SessionRecord) -> tuple[list[Grant], list[Grant]]:
    if session.passthrough_grants is not None:
        return list(session.passthrough_grants), []
    seen = g.get("access_of")  # decided once per request and identity (read ahead, then for the answer)
    if seen is not None and seen[0] is session.identity:
        decided: tuple[list[Grant], list[Grant]] = seen[1]
        return decided
    access = services().access.decide(session.identity)
    g.access_of = (session.identity, (access.grants, access.locked))
    return access.grants, access.locked


def passthrough_spent(session: SessionRecord) -> bool:
    """Whether this pass-through sign-in's artifact is past what AWS takes (its time is up, or AWS would
    refuse the ID token whatever the role): its pass-through grants are not offered any more."""
    info = session.passthrough
    if info is None:
        return False
    return info.until < int(time.time()) or (info.kind == "oidc" and bool(info.not_offered))


def passthrough_left(session: SessionRecord) -> int | None:
    """Seconds left to redeem this sign-in's upstream artifact at AWS (None: not a pass-through sign-in)."""
    return None if session.passthrough is None else max(0, session.passthrough.until - int(time.time()))


def granted(session: SessionRecord, grant_id: str) -> Grant:
    """The session's grant ``grant_id``; MfaRequired / NotGranted / PassthroughExpired otherwise."""
    grants, locked = session_access(session)
    grant = next((gr for gr in grants if gr.id == grant_id), None)
    if grant is None and any(gr.id == grant_id for gr in locked):
        raise MfaRequired(f"grant {grant_id[:32]!r} requires MFA; the session has none")
    if grant is None and passthrough_spent(session) and any(gr.id == grant_id and gr.path == "passthrough"
                                                        for gr in _access(session)[0]):
        raise PassthroughExpired(f"grant {grant_id[:32]!r}: the upstream artifact is past what AWS takes")
    if grant is None:
        if requestable_grant(session, lambda gr: gr.id == grant_id) is not None:
            raise on_request(f"grant {grant_id[:32]!r} is given on request", grant_id)
        raise NotGranted(f"grant {grant_id[:32]!r} is not one of your roles",
                         message="That role is not one of the roles granted to you.")
    return grant


def requestable_grant(session: SessionRecord, match: Callable[[Grant], bool]) -> Grant | None:
    """The role the user may request now (README "Access requests") that ``match`` picks, if any."""
    if session.passthrough_grants is not None:
        return None
    return next((r.grant for r in services().access.requestable(session.identity) if match(r.grant)), None)


def on_request(detail: str, grant_id: str) -> NotGranted:
    """The 403 for a role the user does not hold but may request: with the way to request it."""
    return NotGranted(detail, code="not_granted", message="This role is given on request: you do not hold it now.",
                      hint="Request it with a reason; once an approver agrees, it is yours for the window asked.",
                      request_url=f"/requests?role={grant_id}#request-{grant_id}")


# ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() rejects or reads. Twelve
# digits are far beyond any duration and keep int() away from huge strings.
SECONDS_RE = re.compile(r"\A[0-9]{1,12}\Z")


def parse_seconds(raw: str, field: str) -> int:
    """A whole number of seconds from request input; BadRequest(invalid_duration) for anything else."""
    if not SECONDS_RE.match(raw):
        raise BadRequest(f"{field} must be a whole number of seconds", code="invalid_duration")
    return int(raw)


def form_field(name: str) -> str | None:
    """``request.form.get(name)``, without building a form parser for an empty body (the JSON API's POSTs)."""
    return None if request.content_length == 0 else request.form.get(name)


def chosen_duration(grant: Grant) -> int:
    raw = (form_field("duration") or (request.args.get("duration") if request.query_string else None)
           or str(grant.default_duration))
    return parse_seconds(raw, "duration")


def allow_console_forms(*targets: str) -> None:
    """Let this page's forms lead to the origins of ``targets`` and to the AWS console (CSP form-action).
    Browsers check form-action on every redirect after a form is sent too — /console → federation endpoint
    → console, SAML endpoint → console — so the whole chain is listed, not only the form's own action."""
    origins = ["{0.scheme}://{0.netloc}".format(urlsplit(u)) for u in targets]
    origins += console_origins(services().settings.aws.partition)
    g.form_action_extra = list(dict.fromkeys(origins))


def user_key(identity: Identity) -> str:
    """A stable, opaque per-user key for portal preferences (recent roles, favourites)."""
    return hash_id(f"{identity.connector_id}\0{identity.issuer}\0{identity.subject}")[:32]


def remember_use(identity: Identity, grant: Grant) -> None:
    """The portal lists recently used roles, the last used first: written once the answer is sent
    (off the request's path; a failure then loses one entry of a preference list, nothing else)."""
    store, user = services().store, user_key(identity)
    ahead, got = g.get("ahead", (None, None))
    if ahead is not None and ahead.recent == user and got.recent is not None and got.recent[0] == grant.id \
            and got.recent[1] > RECENT_TTL - RECENT_REFRESH:
        return  # read with the session: already the newest, and its list lives on (refreshed once a day)

    def push() -> None:
        try:
            store.push_recent(user, grant.id, ttl=RECENT_TTL)
        except StoreUnavailable:
            event("recent_roles_not_saved", logging.WARNING)

    @after_this_request
    def _after(resp: Response) -> Response:
        resp.call_on_close(push)
        return resp


def session_grants(session: SessionRecord) -> list[Grant]:
    return session_access(session)[0]


def session_passthrough() -> dict[str, str] | None:
    """The signed-in user's stored upstream artifact (aws_passthrough), or None once it expired."""
    sid = session_id()
    return services().sessions.get_passthrough(sid) if sid else None


def end_session() -> None:
    """End this browser's session: its CLI tokens, passthrough artifact, the user's cached
    credentials; clear the cookie."""
    shash = session_hash()
    if shash:
        services().sessions.end(shash, stored_session())
    g.clear_session_cookie = True


def require_confirmation(approve: bool, *, terminal: bool = True) -> None:
    """An approval (device code, Identity Center authorize) is never one click on a pre-filled code:
    the user must tick that they started it themselves — enforced here, not only by the browser."""
    if approve and request.form.get("confirm") != "yes":
        raise BadRequest("approval without the confirmation", code="device_confirm_missing",
                         message="Nothing was approved: tick the box to confirm that you started this sign-in "
                                 "on your own device just now" + (" and that the code matches your terminal."
                                                                   if terminal else "."),
                         hint="Go back, " + ("compare the code with your terminal, " if terminal else "")
                              + "tick the box, then approve.")


def check_csrf(session: SessionRecord) -> None:
    sent = form_field("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise BadRequest("missing or wrong CSRF token", code="csrf_failed",
                         message="This form has expired or did not come from the bridge.",
                         hint="Reload the portal and try again.")


def rate_bucket(kind: str, who: str) -> tuple[str, int] | None:
    """(bucket, limit per minute) that counts ``who``'s requests of ``kind``; None when not limited. Named
    once per limits, kind and who (a hot request asks twice: to read ahead, then to count)."""
    limits = services().settings.rate_limits
    return _BUCKETS.get((limits,), (kind, who), lambda: _bucket(limits, kind, who))


_BUCKETS: ByObject[tuple[str, int] | None] = ByObject()


def _bucket(limits: RateLimitSettings, kind: str, who: str) -> tuple[str, int] | None:
    limit = {"sign_in": limits.sign_in_per_minute, "device": limits.device_per_minute,
             "device_code": limits.device_code_per_minute,
             "sso_register": limits.sso_register_per_minute,
             "requests": limits.requests_per_minute,
             "scim": limits.scim_per_minute}.get(kind, limits.credentials_per_minute)
    return None if limit <= 0 else (f"{kind}:{hashlib.sha256(who.encode()).hexdigest()[:32]}", limit)


def rate_limit(kind: str, who: str) -> None:
    """Count this request against ``rate_limits`` (Redis: the same budget on every instance). Counted
    already when it was read ahead with the session (bridge/web/ahead.py): that count answers, once."""
    svc = services()
    bucket = rate_bucket(kind, who)
    if bucket is None:
        return
    limit = bucket[1]
    counted = g.pop("ahead_counted", None)
    wait = counted[1] if counted is not None and counted[0] == bucket[0] else svc.store.hit(bucket[0], limit)
    if wait:
        svc.metrics.rate_limited.labels(kind).inc()
        raise RateLimited(f"{kind} limit {limit}/min reached", retry_after=wait)


def client_address() -> str:
    """Who a per-address rate limit counts (after ProxyFix): the IPv4 address, or the IPv6 /64 — a host has a
    whole /64 to pick source addresses from, so counting each address would let it pick a fresh one each time."""
    return address_key(request.remote_addr or "-")


def own_navigation() -> bool:
    """True when the browser says this request is a click on the bridge's own pages (``same-origin``):
    Sec-Fetch-Site, set by the browser, not forgeable by a page. Anything else gets a page to confirm:
    a link from another site (``cross-site``, ``same-site``), a client without the header, and also
    ``none`` — sent for typed URLs and bookmarks, but equally for links opened from mail and chat
    apps, where a phishing link must not pick the role, duration and destination of a sign-in and
    have it happen without the user pressing a button. A bookmark costs one click."""
    return request.headers.get("Sec-Fetch-Site") == "same-origin"
