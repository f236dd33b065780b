"""Mapping seam: ``evaluate(settings, identity, ...) -> [Grant]`` and ``explain``. Pure.

Contract: given the same rules and identity, the same grants in the same order (rule file
order). Deterministic merging: the first rule granting a role sets everything; later rules
for the same role are reported by ``explain`` as "already granted" and ignored.
Not verified here: that the role exists or trusts the bridge (AWS decides that).

Example::

    grants = evaluate(MappingSettings(rules=[Rule(name="admins", group="aws-admins",
                      role_arn="arn:aws:iam::123456789012:role/Admin")]), identity,
                      default_audience="sts.amazonaws.com")
"""

from __future__ import annotations

from bridge.mapping.engine import RuleResult, evaluate, explain, resolve_claim
from bridge.mapping.model import MappingSettings, Rule
from bridge.mapping.passthrough import passthrough_grants

__all__ = ["MappingSettings", "Rule", "RuleResult", "evaluate", "explain", "passthrough_grants", "resolve_claim"]
