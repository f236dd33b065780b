"""What a step-up sign-in asked for (docs/step-up-mfa.md "Asking the IdP"): kept in the PendingLogin, so
the callback knows a step-up was asked, for whom, and by which session. Never trusted as proof: the
callback verifies the IdP's answer (bridge/core/stepup.py); this only says what to verify it against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class StepUpRequest:
    """A step-up asked at ``asked_at`` (epoch seconds) by the session whose hash is ``session_hash``, for the
    user ``issuer`` + ``subject`` of connector ``connector_id``: a sign-in no older than ``max_age``
    seconds, with MFA. What else the IdP is asked (acr_values, AuthnContext) is the connector's settings'."""

    session_hash: str
    connector_id: str
    issuer: str
    subject: str
    asked_at: int
    max_age: int

    def __repr__(self) -> str:  # the session hash keys the session record: not in logs
        return f"StepUpRequest(connector_id={self.connector_id!r}, subject={self.subject!r}, max_age={self.max_age})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StepUpRequest:
        return cls(session_hash=str(d["session_hash"]), connector_id=str(d["connector_id"]),
                   issuer=str(d["issuer"]), subject=str(d["subject"]), asked_at=int(d["asked_at"]),
                   max_age=int(d["max_age"]))


@dataclass(frozen=True)
class StepUpPolicy:
    """What a connector's step-up answer is verified against: ``max_age`` seconds of freshness (plus
    ``clock_skew``), the accepted ``amr`` values and ``acr`` / AuthnContextClassRef values, and
    ``mfa_max_age`` (None: an MFA sign-in counts for the whole session)."""

    max_age: int
    accepted_amr: frozenset[str] = frozenset()
    accepted_acr: frozenset[str] = frozenset()
    clock_skew: int = 60
    mfa_max_age: int | None = None
