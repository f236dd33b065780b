"""gunicorn's logs in the bridge's shape: one JSON object per line (``logger_class`` in
deploy/gunicorn.conf.py). The access log carries the request id the app set (X-Request-ID)
and never the query string: callbacks carry authorization codes and state in it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger


class _ErrorFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "event": "gunicorn", "message": record.getMessage()}
        if record.exc_info and record.exc_info[0] is not None:
            doc["exc_type"] = record.exc_info[0].__name__
        return json.dumps(doc)


class JsonLogger(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for h in self.error_log.handlers:
            h.setFormatter(_ErrorFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.cfg.accesslog:
            return
        headers = dict((str(k).lower(), str(v)) for k, v in (resp.headers or []))
        status = str(resp.status).split(" ", 1)[0]
        doc = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": "info",
               "event": "http_access", "request_id": headers.get("x-request-id", "-"),
               "remote": environ.get("REMOTE_ADDR"), "method": environ.get("REQUEST_METHOD"),
               "path": environ.get("PATH_INFO"), "status": int(status) if status.isdigit() else status,
               "bytes": getattr(resp, "sent", None),
               "ms": round(request_time.total_seconds() * 1000, 1),
               "user_agent": environ.get("HTTP_USER_AGENT", "")[:256]}
        try:
            self.access_log.info(json.dumps(doc))
        except Exception:  # noqa: BLE001 - never let logging break a response
            self.error("access log failed")
