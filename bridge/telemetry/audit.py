"""The audit trail: who got which AWS role, how, and with what — one JSON object per line.

Records (``type``):
- ``sign_in``: a finished sign-in, success or failure (``outcome``, ``error`` code on failure);
- ``grant_decision``: each rule that matched at sign-in: ``outcome`` granted | withheld (``reason``);
- ``credentials_intent``: with ``fail_closed``, written *before* each call to STS (who, which role,
  session name, source identity): CloudTrail never shows an assumption the trail has no record of,
  even when the outcome record cannot be written afterwards;
- ``credentials``: each credential issuance (``outcome`` success | failure, ``cached`` when it came
  from the credential cache, ``access_key_id``, ``assumed_role_arn`` and ``sts_request_id`` to find it
  in CloudTrail; ``hubs`` for a role reached through hubs, ``external_id`` whether one was sent); also a
  token exchange refused because SCIM deactivated the user (``error`` deprovisioned, ``target``, ``app``);
- ``credentials_hop``: each STS call of a chained issuance (``hop`` of ``hops``, ``action``,
  ``hop_role_arn``, ``external_id`` whether one went with it — never its value —, ``sts_request_id``,
  ``outcome``); the hubs' credentials are never recorded;
- ``console``: each console sign-in (``method`` federation | saml_post, ``destination`` without query);
- ``access_request``: each step of an access request (``event`` requested | approved | denied |
  activated | revoked | expired | ended | refused, ``break_glass``). Its ``correlation_id`` is the
  request's id, and so is that of every ``credentials``/``console`` record issued under it
  (``request_id`` says so; ``session_correlation_id`` keeps the sign-in's);
- ``token_reuse``: an IAM Identity Center refresh token or authorization code presented after it was used
  (``grant_type``: ``refresh_token`` or ``authorization_code``; ``client_id``, ``who`` when the session is
  still known, ``revoked``: how many live tokens of its grant ended);
- ``scim``: each SCIM write from the IdP (``action`` create | replace | patch | delete, ``resource`` User | Group,
  ``id``, ``outcome`` success | failure (``error``: the SCIM type) | denied (a wrong bearer token), ``user_name``
  and ``active`` or ``display_name``, ``added``/``removed`` members, ``sessions_ended`` on a deactivation).

Every record carries ``ts``, ``type``, ``correlation_id`` (minted when the sign-in started, kept in
the session: it ties a sign-in to every grant and credential it led to), ``request_id``,
``instance``, ``client_ip`` and ``user_agent``; and where known ``who`` (upstream issuer, subject,
email, connector), ``how`` (connector, MFA, amr, acr), ``rule``, ``role_arn``, ``tags``,
``transitive_tags``, ``source_identity``, ``session_name``, ``duration``, ``path``.
Never tokens, assertions, secret keys or session tokens; claims only as far as rules put them in tags.

Sinks: ``stdout`` (collected with the container's output), ``file`` (appended with one ``write``
per record, so several workers can share it; reopened when logrotate moves it), ``redis`` (a
stream under the key prefix, trimmed to about ``maxlen`` entries), ``none``.

A record the sink cannot take: with ``fail_closed`` (the default) the action stops (503
``audit_unavailable``); without it the action goes on and the record is written to stderr instead
(one JSON line, ``event: audit_fallback``, the record under ``record``), so it is in the container's
log rather than lost.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bridge.domain.errors import BridgeError
from bridge.domain.identity import Grant, Identity
from bridge.telemetry.logs import event, request_id


class AuditUnavailable(BridgeError):
    code = "audit_unavailable"
    status = 503
    title = "Temporarily unavailable"
    message = "The bridge could not record this action in its audit trail, so it did not complete it."
    hint = "Try again in a minute. Your administrator has been told through the logs."


class Sink(Protocol):
    name: str

    def write(self, line: str) -> None:
        """Append one JSON line (no newline); raise OSError or the store's error on failure."""


class StdoutSink:
    name = "stdout"

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        out = self.stream or sys.stdout
        with self._lock:
            out.write(line + "\n")
            out.flush()


class FileSink:
    """Append-only JSON lines; one ``os.write`` per record (O_APPEND) so lines never interleave."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._ino: int | None = None

    def _open(self) -> int:
        try:
            st = os.stat(self.path)
            moved = self._ino is not None and st.st_ino != self._ino
        except FileNotFoundError:
            moved = self._fd is not None
        if self._fd is not None and not moved:
            return self._fd
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._ino = os.fstat(self._fd).st_ino
        return self._fd

    def write(self, line: str) -> None:
        data = (line + "\n").encode()
        with self._lock:
            os.write(self._open(), data)


class RedisStreamSink:
    name = "redis"

    def __init__(self, xadd: Callable[[str, int], None], maxlen: int) -> None:
        self.xadd = xadd
        self.maxlen = maxlen

    def write(self, line: str) -> None:
        self.xadd(line, self.maxlen)


class NullSink:
    name = "none"

    def write(self, line: str) -> None:
        return None


@dataclass(frozen=True)
class Context:
    """Where a request came from, and which sign-in it belongs to."""

    correlation_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Shared:
    """Fields many records carry alike (who, how, the grant: every issuance of one role to one sign-in), encoded
    as JSON once (``Shared.of``) and written after a record's own fields (``record(type, ctx, shared, ...)``)."""

    values: dict[str, Any]
    encoded: str  # the JSON of ``values`` without its braces

    @classmethod
    def of(cls, values: dict[str, Any]) -> Shared:
        return cls(values, json.dumps(values, default=str, separators=(",", ":"))[1:-1])


def who(identity: Identity) -> dict[str, Any]:
    return {"issuer": identity.issuer, "subject": identity.subject, "email": identity.email,
            "connector": identity.connector_id}


def how(identity: Identity) -> dict[str, Any]:
    return {"connector": identity.connector_id, "mfa": identity.mfa, "amr": list(identity.amr),
            "acr": identity.acr}


def grant_fields(grant: Grant) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": grant.via, "role_arn": grant.role_arn, "account_id": grant.account_id,
           "tags": dict(grant.tags), "transitive_tags": list(grant.transitive_keys),
           "source_identity": grant.source_identity, "session_name": grant.session_name, "path": grant.path}
    if grant.request_id:
        out["request_id"] = grant.request_id
    if grant.hubs:  # the chain by role ARN; whether an ExternalId goes with it, never the value
        out["hubs"] = [h.role_arn for h in grant.hubs]
        out["external_id"] = any(h.external_id is not None for h in grant.hops)
    if grant.policy is not None or grant.policy_arns:
        out["session_policy"] = {"chars": len("".join((grant.policy or "").split())),
                                 "policy_arns": list(grant.policy_arns)}
    return out


def for_grant(ctx: Context, grant: Grant) -> tuple[Context, dict[str, Any]]:
    """The context to audit an issuance of ``grant`` under: an access request's own correlation id when
    an approved request activated it (with the sign-in's kept as ``session_correlation_id``)."""
    if not grant.request_id:
        return ctx, {}
    return (Context(grant.request_id, ctx.client_ip, ctx.user_agent),
            {"session_correlation_id": ctx.correlation_id})


class Auditor:
    """Builds and writes audit records. ``fail_closed``: a write failure raises AuditUnavailable."""

    def __init__(self, sink: Sink, *, fail_closed: bool = True, on_error: Callable[[str], None] | None = None,
                 clock: Callable[[], datetime] | None = None, fallback: Any = None) -> None:
        self.sink = sink
        self.fail_closed = fail_closed
        self.on_error = on_error
        self.fallback = fallback  # fail-open: where unwritable records go (default: sys.stderr)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.instance = socket.gethostname()

    def record(self, type_: str, ctx: Context, shared: Shared | None = None, /, **fields: Any) -> dict[str, Any]:
        """Write one record: its type, the context, ``fields``, then the ``shared`` ones (never the same key;
        positional, so no field can be named ``shared``)."""
        doc: dict[str, Any] = {
            "ts": self.clock().isoformat(timespec="milliseconds"), "type": type_,
            "correlation_id": ctx.correlation_id, "request_id": request_id.get(), "instance": self.instance,
            "client_ip": ctx.client_ip, "user_agent": (ctx.user_agent or "")[:256] or None, **fields}
        if shared is not None and shared.values and not shared.values.keys().isdisjoint(doc):
            if twice := shared.values.keys() & fields.keys():
                raise ValueError(f"audit record {type_}: {sorted(twice)} given twice")
            # A shared field names a base one (an access request's request_id): it wins, as any field does.
            for key in shared.values.keys() & doc.keys():
                del doc[key]
        line = json.dumps(doc, default=str, separators=(",", ":"))
        if shared is not None and shared.values:
            line = f"{line[:-1]},{shared.encoded}}}"
            doc.update(shared.values)
        try:
            self.sink.write(line)
        except Exception as e:  # noqa: BLE001 - any sink failure (OSError, Redis, ...) is handled alike
            event("audit_write_failed", logging.ERROR, sink=self.sink.name, error_type=type(e).__name__,
                  record_type=type_)
            if self.on_error:
                self.on_error(self.sink.name)
            if self.fail_closed:
                raise AuditUnavailable(f"audit sink {self.sink.name}: {type(e).__name__}") from None
            self._fall_back(doc)
        return doc

    def _fall_back(self, doc: dict[str, Any]) -> None:
        """Fail-open: the record on stderr, whole, so it is kept with the process's output."""
        line = json.dumps({"event": "audit_fallback", "sink": self.sink.name, "record": doc}, default=str,
                          separators=(",", ":"))
        out = self.fallback or sys.stderr
        try:
            out.write(line + "\n")
            out.flush()
        except (OSError, ValueError):  # stderr closed: nothing more can be done
            pass


def read_file(path: Path, *, lines: int) -> list[str]:
    """The last ``lines`` lines of an audit file (reads from the end: files grow large)."""
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block, data = 65536, b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            f.seek(size)
            data = f.read(step) + data
    return [x.decode("utf-8", "replace") for x in data.splitlines()[-lines:] if x.strip()]


def follow_file(path: Path, *, poll: float = 0.5, stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """New lines appended to ``path`` from now on (survives the file being rotated)."""
    import time

    f = path.open("rb")
    f.seek(0, os.SEEK_END)
    ino = os.fstat(f.fileno()).st_ino
    buf = b""
    while not stop():
        chunk = f.readline()
        if chunk:
            buf += chunk
            if buf.endswith(b"\n"):
                yield buf.decode("utf-8", "replace").rstrip("\n")
                buf = b""
            continue
        try:
            if os.stat(path).st_ino != ino:
                f.close()
                f = path.open("rb")
                ino = os.fstat(f.fileno()).st_ino
                continue
        except FileNotFoundError:
            pass
        time.sleep(poll)
    f.close()
