"""Prometheus metrics (prometheus-client), built per app in ``create_app``; safe under gunicorn.

Under gunicorn each worker is a process. With ``PROMETHEUS_MULTIPROC_DIR`` set (``bridge serve``
and ``deploy/gunicorn.conf.py`` set it before any worker starts, and remove a dead worker's
files in ``child_exit``) counters and histograms are written to per-process files there, and
``/metrics`` sums them over every worker, so whichever worker answers the scrape reports the
whole server. Without it (tests, the demo) one process, one registry.

Gauges that describe state rather than events (signing-key days to expiry) are computed at
scrape time by the answering worker: every worker reads the same key directory.

Names (all prefixed ``bridge_``):
  logins_total{connector,outcome}              sign-ins: success | failure | denied
  grants_issued_total{path,kind}               credentials handed out: path jwt|saml|passthrough
  sts_latency_seconds{operation}               STS call time (retries included)
  sts_errors_total{code}                       STS failures by AWS error code (or timeout/unavailable/busy)
  sts_in_flight                                STS calls waiting right now, summed over live workers
  credential_cache_total{result}               hit | miss
  redis_errors_total{error}                    Redis failures by exception type
  upstream_stale_total{connector,document}     an IdP document could not be refreshed: last good copy used
  audit_write_errors_total{sink}               audit records that could not be written
  rate_limited_total{kind}                     refused by rate_limits (sign_in | credentials | device | device_code |
                                               sso_register)
  http_requests_total{endpoint,method,status}  and http_request_duration_seconds{endpoint}
  signing_key_expiry_days{kind,kid,state}      days until a key retires / its certificate ends
  rules_reload_failures_total{reason}          refused reloads: invalid | error | empty | shrink (per worker:
                                               each worker reloads, and refuses, on its own)
  rules_info{version} (1), rules_count,        the rules the answering worker serves, and whether its last
  rules_last_reload_failed (0/1)               reload failed (scrape time, like the key gauges)
  sso_clients_registered_total{outcome}        IAM Identity Center RegisterClient: registered | address_full |
                                               total_full (refused by a cap; rate-limited ones: rate_limited_total)
  sso_clients                                  registrations alive now (read from the store at scrape time;
                                               no sample when the store does not answer)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# (kind, kid, state, expires_at epoch) for each published key
KeyInfo = tuple[str, str, str, int]
# RuleBook.status(): version, count, last_reload_failed, …
RulesStatus = dict[str, Any]


class _KeyExpiry(Collector):
    def __init__(self, keys: Callable[[], Iterable[KeyInfo]], clock: Callable[[], float]) -> None:
        self.keys = keys
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("bridge_signing_key_expiry_days",
                              "Days until a published signing key retires or its certificate expires "
                              "(JWT keys without a retirement date: until issuer.key_max_age_days).",
                              labels=["kind", "kid", "state"])
        now = self.clock()
        for kind, kid, state, expires_at in self.keys():
            g.add_metric([kind, kid, state], round((expires_at - now) / 86400, 3))
        yield g


class _Rules(Collector):
    def __init__(self, status: Callable[[], RulesStatus | None]) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        st = self.status()
        if st is None:
            return
        info = GaugeMetricFamily("bridge_rules_info", "The rules version the answering worker serves (always 1).",
                                 labels=["version"])
        info.add_metric([st["version"]], 1)
        yield info
        yield GaugeMetricFamily("bridge_rules_count", "Rules in force in the answering worker.", value=st["count"])
        yield GaugeMetricFamily("bridge_rules_last_reload_failed", "1 when the answering worker's last rules "
                                "reload was refused (it serves the rules it had).",
                                value=int(st["last_reload_failed"]))


class _SsoClients(Collector):
    def __init__(self, count: Callable[[], int] | None) -> None:
        self.count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.count is None:
            return
        try:
            value = self.count()
        except Exception:  # noqa: BLE001 - the store is down: the scrape still answers, without this sample
            return
        yield GaugeMetricFamily("bridge_sso_clients", "IAM Identity Center client registrations alive now "
                                "(cli.sso_clients_max caps them).", value=value)


class Metrics:
    """Every metric the bridge records. One per app; no module-level metric objects."""

    def __init__(self, keys: Callable[[], Iterable[KeyInfo]] = lambda: (),
                 clock: Callable[[], float] | None = None,
                 rules: Callable[[], RulesStatus | None] = lambda: None) -> None:
        import time

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        r = self.registry
        self.logins = Counter("bridge_logins", "Sign-ins by connector and outcome.", ["connector", "outcome"],
                              registry=r)
        self.grants_issued = Counter("bridge_grants_issued", "Credentials issued, by grant path.",
                                     ["path", "kind"], registry=r)
        self.sts_latency = Histogram("bridge_sts_latency_seconds", "STS call latency, retries included.",
                                     ["operation"], buckets=STS_BUCKETS, registry=r)
        self.sts_errors = Counter("bridge_sts_errors", "STS failures by error code.", ["code"], registry=r)
        self.sts_in_flight = Gauge("bridge_sts_in_flight", "STS calls waiting for an answer now (the HPA's signal).",
                                   registry=r, multiprocess_mode="livesum")
        self.credential_cache = Counter("bridge_credential_cache", "Credential cache lookups.", ["result"],
                                        registry=r)
        self.redis_errors = Counter("bridge_redis_errors", "Redis failures by exception type.", ["error"],
                                    registry=r)
        self.upstream_stale = Counter("bridge_upstream_stale", "IdP documents (discovery, JWKS, SAML metadata) "
                                      "that could not be refreshed: the last good copy was used.",
                                      ["connector", "document"], registry=r)
        self.audit_errors = Counter("bridge_audit_write_errors", "Audit records that could not be written.",
                                    ["sink"], registry=r)
        self.rate_limited = Counter("bridge_rate_limited", "Requests refused by a rate limit.", ["kind"],
                                    registry=r)
        self.http_requests = Counter("bridge_http_requests", "HTTP requests by endpoint and status.",
                                     ["endpoint", "method", "status"], registry=r)
        self.http_latency = Histogram("bridge_http_request_duration_seconds", "HTTP request duration.",
                                      ["endpoint"], buckets=HTTP_BUCKETS, registry=r)
        self.rules_reload_failures = Counter("bridge_rules_reload_failures", "Rules reloads refused (the rules "
                                             "in force were kept), by reason.", ["reason"], registry=r)
        self.sso_clients_registered = Counter("bridge_sso_clients_registered", "IAM Identity Center RegisterClient "
                                              "calls by outcome (registered, or refused by a cap).", ["outcome"],
                                              registry=r)
        self._keys = _KeyExpiry(keys, clock or time.time)
        self._rules = _Rules(rules)
        self._sso_clients = _SsoClients(None)
        self._scrape_time = CollectorRegistry()
        self._scrape_time.register(self._keys)
        self._scrape_time.register(self._rules)
        self._scrape_time.register(self._sso_clients)

    def watch(self, *, keys: Callable[[], Iterable[KeyInfo]] | None = None,
              rules: Callable[[], RulesStatus | None] | None = None,
              sso_clients: Callable[[], int] | None = None) -> None:
        """Say where the scrape-time gauges read from, once those exist (the key source and the
        rules book are built after the metrics they report failures to)."""
        if keys is not None:
            self._keys.keys = keys
        if rules is not None:
            self._rules.status = rules
        if sso_clients is not None:
            self._sso_clients.count = sso_clients

    def render(self) -> tuple[bytes, str]:
        """The exposition text for ``/metrics`` and its content type."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            body = generate_latest(merged)
        else:
            body = generate_latest(self.registry)
        return body + generate_latest(self._scrape_time), CONTENT_TYPE_LATEST

    # Callbacks handed to the layers that must not know about Prometheus.
    def redis_error(self, exc: BaseException) -> None:
        self.redis_errors.labels(type(exc).__name__).inc()

    def sts_call(self, operation: str, seconds: float, error_code: str | None) -> None:
        if error_code != "busy":  # refused by the bulkhead: STS was never called
            self.sts_latency.labels(operation).observe(seconds)
        if error_code is not None:
            self.sts_errors.labels(error_code).inc()

    def sts_in_flight_change(self, delta: int) -> None:
        self.sts_in_flight.inc(delta)

    def rules_reload_failed(self, kind: str) -> None:
        self.rules_reload_failures.labels(kind).inc()

    def sso_registered(self, outcome: str) -> None:
        self.sso_clients_registered.labels(outcome).inc()

    def stale(self, connector: str, document: str) -> None:
        self.upstream_stale.labels(connector, document).inc()

    def value(self, name: str, **labels: Any) -> float:
        """One sample's current value in this process (tests and the benchmark)."""
        v = self.registry.get_sample_value(name, labels)
        return float(v) if v is not None else 0.0
