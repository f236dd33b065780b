"""What the strict AWS-rules validators report: one ``Problem`` per broken rule. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One broken AWS rule.

    ``rule`` is the rule number of docs/aws-rules.md (§2.7 for JWTs and the API parameters, §1.10
    for SAML responses), ``path`` says where in the artifact (``claims.aud``, ``header.kid``,
    ``Assertion/Conditions``, ``Attribute:Role``, ``DurationSeconds``…) and ``message`` what is
    wrong. ``str()`` gives ``"<rule>: <message>"``, the text `bridge verify` prints.
    """

    rule: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"
