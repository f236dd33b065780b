"""gunicorn settings for the bridge (``bridge serve`` passes BRIDGE_CONFIG and BRIDGE_BIND).

gthread workers: requests mostly wait on the IdP, Redis and STS, so threads per process
give concurrency without the memory of more processes. Each worker builds its own app
(no preload), so no Redis or boto3 connection is shared across a fork.
"""

import multiprocessing
import os

bind = os.environ.get("BRIDGE_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("BRIDGE_WORKERS", str(min(4, multiprocessing.cpu_count() * 2))))
threads = int(os.environ.get("BRIDGE_THREADS", "8"))
timeout = 30
graceful_timeout = 20
keepalive = 5
max_requests = 5000
max_requests_jitter = 500
# Access log without the query string: callbacks carry codes and state in it.
accesslog = "-" if os.environ.get("BRIDGE_ACCESS_LOG", "1") == "1" else None
access_log_format = '{"event":"http_access","remote":"%(h)s","method":"%(m)s","path":"%(U)s","status":%(s)s,"bytes":%(B)s,"ms":%(M)s,"request_id":"%({x-request-id}o)s"}'
errorlog = "-"
loglevel = os.environ.get("BRIDGE_GUNICORN_LOGLEVEL", "warning")
forwarded_allow_ips = "127.0.0.1"


def when_ready(server):  # type: ignore[no-untyped-def]
    """SIGHUP to the master is forwarded to the workers, which reload their rules in place (bridge/wsgi.py
    installs the handler); a broken rules file keeps the rules in force. (gunicorn's own HUP restarts
    every worker with a fresh config, and workers that cannot load a broken config would not boot.)
    Restart the service to apply changes outside ``mapping``."""
    import signal as _signal

    def forward_hup() -> None:
        server.log.info("SIGHUP: reloading the rules in %d worker(s)", len(server.WORKERS))
        for pid in list(server.WORKERS):
            try:
                os.kill(pid, _signal.SIGHUP)
            except ProcessLookupError:
                pass

    server.handle_hup = forward_hup
