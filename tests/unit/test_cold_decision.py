"""The first decision after a rules reload or a worker's start (issue 27, bench/bench_portal.py): the
rules' constant roles worked out at load (``warm_fixed_roles``, ``AccessPoint.warm``), a large rule set
frozen out of the collector's scans (``gcpause.settle``), and the memo key built without ``asdict``."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from typing import Any

import pytest

from bridge.config import settings_from_dict
from bridge.core import access as access_mod
from bridge.core.access import AccessPoint, memo_digest, rule_book
from bridge.core.access_requests import RequestLedger
from bridge.core.notify import Notifier
from bridge.domain.identity import Identity
from bridge.mapping import GrantDefaults, decide, load_mapping, render, warm_fixed_roles
from bridge.mapping.gcpause import settle
from bridge.storage.memory import MemoryStore
from bridge.telemetry.audit import Auditor
from bridge.web.services import grant_defaults
from tests.modules import ListSink

ACCOUNTS = [f"{100000000000 + i}" for i in range(20)]
ALICE = Identity(connector_id="dev", subject="alice", issuer="dev", email="alice@example.com", groups=("everyone",))


def rules_doc(extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"accounts": {a: {"alias": f"team-{i}", "roles": {"Admin": {"max_session_duration": 7200}}}
                         for i, a in enumerate(ACCOUNTS)},
            "rules": [{"name": "everything", "match": {"group": "everyone"},
                       "grants": [{"account": a, "role": "Admin"} for a in ACCOUNTS]},
                      {"name": "templated", "match": {"group": "everyone"},
                       "grants": [{"role_arn": "arn:aws:iam::{claims.account}:role/Dev"}]},
                      *(extra or [])]}


def counted_roles(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The grants whose role ``render._role`` works out from now on (a constant role's comes from the table)."""
    calls: list[object] = []
    real = render._role

    def spy(*a: Any) -> Any:
        calls.append(a[0])
        return real(*a)

    monkeypatch.setattr(render, "_role", spy)
    return calls


def test_warming_works_out_the_constant_roles_and_the_decision_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    d = GrantDefaults("sts.amazonaws.com")
    cold = decide(load_mapping(rules_doc()), ALICE, d)
    m = load_mapping(rules_doc())
    assert warm_fixed_roles(m.compiled, d) == len(ACCOUNTS) + 1  # 20 constant roles, one templated (per identity)
    calls = counted_roles(monkeypatch)
    warm = decide(m, ALICE, d)
    assert len(calls) == 1  # only the templated role is worked out per identity; the constant ones: from the table
    assert [g.role_arn for g in warm.grants] == [g.role_arn for g in cold.grants]
    assert warm.grants == cold.grants and len(warm.grants) == len(ACCOUNTS)
    other = replace(d, audience="sts.example.com")
    decide(m, ALICE, other)  # other defaults: their own table, worked out on use
    assert len(calls) == 1 + len(ACCOUNTS) + 1


def point(doc: dict[str, Any]) -> AccessPoint:
    settings = settings_from_dict({"base_url": "https://bridge.example.com", "insecure_dev_login": True,
                                   "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "x"}]}],
                                   "mapping": doc})
    store = MemoryStore("t:")
    ledger = RequestLedger(settings.requests, store, Auditor(ListSink()), approve_url="https://x/approve",
                           notifier=Notifier(settings.requests, sleep=lambda s: None))
    return AccessPoint(rule_book(settings), {}, Auditor(ListSink()), defaults=grant_defaults(settings),
                       admin=settings.admin, requests=ledger)


def test_the_decision_point_warms_at_start_and_after_each_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    ap = point(rules_doc())
    compiled = ap.rules.current.compiled
    assert len(compiled.fixed) == 2  # with and without pass-through, before any decision
    new = {"name": "new", "match": {"group": "nobody"}, "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNTS[0]}:role/X"}]}
    current = [rules_doc([new])]
    book = ap.rules = type(ap.rules)(ap.rules.current, loader=lambda: load_mapping(current[0]))
    ap.watch(book)
    seen: list[tuple[bool, int]] = []  # at load: the old rules still in force, the new ones already warmed
    book.on_load.append(lambda m: seen.append((book.current.compiled is compiled, len(m.compiled.fixed))))
    assert book.reload()
    assert seen == [(True, 2)]
    assert book.current.compiled is not compiled and len(book.current.compiled.fixed) == 2
    calls = counted_roles(monkeypatch)
    assert len(ap.decide(ALICE).grants) == len(ACCOUNTS)
    assert len(calls) == 1  # the templated role only


@pytest.fixture
def unfrozen() -> Any:
    yield
    gc.unfreeze()  # leave the collector as the other tests expect it


def test_a_large_rule_set_is_frozen_out_of_the_collectors_scans(monkeypatch: pytest.MonkeyPatch,
                                                                unfrozen: None) -> None:
    gc.unfreeze()
    point(rules_doc())
    assert gc.get_freeze_count() == 0  # 21 grants: below SETTLE_GRANTS, nothing frozen
    monkeypatch.setattr(access_mod, "SETTLE_GRANTS", 10)
    ap = point(rules_doc())
    assert gc.get_freeze_count() > 0
    assert not scanned(ap.rules.current.compiled)


def scanned(x: object) -> bool:
    """Whether the collector's generations hold ``x`` (frozen objects are in none of them)."""
    return any(o is x for o in gc.get_objects())


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_settle_collects_what_the_previous_settle_froze(unfrozen: None) -> None:
    node = Node()
    ref = weakref.ref(node)
    settle()
    assert not scanned(node)  # frozen: out of every generation the collector scans
    del node
    gc.collect()
    assert ref() is not None  # frozen garbage stays until the next settle
    settle()
    assert ref() is None


def test_the_memo_key_sees_every_field_the_rules_can_and_no_secret() -> None:
    base = memo_digest(ALICE)
    assert memo_digest(replace(ALICE)) == base
    for change in ({"groups": ("everyone", "admins")}, {"claims": {"department": "x"}}, {"mfa": True},
                   {"email": "bob@example.com"}, {"subject": "bob"}, {"amr": ("mfa",)}, {"acr": "x"},
                   {"authn_time": 1}, {"connector_id": "other"}, {"issuer": "other"}, {"name": "A"}):
        assert memo_digest(replace(ALICE, **change)) != base, change
    assert memo_digest(replace(ALICE, passthrough="secret-token", upstream={"refresh_token": "r"})) == base


def test_a_failing_load_subscriber_keeps_the_rules_in_force() -> None:
    """Preparing runs the code a decision runs: rules it fails on would fail every decision, so they never go in
    force — the reload fails as a broken file does (kept version, last_failure), nothing half-swapped."""
    ap = point(rules_doc())
    current = [rules_doc()]
    book = ap.rules = type(ap.rules)(ap.rules.current, loader=lambda: load_mapping(current[0]))

    def broken(m: object) -> None:
        raise RuntimeError("boom")

    book.on_load.append(broken)
    old = book.current
    assert not book.reload() and book.current is old and book.last_failure == "error"
    assert book.last_problems == ["unexpected RuntimeError while preparing the rules"]
    book.on_load.remove(broken)
    assert book.reload() and book.current is not old and book.last_failure is None


def test_a_decided_grant_carries_the_id_of_its_role() -> None:
    from bridge.domain.identity import grant_id_for

    m = load_mapping(rules_doc())
    for g in decide(m, ALICE, GrantDefaults("sts.amazonaws.com")).grants:
        assert g.id == grant_id_for(g.role_arn)
        other = replace(g, role_arn=f"arn:aws:iam::{ACCOUNTS[0]}:role/Other")
        assert other.id == grant_id_for(other.role_arn) != g.id  # a changed copy: its own id, never the old one
