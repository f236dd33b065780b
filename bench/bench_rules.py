"""Rules engine: evaluation time for 100 / 1,000 / 10,000 rules × identities with 10 / 1,000 groups,
the 1k → 10k cost ratio, and the time to load (parse, validate, compile) 10,000 rules from a file.

The rule mix is what a large organisation writes: mostly one rule per AWS group (exact group
match, 85 %), some claim lists (`in`, 5 %), `all` with a `not` (3 %), regexes with captures over
groups (3 %), e-mail domains (`ends_with`, 1 %), globs (1 %), deny rules (1 %), `any` of a group
and a claim (1 %), plus 5 convention rules (`aws#<account>#<role>`) that serve every account.
The identities carry the same ~20 matching groups at every rule count (so the work per match is
constant) and fill up with unrelated groups. One core, no I/O: ``mapping.evaluate`` only.

The *unindexed mix* is the worst case of the old index: every rule a regex with no literal prefix, a
glob starting with ``*``, ``contains`` or a case-insensitive condition (10,000 of them × 1,000 groups;
targets ≤ 20 ms and 10k ÷ 1k rules ≤ 3). *Many grants*: one identity matched by 1,000 convention
groups and 1,000 exact-group rules (the per-grant cost). *Cold decision*: the decision point
(``AccessPoint.decide``, as the portal asks it) for an identity given 5,000 grants, each time for
an identity it has not decided yet under these rules (what the first view per worker and every view
after a rules reload cost); target ≤ 40 ms.

    .venv/bin/python bench/bench_rules.py [--repeat 200] [--only unindexed,many,cold]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import mapping  # noqa: E402
from bridge.config import load_settings  # noqa: E402
from bridge.domain.identity import Identity  # noqa: E402
from bridge.mapping.compiler import gc_paused  # noqa: E402

ROLES = ("Admin", "ReadOnly", "Deploy")
CONVENTION = r"aws#(?P<account>\d{12})#(?P<role>[\w+=,.@-]{1,64})"


def account(k: int) -> str:
    return str(100000000000 + k)


def make_rules(n: int) -> dict[str, Any]:
    n_accounts = max(10, n // 10)
    accounts = {account(k): {"alias": f"acct-{k}", "label": f"Account {k}",
                             "roles": {"Admin": {"max_session_duration": 43200}, "ReadOnly": {}}}
                for k in range(n_accounts)}
    grant_tags = {"Team": "{claims.department|default(none)}", "Email": "{email}"}
    rules: list[dict[str, Any]] = []
    for i in range(n):
        acct = f"acct-{i % n_accounts}"
        kind = i % 100
        name = f"r{i}"
        if kind < 85:
            role = ROLES[i % 3]
            rules.append({"name": name, "match": {"group": f"app-{i}-{role.lower()}"},
                          "grants": [{"account": acct, "role": role, "tags": grant_tags, "transitive_tags": ["Team"],
                                      "duration": {"max": 43200} if role == "Admin" else 3600}]})
        elif kind < 90:
            rules.append({"name": name, "match": {"claim": "claims.cost_center", "in": [f"cc-{i}", f"cc-{i + 1}"]},
                          "grants": [{"account": acct, "role": "ReadOnly"}]})
        elif kind < 93:
            rules.append({"name": name, "match": {"all": [{"group": f"app-{i}-ops"},
                                                          {"not": {"claim": "email",
                                                                   "ends_with": "@contractor.example.com"}}]},
                          "grants": [{"account": acct, "role": "Admin", "mfa_required": True}]})
        elif kind < 96:
            rules.append({"name": name, "match": {"claim": "groups", "regex": f"team-{i}-(?P<env>dev|stage|prod)"},
                          "grants": [{"account": acct, "role": "Deploy-{match.env}",
                                      "tags": {"Env": "{match.env}", "Team": "{claims.department|default(none)}"}}]})
        elif kind < 97:
            rules.append({"name": name, "match": {"claim": "email", "ends_with": f"@sub{i}.example.com"},
                          "grants": [{"account": acct, "role": "ReadOnly"}]})
        elif kind < 98:
            rules.append({"name": name, "match": {"claim": "groups", "glob": f"ops-{i}-*"},
                          "grants": [{"account": acct, "role": "Ops"}]})
        elif kind < 99:
            rules.append({"name": name, "match": {"group": f"suspended-{i}"}, "deny": {"accounts": [acct]}})
        else:
            rules.append({"name": name, "match": {"any": [{"group": f"x-{i}"},
                                                          {"claim": "claims.department", "equals": f"dept-{i}"}]},
                          "grants": [{"account": acct, "role": "ReadOnly"}]})
    for c in range(5):
        rules.append({"name": f"convention-{c}", "connectors": ["corp"] if c else None,
                      "match": {"claim": "groups", "regex": CONVENTION.replace("aws#", f"aws{c or ''}#")},
                      "grants": [{"role_arn": "arn:aws:iam::{match.account}:role/{match.role}",
                                  "tags": {"Role": "{match.role|lower}"}}]})
        if rules[-1]["connectors"] is None:
            del rules[-1]["connectors"]
    return {"accounts": accounts, "rules": rules}


def make_identity(groups: int) -> Identity:
    matching = [f"app-{i}-{ROLES[i % 3].lower()}" for i in range(0, 85, 7)]  # 13 exact-group rules
    matching += ["app-90-ops", "team-93-prod", "team-94-dev", "ops-97-blue", "x-99"]
    matching += [f"aws#{account(k)}#ReadOnly" for k in range(3)]
    noise = [f"{kind}-{k:05d}" for k in range(groups) for kind in ("dl", "slack", "proj")][: max(0, groups - len(
        matching))]
    all_groups = (matching + noise)[:groups] if groups < len(matching) else matching + noise
    return Identity(connector_id="corp", subject="00u1abcdef", issuer="https://idp.example.com",
                    email="alice@example.com", name="Alice Example", groups=tuple(all_groups),
                    claims={"department": "Platform", "cost_center": "cc-86"}, mfa=True)


def make_unindexed_rules(n: int) -> dict[str, Any]:
    """Rules the old index could not serve: no literal prefix, or ignoring case (one kind in eight each)."""
    n_accounts = max(10, n // 10)
    accounts = {account(k): {"alias": f"acct-{k}", "roles": {"Admin": {}, "ReadOnly": {}}} for k in range(n_accounts)}
    rules: list[dict[str, Any]] = []
    for i in range(n):
        grant = {"account": f"acct-{i % n_accounts}", "role": ROLES[i % 2]}
        match: dict[str, Any] = [
            {"claim": "groups", "regex": f"(?P<env>dev|stage|prod)-svc-{i}"},
            {"claim": "groups", "regex": f".*-admins-{i}"},
            {"claim": "groups", "regex": f"[a-z]+-{i}-ops"},
            {"claim": "groups", "regex": f"Team-{i}-(?P<tier>\\w+)", "ignore_case": True},
            {"claim": "groups", "glob": f"*-Oncall-{i}", "ignore_case": True},
            {"claim": "groups", "equals": f"Eng-{i}", "ignore_case": True},
            {"claim": "email", "ends_with": f"@Sub{i}.Example.com", "ignore_case": True},
            {"claim": "groups", "contains": f"-proj{i}-"},
        ][i % 8]
        if i % 8 == 0:
            grant = {**grant, "tags": {"Env": "{match.env}"}}
        rules.append({"name": f"u{i}", "match": match, "grants": [grant]})
    return {"accounts": accounts, "rules": rules}


def make_unindexed_identity(groups: int) -> Identity:
    """~20 groups that match one of the first 100 rules (the same at every rule count), the rest look alike."""
    matching = ["prod-svc-8", "dev-svc-16", "x-admins-1", "eu-admins-9", "abc-2-ops", "team-3-GOLD", "TEAM-11-x",
                "pager-ONCALL-4", "eng-5", "ENG-13", "a-proj7-b", "z-proj15-", "stage-svc-24", "q-admins-33",
                "team-43-red", "ENG-45", "x-proj47-y", "y-oncall-44", "dev-svc-96", "w-admins-97"]
    noise = [f"{kind}-{k:05d}" for k in range(groups) for kind in ("dev-svc", "eng", "team", "proj")]
    return Identity(connector_id="corp", subject="00u1abcdef", issuer="https://idp.example.com",
                    email="bob@sub6.example.COM", name="Bob", groups=tuple((matching + noise)[:groups]),
                    claims={}, mfa=True)


def make_many_identity(n_rules: int) -> Identity:
    """Matched by 1,000 convention groups (one grant each) and 1,000 exact-group rules."""
    exact = [f"app-{i}-{ROLES[i % 3].lower()}" for i in range(n_rules) if i % 100 < 85][:1000]
    convention = [f"aws#{account(k)}#Role{k % 7}" for k in range(1000)]
    return Identity(connector_id="corp", subject="00u1abcdef", issuer="https://idp.example.com",
                    email="alice@example.com", name="Alice Example", groups=tuple(exact + convention),
                    claims={"department": "Platform", "cost_center": "cc-86"}, mfa=True)


def cold_decision(repeat: int) -> tuple[float, float, int]:
    """The decision point for 5,000 grants (1,000 accounts × 5 roles, as bench_portal): (cold ms, warm ms,
    grants). Each cold round is a person the decision point has not decided yet under these rules."""
    from bridge.config import settings_from_dict
    from bridge.core.access import AccessPoint, rule_book
    from bridge.core.access_requests import RequestLedger
    from bridge.storage.memory import MemoryStore
    from bridge.telemetry.audit import Auditor, NullSink
    from bridge.web.services import grant_defaults

    role_names = ["Admin", "PowerUser", "Developer", "ReadOnly", "Billing"]
    accounts = {f"{100000000000 + i}": {"alias": f"team-{i:04d}", "label": f"Team {i:04d} workloads",
                                        "roles": {r: {"label": f"{r} access", "max_session_duration": 43200}
                                                  for r in role_names}} for i in range(1000)}
    rules = [{"name": "everything", "match": {"group": "everyone"},
              "grants": [{"account": a, "role": r, "duration": {"max": 43200}} for a in accounts for r in role_names]}]
    settings = settings_from_dict({"base_url": "https://bridge.example.com", "secret_key": "bench",
                                   "insecure_dev_login": True, "log_level": "WARNING",
                                   "connectors": [{"id": "dev", "type": "dev", "users": [{"subject": "alice"}]}],
                                   "mapping": {"accounts": accounts, "rules": rules}})
    auditor = Auditor(NullSink())
    ledger = RequestLedger(settings.requests, MemoryStore("bench:"), auditor, approve_url="https://bridge.example.com")
    point = AccessPoint(rule_book(settings), {}, auditor, defaults=grant_defaults(settings), admin=settings.admin,
                        requests=ledger)
    people = iter(range(10**9))

    def person() -> Identity:
        k = next(people)
        return Identity(connector_id="dev", subject=f"user-{k}", issuer="https://idp.example.com",
                        email=f"user{k}@example.com", name=f"User {k}", groups=("everyone",))

    grants = len(point.decide(person()).grants)
    cold = median_ms(lambda: point.decide(person()), repeat)
    same = person()
    warm = median_ms(lambda: point.decide(same), repeat)
    return cold, warm, grants


CLOCK = {"cpu": time.thread_time, "wall": time.perf_counter}
clock = CLOCK["cpu"]


def median_ms(fn: Any, repeat: int) -> float:
    """Median of ``repeat`` calls after a warm-up, on ``clock``: this thread's CPU time by default, so a
    machine shared with other work measures the work itself (all of it is CPU: no I/O here)."""
    for _ in range(min(20, repeat)):
        fn()
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200, help="evaluations per figure (median reported)")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="cpu",
                    help="cpu: this thread's CPU time (default; steady on a shared machine); wall: elapsed time")
    ap.add_argument("--only", default="", help="comma-separated parts: mix, unindexed, many, cold, load")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    global clock
    clock = CLOCK[args.clock]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}, "
          f"Python {platform.python_version()}, libyaml {'yes' if yaml.__with_libyaml__ else 'no'}; one core; "
          f"times are {'CPU' if args.clock == 'cpu' else 'wall-clock'} ms, load average {os.getloadavg()[0]:.1f}")
    for part, fn in (("mix", bench_mix), ("unindexed", bench_unindexed), ("many", bench_many), ("cold", bench_cold),
                     ("load", bench_load)):
        if not only or part in only:
            fn(args.repeat)
    return 0


def bench_unindexed(repeat: int) -> None:
    figures: dict[int, float] = {}
    for n in (1000, 10000):
        ms = mapping.load_mapping(make_unindexed_rules(n), connectors=["corp"])
        ident = make_unindexed_identity(1000)
        got = mapping.evaluate(ms, ident, default_audience="sts.amazonaws.com")
        full = mapping.decide(ms, ident, mapping.GrantDefaults("sts.amazonaws.com"), explain_all=True)
        assert got == full.grants, "the index changed the result"
        figures[n] = median_ms(lambda ms=ms, ident=ident: mapping.evaluate(ms, ident,
                                                                           default_audience="sts.amazonaws.com"),
                               max(10, repeat // 4))
        print(f"{n:6d} unindexed-mix rules ({len(ms.compiled.unindexed)} scanned) x 1000 groups: "
              f"{figures[n]:8.3f} ms median, {len(got)} grants")
        print(f"BENCH eval_unindexed_{n}_rules_1000_groups {figures[n]:.3f} ms")
    print(f"BENCH ratio_unindexed_10000_to_1000_rules_1000_groups {figures[10000] / figures[1000]:.2f} ratio")


def bench_many(repeat: int) -> None:
    ms = mapping.load_mapping(make_rules(10000), connectors=["corp"])
    ident = make_many_identity(10000)
    got = mapping.evaluate(ms, ident, default_audience="sts.amazonaws.com")
    t = median_ms(lambda: mapping.evaluate(ms, ident, default_audience="sts.amazonaws.com"), max(10, repeat // 10))
    print(f" 10000 rules x {len(ident.groups)} groups, many matched: {t:8.3f} ms median, {len(got)} grants, "
          f"{t * 1000 / len(got):.1f} us per grant")
    print(f"BENCH eval_many_grants_10000_rules {t:.3f} ms")
    print(f"BENCH per_grant_many_grants {t * 1000 / len(got):.2f} us")


def bench_cold(repeat: int) -> None:
    print("STUB decision-point: the AccessPoint in-process (no HTTP, no Redis session read, no page render): "
          "the decision alone; through gunicorn see bench_portal")
    cold, warm, grants = cold_decision(max(10, repeat // 10))
    print(f"decision for {grants} grants: cold {cold:.1f} ms median, warm (memo) {warm:.3f} ms")
    print(f"BENCH decision_cold_{grants}_grants {cold:.1f} ms")
    print(f"BENCH decision_warm_{grants}_grants {warm:.3f} ms")


def bench_mix(repeat: int) -> None:
    figures: dict[tuple[int, int], float] = {}
    for n in (100, 1000, 10000):
        ms = mapping.load_mapping(make_rules(n), connectors=["corp"])
        rs = ms.compiled
        for g in (10, 1000):
            ident = make_identity(g)
            got = mapping.evaluate(ms, ident, default_audience="sts.amazonaws.com")
            figures[(n, g)] = median_ms(
                lambda ms=ms, ident=ident: mapping.evaluate(ms, ident, default_audience="sts.amazonaws.com"),
                repeat)
            print(f"{n:6d} rules ({len(rs.unindexed)} unindexed) x {len(ident.groups):5d} groups: "
                  f"{figures[(n, g)]:7.3f} ms median, {len(got)} grants")
            print(f"BENCH eval_{n}_rules_{g}_groups {figures[(n, g)]:.3f} ms")
    for g in (10, 1000):
        print(f"BENCH ratio_10000_to_1000_rules_{g}_groups {figures[(10000, g)] / figures[(1000, g)]:.2f} ratio")
    ms = mapping.load_mapping(make_rules(10000), connectors=["corp"])
    ident = make_identity(1000)
    explain_ms = median_ms(lambda: mapping.explain(ms, ident, default_audience="sts.amazonaws.com"), 10)
    print(f"BENCH explain_10000_rules_1000_groups {explain_ms:.1f} ms")


def bench_load(repeat: int) -> None:

    with tempfile.TemporaryDirectory() as tmp:
        rules_file = Path(tmp) / "rules.yaml"
        rules_file.write_text(yaml.safe_dump(make_rules(10000), sort_keys=False), encoding="utf-8")
        cfg = Path(tmp) / "bridge.yaml"
        cfg.write_text("base_url: https://bridge.example.com\nconnectors: [{id: corp, type: oidc, issuer: "
                       "'https://idp.example.com', client_id: c, client_secret: s}]\n"
                       "mapping: {rules_file: rules.yaml}\n", encoding="utf-8")
        size = rules_file.stat().st_size
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            s = load_settings(cfg)
            loads.append(time.perf_counter() - t0)
        assert len(s.mapping.rules) == 10005
        t0 = time.perf_counter()
        with gc_paused():
            raw = yaml.load(rules_file.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        parse = time.perf_counter() - t0
        t0 = time.perf_counter()
        mapping.load_mapping(raw, connectors=["corp"])
        compile_s = time.perf_counter() - t0
    print(f"load 10,005 rules from a {size / 1e6:.1f} MB file: {statistics.median(loads):.2f} s median of 3 "
          f"(YAML {parse:.2f} s, validate+compile {compile_s:.2f} s)")
    print(f"BENCH load_10000_rules {statistics.median(loads):.3f} s")


if __name__ == "__main__":
    sys.exit(main())
