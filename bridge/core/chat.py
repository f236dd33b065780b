"""What a chat shows of an access-request event: a Slack-compatible payload (mrkdwn) and a Microsoft Teams
one (an Adaptive Card). Pure functions, no I/O.

Everything a person typed or an IdP asserted (reason, comment, names, e-mails, role labels rendered from
claims) is text, never markup: it is escaped for the destination (Slack: ``&`` ``<`` ``>``; Teams: the
Markdown specials), its URLs are defanged (``https[:]//…``, ``www[.]…``) so the chat does not turn them
into links, and the only link in a message is the bridge's own, to the request. For Slack-compatible chats
that read the payload as Markdown with mentions, ``@channel``-style mentions and ``[x](y)`` links are broken
with an invisible word joiner. So a reason such as
``<!channel> <https://evil/…|Open the request>`` reaches approvers as those characters, not as a
channel-wide ping and a disguised link. (The ``json`` format sends the event as data, unescaped: its
receiver escapes for wherever it shows it.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_VERBS = {"requested": "requests", "break_glass": "BROKE THE GLASS for", "approved": "was approved for",
          "denied": "was denied", "revoked": "lost (revoked)", "expired": "no longer has (expired)",
          "ended": "no longer has (rules changed)"}
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}):(?=//)")
_WWW = re.compile(r"(?i)\bwww\.")
_MARKDOWN = re.compile(r"([\\`*_~\[\](){}<>#|!])")
# Slack-compatible chats (Mattermost, Rocket.Chat, Discord's /slack webhooks) read ``text`` as Markdown with
# mentions: ``@channel``/``@all``/``@here``/``@everyone``/``@name`` pings, ``[x](//host)`` links (no scheme to
# defang). A WORD JOINER (U+2060, invisible) after the ``@`` and after a link's ``]`` makes neither parse;
# e-mails (``bob@example.com``: a word character before the ``@``) are left as they are.
_MENTION = re.compile(r"(?<![\w.+-])@(?=\w)")
_LINK_END = re.compile(r"\](?=\s*[(\[])")
_JOINER = "\u2060"


def plain(text: Any) -> str:
    """User text on one line (no control characters: a newline would start a line of its own), with its
    URLs defanged so no chat links them."""
    out = "".join(ch if ch.isprintable() else " " for ch in str(text or ""))
    return _WWW.sub("www[.]", _SCHEME.sub(r"\1[:]", out))


def slack_text(text: Any) -> str:
    """User text for Slack mrkdwn: its control characters (``<…>`` links and mentions, ``&`` entities)
    escaped as Slack asks, URLs defanged, and the mentions and links of Slack-compatible chats broken."""
    out = plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _LINK_END.sub("]" + _JOINER, _MENTION.sub("@" + _JOINER, out))


def markdown_text(text: Any) -> str:
    """User text for Markdown (Teams): every special escaped with a backslash, URLs defanged."""
    return _MARKDOWN.sub(r"\\\1", plain(text))


NARROWER = "With a narrower session policy: read it on the approvers' page before approving."  # fixed text


def _parts(ev: Mapping[str, Any]) -> tuple[str, str, str, int]:
    requester = ev.get("requester") or {}
    who = requester.get("email") or requester.get("subject") or "someone"
    role = ev.get("label") or ev.get("role_arn")
    verb = _VERBS.get(str(ev.get("event")), str(ev.get("event")))
    return str(who), f"{role}", verb, int(ev.get("duration") or 0) // 60


def slack_payload(ev: Mapping[str, Any]) -> dict[str, Any]:
    """Slack's incoming-webhook shape (also taken by Mattermost and Rocket.Chat): ``text`` (the
    notification) and a ``mrkdwn`` section with ``verbatim`` set, so Slack links no name or URL itself."""
    who, role, verb, minutes = _parts(ev)
    lines = [f"{'🚨 ' if ev.get('break_glass') else ''}*{slack_text(who)}* {verb} *{slack_text(role)}"
             f" ({slack_text(ev.get('account_id'))})* for {minutes} min"]
    if ev.get("reason"):
        lines.append(f"> {slack_text(ev['reason'])}")
    if ev.get("narrower_policy"):
        lines.append(slack_text(NARROWER))
    if ev.get("comment"):
        lines.append(f"comment by {slack_text(ev.get('by') or 'approver')}: {slack_text(ev['comment'])}")
    if ev.get("url"):
        lines.append(f"<{ev['url']}|Open the request>")  # the bridge's own link (base_url + the request's id)
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}]}


def teams_payload(ev: Mapping[str, Any]) -> dict[str, Any]:
    """A Teams incoming webhook's (Workflows) message: an Adaptive Card whose text blocks hold escaped
    text only (emphasis by the block's weight, not by Markdown), its one link the *Open the request* button."""
    who, role, verb, minutes = _parts(ev)
    head = (f"{'🚨 ' if ev.get('break_glass') else ''}{who} {verb} {role} in account {ev.get('account_id')} "
            f"for {minutes} min")
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": markdown_text(head), "weight": "Bolder", "wrap": True}]
    if ev.get("reason"):
        body.append({"type": "TextBlock", "text": markdown_text(f"Reason: {ev['reason']}"), "wrap": True})
    if ev.get("narrower_policy"):
        body.append({"type": "TextBlock", "text": markdown_text(NARROWER), "wrap": True})
    if ev.get("comment"):
        body.append({"type": "TextBlock", "wrap": True,
                     "text": markdown_text(f"Comment by {ev.get('by') or 'approver'}: {ev['comment']}")})
    card: dict[str, Any] = {"type": "AdaptiveCard", "version": "1.4", "body": body}
    if ev.get("url"):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the request", "url": str(ev["url"])}]
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


PAYLOADS = {"slack": slack_payload, "teams": teams_payload}
