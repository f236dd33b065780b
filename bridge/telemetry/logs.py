"""Structured logs: one JSON object per line, snake_case event names, a request id.

Log ids and outcomes, never tokens, assertions, secrets or whole claim sets.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str] = ContextVar("request_id", default="-")
# The sign-in this request belongs to (audit records carry the same id); None before sign-in.
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
_log = logging.getLogger("bridge")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "request_id": request_id.get(),
        }
        if (cid := correlation_id.get()) is not None:
            doc["correlation_id"] = cid
        doc.update(getattr(record, "fields", {}))
        if record.exc_info and record.levelno >= logging.ERROR:
            doc["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(doc, default=str)


def setup_logging(level: str = "INFO") -> None:
    """Send the bridge's events to stderr as JSON lines (idempotent)."""
    if not any(isinstance(h.formatter, JsonFormatter) for h in _log.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(JsonFormatter())
        _log.addHandler(h)
    _log.setLevel(level)
    _log.propagate = False


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with key/value fields."""
    _log.log(level, name, extra={"fields": fields})
