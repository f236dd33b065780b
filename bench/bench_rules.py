"""Rules engine: evaluation time for 100 / 1,000 / 10,000 rules × identities with 10 / 1,000 groups,
the 1k → 10k cost ratio, and the time to load (parse, validate, compile) 10,000 rules from a file.

The rule mix is what a large organisation writes: mostly one rule per AWS group (exact group
match, 85 %), some claim lists (`in`, 5 %), `all` with a `not` (3 %), regexes with captures over
groups (3 %), e-mail domains (`ends_with`, 1 %), globs (1 %), deny rules (1 %), `any` of a group
and a claim (1 %), plus 5 convention rules (`aws#<account>#<role>`) that serve every account.
The identities carry the same ~20 matching groups at every rule count (so the work per match is
constant) and fill up with unrelated groups. One core, no I/O: ``mapping.evaluate`` only.

    .venv/bin/python bench/bench_rules.py [--repeat 200]
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


def median_ms(fn: Any, repeat: int) -> float:
    for _ in range(min(20, repeat)):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200, help="evaluations per figure (median reported)")
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}, "
          f"Python {platform.python_version()}, libyaml {'yes' if yaml.__with_libyaml__ else 'no'}; one core")
    figures: dict[tuple[int, int], float] = {}
    for n in (100, 1000, 10000):
        ms = mapping.load_mapping(make_rules(n), connectors=["corp"])
        rs = ms.compiled
        for g in (10, 1000):
            ident = make_identity(g)
            got = mapping.evaluate(ms, ident, default_audience="sts.amazonaws.com")
            figures[(n, g)] = median_ms(
                lambda ms=ms, ident=ident: mapping.evaluate(ms, ident, default_audience="sts.amazonaws.com"),
                args.repeat)
            print(f"{n:6d} rules ({len(rs.unindexed)} unindexed) x {len(ident.groups):5d} groups: "
                  f"{figures[(n, g)]:7.3f} ms median, {len(got)} grants")
            print(f"BENCH eval_{n}_rules_{g}_groups {figures[(n, g)]:.3f} ms")
    for g in (10, 1000):
        print(f"BENCH ratio_10000_to_1000_rules_{g}_groups {figures[(10000, g)] / figures[(1000, g)]:.2f} ratio")
    ms = mapping.load_mapping(make_rules(10000), connectors=["corp"])
    ident = make_identity(1000)
    explain_ms = median_ms(lambda: mapping.explain(ms, ident, default_audience="sts.amazonaws.com"), 10)
    print(f"BENCH explain_10000_rules_1000_groups {explain_ms:.1f} ms")

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
