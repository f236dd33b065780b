"""Bulkheads without a server: the STS concurrency cap, a dropped STS connection, and the audit
trail's two modes (fail-closed: the intent before STS; fail-open: unwritable records on stderr)."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.aws.sts import StsGateway
from bridge.config import settings_from_dict
from bridge.core.credcache import NoCache
from bridge.core.issuing import CredentialIssuer, IssuerConfig
from bridge.domain.errors import StsBusy, StsUnavailable
from bridge.domain.identity import Credentials, Grant, Identity
from bridge.telemetry import audit
from bridge.telemetry.metrics import Metrics
from tests.peers.silent_sts import SilentSts

ROLE = "arn:aws:iam::123456789012:role/Admin"
ANSWER = {"Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s", "SessionToken": "t",
                          "Expiration": datetime.now(UTC) + timedelta(hours=1)},
          "AssumedRoleUser": {"Arn": "arn:aws:sts::123456789012:assumed-role/Admin/alice"}}


class HeldClient:
    """A boto3 client stand-in whose calls wait until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def assume_role_with_web_identity(self, **_: Any) -> dict[str, Any]:
        self.entered.release()
        assert self.release.wait(10)
        return ANSWER


def gateway(cap: int | None, calls: list[tuple[str, str | None]],
            in_flight: list[int]) -> tuple[StsGateway, HeldClient]:
    gw = StsGateway(region="us-east-1", endpoint_url="http://127.0.0.1:9", max_concurrency=cap,
                    on_call=lambda op, s, code: calls.append((op, code)), on_in_flight=in_flight.append)
    held = HeldClient()
    gw._client = held
    return gw, held


def assume(gw: StsGateway) -> Credentials:
    return gw.assume_role_with_web_identity(role_arn=ROLE, session_name="alice", token="x" * 40, duration=900)


def test_calls_beyond_the_cap_are_refused_at_once_and_slots_come_back() -> None:
    calls: list[tuple[str, str | None]] = []
    in_flight: list[int] = []
    gw, held = gateway(2, calls, in_flight)
    threads = [threading.Thread(target=assume, args=(gw,)) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in threads:
        assert held.entered.acquire(timeout=5)
    assert gw.bulkhead is not None and gw.bulkhead.in_flight == 2
    started = time.monotonic()
    with pytest.raises(StsBusy) as e:
        assume(gw)
    assert time.monotonic() - started < 0.5  # no waiting for a slot
    assert e.value.status == 503 and e.value.code == "sts_busy" and "sts_max_concurrency is 2" in e.value.detail
    assert calls == [("assume_role_with_web_identity", "busy")]
    held.release.set()
    for t in threads:
        t.join(5)
    assert gw.bulkhead.in_flight == 0 and sum(in_flight) == 0 and in_flight.count(1) == 2
    assert assume(gw).access_key_id == "ASIAEXAMPLE"  # the slots came back


def test_no_cap_when_none() -> None:
    gw, held = gateway(None, [], [])
    held.release.set()
    assert gw.bulkhead is None and assume(gw).access_key_id == "ASIAEXAMPLE"


def test_busy_counts_as_an_error_without_a_latency_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    m = Metrics()
    m.sts_call("assume_role_with_web_identity", 0.0, "busy")
    m.sts_in_flight_change(1)
    text = m.render()[0].decode()
    assert 'bridge_sts_errors_total{code="busy"} 1.0' in text and "bridge_sts_in_flight 1.0" in text
    assert 'bridge_sts_latency_seconds_count{operation="assume_role_with_web_identity"}' not in text


def test_cap_is_configured_per_process() -> None:
    raw = {"base_url": "https://b.example.com", "connectors": [
        {"id": "x", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}]}
    assert settings_from_dict(raw).aws.sts_max_concurrency == 4
    assert settings_from_dict({**raw, "aws": {"sts_max_concurrency": 12}}).aws.sts_max_concurrency == 12


def test_a_dropped_connection_is_sts_unavailable_not_a_bad_gateway() -> None:
    srv = SilentSts("drop")  # the peer the bulkhead tests and benchmark use
    try:
        gw = StsGateway(region="us-east-1", endpoint_url=srv.url, timeout=2, max_attempts=2)
        with pytest.raises(StsUnavailable) as e:
            assume(gw)
        assert e.value.status == 503 and e.value.code == "sts_unavailable"
        assert srv.accepted == 2  # retried like any transient failure, then given up
    finally:
        srv.close()


# -- audit ---------------------------------------------------------------------------------------

class Broken:
    name = "redis"

    def write(self, line: str) -> None:
        raise OSError("down")


def test_fail_open_writes_the_unwritable_record_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    audit.Auditor(Broken(), fail_closed=False).record("credentials", audit.Context("cid"), role_arn=ROLE,
                                                      outcome="success")
    (line,) = capsys.readouterr().err.splitlines()[-1:]
    doc = json.loads(line)
    assert doc["event"] == "audit_fallback" and doc["sink"] == "redis"
    assert doc["record"]["type"] == "credentials" and doc["record"]["role_arn"] == ROLE
    assert doc["record"]["correlation_id"] == "cid"


def test_fail_closed_writes_nothing_to_stderr_and_raises() -> None:
    out = io.StringIO()
    with pytest.raises(audit.AuditUnavailable):
        audit.Auditor(Broken(), fallback=out).record("credentials", audit.Context())
    assert out.getvalue() == ""


def test_fail_open_is_warned_at_startup() -> None:
    raw = {"base_url": "https://b.example.com", "connectors": [
        {"id": "x", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}]}
    assert not any("fail_closed" in w for w in settings_from_dict(raw).warnings())
    warned = [w for w in settings_from_dict({**raw, "audit": {"fail_closed": False}}).warnings() if "fail-open" in w]
    assert warned == ["audit.fail_closed is false: the audit trail is fail-open. When the stdout sink cannot take "
                      "a record, credentials are still handed out and the record goes to stderr only."]


class MemorySink:
    name = "memory"

    def __init__(self, fail_on: str | None = None) -> None:
        self.lines: list[dict[str, Any]] = []
        self.fail_on = fail_on

    def write(self, line: str) -> None:
        doc = json.loads(line)
        if doc["type"] == self.fail_on:
            raise OSError("full")
        self.lines.append(doc)


class RecordingSts:
    def __init__(self, sink: MemorySink) -> None:
        self.sink = sink
        self.seen_before: list[list[str]] = []

    def assume_role_with_web_identity(self, **_: Any) -> Credentials:
        self.seen_before.append([x["type"] for x in self.sink.lines])
        return Credentials("ASIAEXAMPLE", "s", "t", datetime.now(UTC) + timedelta(hours=1),
                           "arn:aws:sts::123456789012:assumed-role/Admin/alice", ROLE, "alice", "us-east-1")


SETTINGS = settings_from_dict({"base_url": "http://127.0.0.1:1", "insecure_dev_login": True,
                               "connectors": [{"id": "c", "type": "dev", "users": [{"subject": "alice"}]}]})
GRANT = Grant(role_arn=ROLE, account_id="123456789012", label="Admin", session_name="alice", via="admins",
              path="passthrough")
ALICE = Identity(connector_id="c", subject="alice", issuer="i", mfa=True)


def issue(sink: MemorySink, *, fail_closed: bool) -> tuple[RecordingSts, Any]:
    sts = RecordingSts(sink)
    iss = CredentialIssuer(IssuerConfig.from_settings(SETTINGS), None, sts,  # type: ignore[arg-type]
                           cache=NoCache(), metrics=Metrics(),
                           auditor=audit.Auditor(sink, fail_closed=fail_closed, fallback=io.StringIO()))
    try:
        return sts, iss.issue_credentials(ALICE, GRANT, 900, passthrough={"kind": "oidc", "value": "a.b.c"})
    except audit.AuditUnavailable as e:
        return sts, e


def test_fail_closed_writes_the_intent_before_sts_is_called() -> None:
    sink = MemorySink()
    sts, creds = issue(sink, fail_closed=True)
    assert isinstance(creds, Credentials)
    assert sts.seen_before == [["credentials_intent"]]
    intent, outcome = sink.lines
    assert intent["role_arn"] == outcome["role_arn"] == ROLE and intent["session_name"] == "alice"
    assert outcome["type"] == "credentials" and outcome["access_key_id"] == "ASIAEXAMPLE"


def test_fail_closed_never_calls_sts_when_the_intent_cannot_be_written() -> None:
    sts, result = issue(MemorySink(fail_on="credentials_intent"), fail_closed=True)
    assert isinstance(result, audit.AuditUnavailable) and sts.seen_before == []


def test_fail_open_writes_no_intent() -> None:
    sink = MemorySink()
    sts, creds = issue(sink, fail_closed=False)
    assert isinstance(creds, Credentials) and sts.seen_before == [[]]
    assert [x["type"] for x in sink.lines] == ["credentials"]
