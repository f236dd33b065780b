"""Step-up as a use case (docs/step-up-mfa.md): ask the IdP of a signed-in session for a fresh MFA sign-in,
and verify the answer when it comes back. No Flask here.

``StepUps.request`` builds the ``StepUpRequest`` that ``LoginFlow.begin`` keeps in the PendingLogin (who
asked: the session's hash, connector, issuer, subject; when; the connector's ``max_age``).
``StepUps.verifier(current_session)`` is what ``LoginFlow.complete`` calls on a step-up's callback: the
pure checks of bridge/core/stepup.py against the connector's ``step_up_policy()`` and the session store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from bridge.core import stepup
from bridge.core.sessions import Sessions
from bridge.domain.errors import StepUpRefused
from bridge.domain.identity import Identity, PendingLogin
from bridge.domain.stepup import StepUpRequest
from bridge.telemetry.logs import event
from bridge.upstream.base import Connector, StepUp


class StepUps:
    def __init__(self, sessions: Sessions, connectors: Mapping[str, Connector],
                 clock: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self.connectors = connectors
        self.clock = clock

    def request(self, connector: Connector, session_hash: str, identity: Identity) -> StepUpRequest | None:
        """The step-up to ask of ``connector`` for the session ``session_hash`` of ``identity``; None when the
        connector cannot ask for one (not a ``StepUp``: a plain sign-in is all it offers)."""
        if not isinstance(connector, StepUp) or connector.id != identity.connector_id:
            return None
        return StepUpRequest(session_hash=session_hash, connector_id=identity.connector_id, issuer=identity.issuer,
                             subject=identity.subject, asked_at=int(self.clock()),
                             max_age=connector.step_up_policy().max_age)

    def verifier(self, current_session: str | None) -> Callable[[PendingLogin, Identity], Identity]:
        """The check of a step-up's answer, for a callback delivered by a browser holding ``current_session``."""

        def verify(pending: PendingLogin, identity: Identity) -> Identity:
            request = pending.step_up
            connector = self.connectors.get(pending.connector_id)
            if request is None:
                return identity
            if not isinstance(connector, StepUp):
                raise StepUpRefused("step-up pending for a connector that no longer offers it",
                                    code="step_up_session_changed")
            now = int(self.clock())
            record = self.sessions.get(request.session_hash)
            live = record is not None and (not record.expires_at or record.expires_at > now)
            verified = stepup.verify(request, identity, connector.step_up_policy(), now=now,
                                     current_session=current_session, session_live=live)
            event("step_up_verified", connector=connector.id, subject=identity.subject,
                  amr=list(identity.amr), acr=identity.acr)
            return verified

        return verify
