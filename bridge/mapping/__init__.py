"""Mapping seam: rules over an identity's claims decide its AWS grants — and say why. Pure.

Public API (all pure: values in, values out; no I/O, no clock):

- ``load_mapping(raw, partition=, connectors=) -> MappingSettings``: validate and compile a
  ``mapping:`` document; raises ``ConfigError`` listing every problem with its path.
- ``evaluate(settings, identity, default_audience=, default_path=, saml_provider=) -> [Grant]``:
  the grants, one per role, in the file order of the rules that own them (indexed: cheap with
  10,000 rules and 1,000 groups).
- ``explain(...) -> [RuleResult]``: every rule in file order — matched or not, why (the failing
  condition and the values it saw), the grants it owns, what it withheld and notes (sanitizing,
  merging, dropped tags). ``report``/``report_text`` turn that into JSON or text.
- ``decide(settings, identity, GrantDefaults(...)) -> Decision``: ``evaluate`` plus withheld
  grants and the MFA-locked ones (for the portal's step-up prompt).

Contract: the same rules and identity give the same grants in the same order. Every grant
satisfies AWS's limits (≤ 50 tags, key/value lengths and characters, no ``aws:``, no
case-duplicate keys, transitive ⊆ tags, session name/source identity ``[\\w+=,.@-]{2,64}``).
Merging, sanitizing and deny semantics: see ``engine`` and docs/rules.md.
Not verified here: that a role exists, trusts the bridge, or allows ``sts:TagSession`` (AWS
decides that) — nor that ``mfa`` is true for a reason: the connector decides what counts as MFA.

Layout (imports run one way, down this list; ``tests/unit/test_architecture.py`` keeps it so):

- ``settings``: ``MappingSettings`` (the document plus its compiled rule set) and ``load_mapping``;
- ``compiler`` (catalog, conditions, rules, conflicts, index) with ``grants`` (grants and denies):
  the validated schema → a ``RuleSet``, every problem with its path;
- ``model``: the pydantic schema only (and the old flat form's conversion) — it knows no compiler;
- ``engine`` (match, merge, deny, check) with ``render`` (one grant) → ``results``; ``report`` words them;
- ``ruleset`` (what the engine runs), ``conditions``, ``template``, ``paths``: the compiled pieces;
- ``passthrough``: grants for ``aws_passthrough`` SAML connectors (no rules).

Example::

    ms = load_mapping({"rules": [{"name": "admins", "match": {"group": "aws-admins"},
                                  "grants": [{"role_arn": "arn:aws:iam::123456789012:role/Admin"}]}]})
    grants = evaluate(ms, identity, default_audience="sts.amazonaws.com")
"""

from __future__ import annotations

from bridge.mapping.compiler import compile_mapping
from bridge.mapping.engine import decide, evaluate, explain, resolve_claim
from bridge.mapping.model import Rule
from bridge.mapping.passthrough import passthrough_grants
from bridge.mapping.render import warm_fixed_roles
from bridge.mapping.report import report, report_text
from bridge.mapping.results import Decision, GrantDefaults, Requestable, RuleResult, Withheld
from bridge.mapping.ruleset import RuleSet
from bridge.mapping.settings import MappingSettings, load_mapping

__all__ = ["Decision", "GrantDefaults", "MappingSettings", "Requestable", "Rule", "RuleResult", "RuleSet", "Withheld",
           "compile_mapping", "decide", "evaluate", "explain", "load_mapping", "passthrough_grants", "report",
           "report_text", "resolve_claim", "warm_fixed_roles"]
