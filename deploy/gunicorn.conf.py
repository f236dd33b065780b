"""gunicorn settings for the bridge (``bridge serve`` passes BRIDGE_CONFIG and BRIDGE_BIND).

Run directly (containers): ``gunicorn -c deploy/gunicorn.conf.py bridge.runtime.wsgi:app`` with
``BRIDGE_CONFIG=/etc/bridge/bridge.yaml``. Environment knobs:

  BRIDGE_BIND            host:port (default 127.0.0.1:8000; 0.0.0.0:8000 in the image)
  BRIDGE_METRICS_BIND    host:port of a second listener for /metrics only (``bridge serve`` sets it
                         from metrics.listen; set it yourself when running gunicorn directly)
  BRIDGE_WORKERS         processes (default 2 x cores, at most 4)
  BRIDGE_THREADS         threads per process (default 8)
  BRIDGE_TIMEOUT         seconds a worker may be silent before it is restarted (default 30)
  BRIDGE_KEEPALIVE       seconds an idle client connection is kept open (default 75: above the
                         60 s a load balancer keeps idle upstream connections, see below)
  BRIDGE_MAX_REQUESTS    requests before a worker is replaced (default 5000, +- 10% jitter; 0 = never)
  BRIDGE_ACCESS_LOG      1 = JSON access log on stderr (default), 0 = none
  BRIDGE_FORWARDED_ALLOW_IPS  proxies whose X-Forwarded-* gunicorn itself trusts (default 127.0.0.1)
  PROMETHEUS_MULTIPROC_DIR    where workers keep metric files (default: a fresh temporary folder,
                              removed when the server stops)

gthread workers: requests mostly wait on the IdP, Redis and STS, so threads per process give
concurrency without the memory of more processes; CPU work (RSA signing) runs in C without the
GIL for most of its time. Each worker builds its own app (no preload), so no Redis or boto3
connection is shared across a fork. ``max_requests`` with jitter recycles workers one at a time
(bounded memory growth, never all at once).

ProxyFix: the *app* trusts X-Forwarded-For/Proto/Host only from ``trusted_proxies`` hops (the
bridge config, e.g. 1 behind one ingress/load balancer). Client IPs in logs and the audit trail
come from there; with 0, they are the proxy's address. Set it to exactly the number of proxies
that append to X-Forwarded-For, never more (a client could then choose its own IP).
"""

import multiprocessing
import os
import shutil
import tempfile

# Metrics across workers: each worker writes its counters to files here; /metrics sums them.
# Must be set before prometheus_client is imported anywhere (its value class is chosen then).
# A folder made here is this server's own: on_exit removes it (a given one is left in place).
_OWN_METRICS_DIR = "BRIDGE_OWN_METRICS_DIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_OWN_METRICS_DIR] = tempfile.mkdtemp(prefix="bridge-metrics-")

bind = [os.environ.get("BRIDGE_BIND", "127.0.0.1:8000")]
# metrics.listen: the same workers also accept here, and the app serves only /metrics on it (and
# 404 for /metrics on the main address), so scrapes never need the public listener.
if os.environ.get("BRIDGE_METRICS_BIND"):
    bind.append(os.environ["BRIDGE_METRICS_BIND"])
worker_class = "gthread"
workers = int(os.environ.get("BRIDGE_WORKERS", str(min(4, multiprocessing.cpu_count() * 2))))
threads = int(os.environ.get("BRIDGE_THREADS", "8"))
timeout = int(os.environ.get("BRIDGE_TIMEOUT", "30"))  # > aws.sts_timeout x sts_max_attempts
graceful_timeout = 20
# A proxy that reuses connections (nginx `keepalive`, ingress-nginx, an AWS ALB: 60 s idle by
# default) must be the side that closes an idle one. Were gunicorn to close first, a request the
# proxy sends on that connection at the same moment fails, and a POST is not retried: a 502 for
# the user (seen with 5 s here: bench/bench_scaleout.py). gthread keeps idle connections in its
# poller, not on a thread, so a long keepalive costs a socket, not concurrency.
keepalive = int(os.environ.get("BRIDGE_KEEPALIVE", "75"))
max_requests = int(os.environ.get("BRIDGE_MAX_REQUESTS", "5000"))  # 0 = never recycle
max_requests_jitter = max_requests // 10
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # heartbeat off disk (containers)
# Access and error logs as JSON lines, with the request id the app set, without query strings
# (callbacks carry codes and state in them): bridge/runtime/gunicorn_logging.py.
logger_class = "bridge.runtime.gunicorn_logging.JsonLogger"
accesslog = "-" if os.environ.get("BRIDGE_ACCESS_LOG", "1") == "1" else None
errorlog = "-"
loglevel = os.environ.get("BRIDGE_GUNICORN_LOGLEVEL", "warning")
forwarded_allow_ips = os.environ.get("BRIDGE_FORWARDED_ALLOW_IPS", "127.0.0.1")
# IAM Identity Center's portal API sends the token in `x-amz-sso_bearer_token` (an underscore: gunicorn
# drops such headers unless they come from a trusted front end, docs/identity-center.md). Only that
# one header is let through, and only from forwarded_allow_ips (nginx with `underscores_in_headers on`).
forwarder_headers = "SCRIPT_NAME,PATH_INFO,X-AMZ-SSO_BEARER_TOKEN"


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn hook signature
    """A fresh metrics folder per server start: counters from a previous run must not be summed in. And the
    startup warnings, logged once for the server (not once per worker)."""
    d = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        path = os.path.join(d, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    _log_startup_warnings_once()


def _log_startup_warnings_once():  # noqa: ANN202
    """The config's startup warnings, logged here in the master rather than by every worker (each builds
    its own app); the workers see BRIDGE_STARTUP_WARNINGS_LOGGED and skip them. Light: pydantic and the
    bridge's config only (no Flask, Redis or boto3 before the fork). A config that does not load is
    left to the workers, which fail with every problem listed."""
    import logging

    from bridge.config import ConfigError, load_settings, startup_warnings
    from bridge.telemetry.logs import event, setup_logging

    try:
        settings = load_settings(os.environ.get("BRIDGE_CONFIG", "config/bridge.yaml"))
    except (ConfigError, OSError):
        return
    setup_logging(settings.log_level)
    for warning in startup_warnings(settings):
        event("config_warning", logging.WARNING, message=warning)
    os.environ["BRIDGE_STARTUP_WARNINGS_LOGGED"] = "1"


def on_exit(server):  # noqa: ANN001, ANN201 - gunicorn hook signature
    """The metrics folder made for this server goes with it (one per `bridge serve` otherwise piles up in /tmp)."""
    own = os.environ.get(_OWN_METRICS_DIR)
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(own, ignore_errors=True)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    """Drop a dead worker's live gauges (its counters stay summed, as Prometheus expects)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def when_ready(server):  # type: ignore[no-untyped-def]
    """SIGHUP to the master is forwarded to the workers, which reload their rules in place (bridge/runtime/wsgi.py
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
