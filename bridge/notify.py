"""Notifications of access requests to webhooks: a generic JSON POST, or a Slack-compatible payload.

Sent from one background thread per process, with bounded retries (``requests.webhook_attempts``,
backoff doubling from ``webhook_backoff``), so a slow or broken receiver never delays a request:
``Notifier.send`` only puts the event on a bounded queue (full: the event is dropped and logged).
Every outcome is logged (``webhook_sent`` / ``webhook_failed``, URL without its path: Slack's
secret is in it); a notification is not an audit record (the audit trail has its own).
Standard library only (urllib): no web framework.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from bridge.config import RequestsSettings, WebhookSettings
from bridge.logs import event

QUEUE_SIZE = 1000


def slack_payload(ev: Mapping[str, Any]) -> dict[str, Any]:
    """Slack's incoming-webhook shape (also taken by Mattermost, Rocket.Chat, Teams' Slack adapter)."""
    who = ev.get("requester", {}).get("email") or ev.get("requester", {}).get("subject") or "someone"
    role = f"{ev.get('label') or ev.get('role_arn')} ({ev.get('account_id')})"
    verb = {"requested": "requests", "break_glass": "BROKE THE GLASS for", "approved": "was approved for",
            "denied": "was denied", "revoked": "lost (revoked)", "expired": "no longer has (expired)",
            "ended": "no longer has (rules changed)"}.get(str(ev.get("event")), str(ev.get("event")))
    lines = [f"{'🚨 ' if ev.get('break_glass') else ''}*{who}* {verb} *{role}*"
             f" for {int(ev.get('duration') or 0) // 60} min"]
    if ev.get("reason"):
        lines.append(f"> {ev['reason']}")
    if ev.get("comment"):
        lines.append(f"comment by {ev.get('by') or 'approver'}: {ev['comment']}")
    if ev.get("url"):
        lines.append(f"<{ev['url']}|Open the request>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def _where(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


class Notifier:
    """Delivers events to every configured webhook in the background."""

    def __init__(self, cfg: RequestsSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self._queue: queue.Queue[tuple[WebhookSettings, bytes]] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    @property
    def webhooks(self) -> Sequence[WebhookSettings]:
        return self.cfg.webhooks

    def send(self, ev: Mapping[str, Any]) -> None:
        """Queue ``ev`` for every webhook; never blocks, never raises."""
        for hook in self.webhooks:
            doc = slack_payload(ev) if hook.format == "slack" else dict(ev)
            body = json.dumps(doc, default=str, separators=(",", ":")).encode()
            try:
                self._queue.put_nowait((hook, body))
            except queue.Full:
                self.failed += 1
                event("webhook_failed", logging.ERROR, url=_where(hook.url), reason="queue full",
                      request_event=ev.get("event"))
                continue
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="bridge-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            hook, body = self._queue.get()
            try:
                self.deliver(hook, body)
            finally:
                self._queue.task_done()

    def wait(self, timeout: float = 10.0) -> bool:
        """Until every queued notification was delivered or given up (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def deliver(self, hook: WebhookSettings, body: bytes) -> bool:
        """POST ``body`` to ``hook``, trying up to ``webhook_attempts`` times (2xx is success)."""
        headers = {"Content-Type": "application/json", "User-Agent": "federation-bridge"}
        if hook.secret_header is not None:
            headers[hook.secret_header.name] = hook.secret_header.value.get_secret_value()
        wait = self.cfg.webhook_backoff
        last = ""
        for attempt in range(1, self.cfg.webhook_attempts + 1):
            # http(s) only: WebhookSettings validates the scheme
            req = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")  # noqa: S310
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.webhook_timeout) as resp:  # noqa: S310
                    status = resp.status
            except urllib.error.HTTPError as e:
                status, last = e.code, f"HTTP {e.code}"
            except (OSError, ValueError) as e:
                status, last = 0, type(e).__name__
            if 200 <= status < 300:
                self.delivered += 1
                event("webhook_sent", url=_where(hook.url), format=hook.format, attempt=attempt)
                return True
            if attempt < self.cfg.webhook_attempts:
                self.sleep(wait)
                wait *= 2
        self.failed += 1
        event("webhook_failed", logging.WARNING, url=_where(hook.url), format=hook.format,
              attempts=self.cfg.webhook_attempts, reason=last)
        return False
