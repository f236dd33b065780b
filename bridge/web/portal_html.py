"""The portal's account cards and role rows as HTML, built here rather than in a Jinja loop: 5,000 rows
across 1,000 accounts must render in a few milliseconds (bench/bench_portal_served.py). Pure: no Flask.

A portal of up to ``INLINE_ROWS`` roles is sent whole, every account open. A larger one is sent as
collapsed account cards without their rows (5,000 rows are 1 MB of HTML; 1,000 cards are a fifth of
that): a card's rows come from ``GET /portal/rows?account=<id>`` when it is opened, and all of them
from ``GET /portal/rows`` at the filter's first keystroke, so the filter still searches every role.
Without the script, a card's link reloads the portal with that account open (``?open=<id>``)."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

from markupsafe import Markup

from bridge.domain.identity import Grant
from bridge.domain.present import account_name, go_path

INLINE_ROWS = 300  # roles sent in the page itself; above, accounts are collapsed and load on open
Accounts = Sequence[tuple[str, Sequence[Grant]]]  # (account id, its grants), in the order shown

# A row is small: the link (/go/…, which alone is a complete no-script way to the console and
# credentials) and the role name; the script adds the duration chooser and the Console / Credentials /
# Copy link / star buttons from a <template>.
_ROW = '<li class=role data-g={id}{a}{m}{d}{f}><a href="{go}">{label}</a>{where}{via}{until} <code>{arn}</code></li>\n'
NARROWER = " with a narrower policy"  # held by a request that sent the requester's own session policy
_UNTIL = (' <small class="muted until">by request{narrow}, until <time class="expiry short" data-epoch="{at}">'
          '{utc} UTC</time></small>')
_CARD = ('<details class="card account"{open} data-a="{id}"><summary><h2>{name}</h2> <small class=muted>{sub}</small>'
         '<span class=count>{count}</span></summary>{body}</details>\n')
# A collapsed card's only content: the no-script way to its rows (the script fetches them instead).
_LAZY = '<ul class=roles><li class=lazy><a href="/portal?open={id}#open">Show {count}</a></li></ul>'


def roles(n: int) -> str:
    return f"{n} role{'' if n == 1 else 's'}"


def rows_html(grants: Sequence[Grant], fav_ids: set[str], where: bool = False,
              ends: dict[str, int] | None = None, narrowed: frozenset[str] | set[str] = frozenset()) -> Markup:
    """The portal's role rows. ``where``: say which account (the Favourites and Recent lists, outside
    their account's card; ``data-a`` names it for the filter). ``ends``: request id → the end of its
    window, for roles held by an approved request."""
    esc = html.escape
    ends = ends or {}
    out = []
    for gr in grants:
        gid = gr.id
        at = ends.get(gr.request_id or "")
        out.append(_ROW.format(
            id=gid, a=f' data-a="{esc(gr.account_id)}"' if where else "",
            m=f" data-m={gr.max_duration}" if gr.max_duration != 3600 else "",
            d=f" data-d={gr.default_duration}" if gr.default_duration != 3600 else "",
            go=esc(go_path(gr)), label=esc(gr.label), arn=esc(gr.role_arn), f=" data-f" if gid in fav_ids else "",
            where=f' <small class="muted in">in {esc(account_name(gr))}</small>' if where else "", via=via(gr),
            until=_UNTIL.format(at=at, utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)),
                                narrow=NARROWER if gr.request_id in narrowed else "") if at else ""))
    return Markup("".join(out))  # noqa: S704 - every value above is escaped or a number/hex id


def via(gr: Grant) -> str:
    """A chained role's row says which hub it goes through and that AWS caps it at 1 hour (role chaining)."""
    if not gr.hubs:
        return ""
    hubs = " → ".join(html.escape(h.label) for h in gr.hubs)
    return f' <small class="muted via" title="role chaining: at most 1 hour">via {hubs} · 1 h max</small>'


def account_cards(accounts: Accounts, fav_ids: set[str], ends: dict[str, int], *, lazy: bool,
                  open_id: str = "", narrowed: frozenset[str] | set[str] = frozenset()) -> Markup:
    """One card per account: its name, id and alias once each, its role count, and its rows — or, when
    ``lazy``, no rows but a link to them, except for the account ``open_id`` (sent open, ``id=open``)."""
    esc = html.escape
    out = []
    for account_id, grants in accounts:
        a = grants[0]
        name = account_name(a)
        sub = (esc(account_id) if name != account_id else "") + (
            f" &middot; {esc(a.account_alias)}" if a.account_alias and a.account_alias != name else "")
        count = roles(len(grants))
        if lazy and account_id != open_id:
            opened, body = "", _LAZY.format(id=esc(account_id), count=count)
        else:
            opened = " open id=open" if lazy else " open"
            body = f"<ul class=roles>\n{rows_html(grants, fav_ids, ends=ends, narrowed=narrowed)}</ul>"
        out.append(_CARD.format(open=opened, id=esc(account_id), name=esc(name), sub=sub, count=count, body=body))
    return Markup("".join(out))  # noqa: S704 - every value above is escaped or a number


def account_rows(accounts: Accounts, fav_ids: set[str], ends: dict[str, int],
                 narrowed: frozenset[str] | set[str] = frozenset()) -> Markup:
    """What ``GET /portal/rows`` answers: each account's rows in a ``<ul data-a=<id>>``, for the script
    to move into that account's card."""
    out = "".join(f'<ul data-a="{html.escape(account_id)}">\n'
                  f'{rows_html(grants, fav_ids, ends=ends, narrowed=narrowed)}</ul>\n'
                  for account_id, grants in accounts)
    return Markup(out)  # noqa: S704 - the id is escaped here, the rows in rows_html
