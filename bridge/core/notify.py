"""Notifications of access requests to webhooks: a generic JSON POST, or a chat's payload (Slack-compatible
or Teams, bridge/core/chat.py: user text escaped for each).

Sent from one background thread per process, with bounded retries (``requests.webhook_attempts``,
backoff doubling from ``webhook_backoff``), so a slow or broken receiver never delays a request:
``Notifier.send`` only puts the event on a bounded queue (full: the event is dropped and logged).
Every outcome is logged (``webhook_sent`` / ``webhook_failed``, URL without its path: Slack's
secret is in it); a notification is not an audit record (the audit trail has its own).

What a receiver cannot make the bridge do (SSRF): follow a redirect (a 30x is a failed delivery — the
secret header never goes on to another host), or connect to a link-local or metadata address: the
receiver's name is resolved at every delivery, every address checked (bridge/domain/webhook_address.py), and
the connection made to the address checked (DNS rebinding finds none to swap), with TLS verified for
the name in the URL. Plain http only to loopback unless the webhook says ``insecure_allow_http``.
Standard library only (http.client): no web framework, no proxy.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from bridge.config import RequestsSettings, WebhookSettings
from bridge.core.chat import PAYLOADS
from bridge.domain.webhook_address import blocked_ip, is_loopback
from bridge.telemetry.logs import event

QUEUE_SIZE = 1000


Resolver = Callable[..., Sequence[tuple[Any, ...]]]


def _where(url: str) -> str:
    """Scheme, host and port only: the path (Slack's secret) and any user:password stay out of the logs."""
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "")


def _connect(addresses: Sequence[str], port: int, timeout: float | None) -> socket.socket:
    """A connection to the first of ``addresses`` (already checked) that answers."""
    last: OSError = OSError("no address")
    for ip in addresses:
        try:
            return socket.create_connection((ip, port), timeout=timeout)
        except OSError as e:
            last = e
    raise last


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to the name in the URL (its Host header) over a connection to an address checked beforehand."""

    def __init__(self, host: str, port: int, addresses: Sequence[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self) -> None:
        self.sock = _connect(self.addresses, self.port, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS likewise: the certificate is verified for the name in the URL, not for the address."""

    def __init__(self, host: str, port: int, addresses: Sequence[str], timeout: float, tls: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=tls)
        self.addresses, self.tls = addresses, tls

    def connect(self) -> None:
        self.sock = self.tls.wrap_socket(_connect(self.addresses, self.port, self.timeout), server_hostname=self.host)


class Notifier:
    """Delivers events to every configured webhook in the background."""

    def __init__(self, cfg: RequestsSettings, *, sleep: Callable[[float], None] = time.sleep,
                 resolve: Resolver = socket.getaddrinfo, tls: ssl.SSLContext | None = None) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self.resolve = resolve  # looked up at every delivery: what a name points at may change
        self.tls = tls or ssl.create_default_context()
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
            doc = PAYLOADS[hook.format](ev) if hook.format in PAYLOADS else dict(ev)
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
        """POST ``body`` to ``hook``, trying up to ``webhook_attempts`` times (2xx is success; a redirect is
        not followed; a blocked address is not tried again)."""
        headers = {"Content-Type": "application/json", "User-Agent": "federation-bridge"}
        if hook.secret_header is not None:
            headers[hook.secret_header.name] = hook.secret_header.value.get_secret_value()
        wait = self.cfg.webhook_backoff
        last = ""
        for attempt in range(1, self.cfg.webhook_attempts + 1):
            status, last = self._post(hook, body, headers)
            if 200 <= status < 300:
                self.delivered += 1
                event("webhook_sent", url=_where(hook.url), format=hook.format, attempt=attempt)
                return True
            if last.startswith("blocked"):
                break
            if attempt < self.cfg.webhook_attempts:
                self.sleep(wait)
                wait *= 2
        self.failed += 1
        event("webhook_failed", logging.WARNING, url=_where(hook.url), format=hook.format,
              attempts=attempt, reason=last)
        return False

    def _addresses(self, hook: WebhookSettings, host: str, port: int) -> tuple[list[str], str]:
        """The addresses ``host`` resolves to now, or why none may be used (every one is checked: a name
        that also points at a metadata address is refused)."""
        try:
            infos = self.resolve(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            return [], type(e).__name__
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for ip in addresses:
            if blocked_ip(ip) is not None:
                return [], f"blocked address {ip}"
        if urlsplit(hook.url).scheme == "http" and not hook.insecure_allow_http and not all(
                is_loopback(ip) for ip in addresses):
            return [], "blocked address: plain http outside loopback"
        return addresses, "" if addresses else "no address"

    def _post(self, hook: WebhookSettings, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """One POST: (status, why it failed). Never follows a redirect."""
        u = urlsplit(hook.url)
        host, https = u.hostname or "", u.scheme == "https"
        port = u.port or (443 if https else 80)
        addresses, why = self._addresses(hook, host, port)
        if not addresses:
            return 0, why
        timeout = self.cfg.webhook_timeout
        conn = (_PinnedHTTPS(host, port, addresses, timeout, self.tls) if https
                else _PinnedHTTP(host, port, addresses, timeout))
        try:
            conn.request("POST", (u.path or "/") + (f"?{u.query}" if u.query else ""), body=body, headers=dict(headers))
            resp = conn.getresponse()
            resp.read(65536)
            status = resp.status
        except (OSError, ValueError, http.client.HTTPException) as e:
            return 0, type(e).__name__
        finally:
            conn.close()
        if 300 <= status < 400:
            return status, f"HTTP {status}: redirects are not followed"
        return status, "" if 200 <= status < 300 else f"HTTP {status}"
