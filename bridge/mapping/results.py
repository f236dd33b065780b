"""What the rules engine answers: ``RuleResult`` per rule, ``Decision`` for a sign-in, ``Withheld`` for a
grant a matching rule does not give (and why), and ``GrantDefaults`` for what rules leave unsaid. Pure values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from bridge.domain.identity import Grant
from bridge.mapping.ruleset import RequestPolicy


@dataclass(frozen=True)
class GrantDefaults:
    """What a rule does not say itself: token audience, AWS path, IAM SAML provider name."""

    audience: str
    path: str = "jwt"
    saml_provider: str = "FederationBridge"
    # Whether the identity's connector brings an artifact to redeem (OIDC with aws_passthrough): if
    # not, a ``path: passthrough`` grant is withheld (``no_passthrough``), never offered to fail at STS.
    passthrough: bool = True


@dataclass(frozen=True)
class Withheld:
    """A grant a matching rule would give but does not, and why.

    ``code``: ``mfa`` (sign in with MFA to get it; ``grant`` is what you would get), ``denied``
    (a deny rule), ``required_tag``, ``invalid`` (role or provider did not render to something
    AWS accepts), ``limits`` (the final AWS-limits check failed), ``no_passthrough`` (a ``path:
    passthrough`` grant for an identity whose connector has no ``aws_passthrough``); for
    ``aws_passthrough`` SAML sign-ins: ``role_attribute_missing``, ``role_value_malformed``,
    ``role_provider_mismatch``, ``aws_rule_<n>`` (the upstream assertion breaks §1.10 rule n);
    ``request`` (given on request: ``grant`` is what an approved request gives, ``request`` its policy;
    an ``mfa`` one of a grant given on request carries its policy too).
    """

    role_arn: str | None
    code: str
    reason: str
    grant: Grant | None = None
    request: RequestPolicy | None = None

    def to_json(self) -> dict[str, Any]:
        return {"role_arn": self.role_arn, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class RuleResult:
    """What one rule did for one identity: matched or not, why, the grants it owns, notes."""

    rule: str
    matched: bool
    reason: str
    grants: tuple[Grant, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    withheld: tuple[Withheld, ...] = ()
    kind: str = "grant"  # or "deny"
    description: str = ""

    @property
    def grant(self) -> Grant | None:
        """The first grant this rule owns (most rules grant one role)."""
        return self.grants[0] if self.grants else None

    @property
    def outcome(self) -> str:
        """``no match`` | ``deny`` | ``granted`` | ``withheld`` | ``merged`` (its roles were already granted)."""
        if not self.matched:
            return "no match"
        if self.kind == "deny":
            return "deny"
        if self.grants:
            return "granted"
        return "withheld" if self.withheld else "merged"

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "matched": self.matched, "outcome": self.outcome, "reason": self.reason,
                "grants": [g.to_json() for g in self.grants], "withheld": [w.to_json() for w in self.withheld],
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Requestable:
    """A role the rules give on request: the grant an approved request activates, and its policy."""

    grant: Grant
    policy: RequestPolicy


@dataclass
class Decision:
    """``results``: every rule (explain) or only the rules that matched (evaluate), in file order."""

    results: list[RuleResult]

    @cached_property  # asked several times per decision (locked, requestable): 5,000 grants are common
    def grants(self) -> list[Grant]:
        return [g for r in self.results for g in r.grants]

    @property
    def withheld(self) -> list[tuple[str, Withheld]]:
        return [(r.rule, w) for r in self.results for w in r.withheld]

    @property
    def locked(self) -> list[Grant]:
        """Roles the identity would get by signing in with MFA (not granted otherwise, not denied)."""
        locked = [w for _, w in self.withheld if w.code == "mfa" and w.grant is not None]
        granted = {g.role_arn for g in self.grants} if locked else set()
        out: dict[str, Grant] = {}
        for w in locked:
            if w.grant is not None and w.role_arn not in granted:
                out.setdefault(w.grant.role_arn, w.grant)
        return list(out.values())

    @property
    def on_request(self) -> dict[tuple[str, str], RequestPolicy]:
        """(rule, role ARN) → policy of every grant a matching rule gives on request, not denied — requestable,
        MFA-locked on this sign-in, or also given outright by another rule: what backs an access request."""
        out: dict[tuple[str, str], RequestPolicy] = {}
        for rule, w in self.withheld:
            if w.code in ("request", "mfa") and w.request is not None and w.grant is not None:
                out.setdefault((rule, w.grant.role_arn), w.request)
        return out

    @property
    def requestable(self) -> list[Requestable]:
        """Roles the identity may request (given on request by a matching rule, not granted otherwise,
        not denied); an MFA-locked one is locked, not requestable, until the sign-in has MFA."""
        offered = [w for _, w in self.withheld if w.code == "request"]
        granted = {g.role_arn for g in self.grants} if offered else set()
        out: dict[str, Requestable] = {}
        for w in offered:
            if w.grant is not None and w.request is not None and w.role_arn not in granted:
                out.setdefault(w.grant.role_arn, Requestable(w.grant, w.request))
        return list(out.values())
