"""What SCIM says about a signed-in identity, asked at sign-in, at every use of a session (and so of its CLI
and IAM Identity Center tokens) and at each token exchange (``admitted``): is the user active, and which groups
did the IdP push for them.

Matching (docs/scim.md): the identity's ``scim.claim`` (per connector: ``scim.connectors``) — its e-mail, its
subject, or a claim — compared, ignoring case, with the SCIM users' ``scim.attribute`` (userName, externalId or
any of their emails). Every SCIM user it matches counts: one inactive (or deleted) is enough to refuse; the groups
are those of the active ones. An identity SCIM does not know is left as the IdP said. An identity of a connector
SCIM governs that has no single value of the claim (none, or several) is refused (``ScimUnmatched``): fail closed,
else an IdP token without an e-mail would pass a deactivated user with the IdP's groups. No Flask here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from bridge.config.scim import ScimSettings
from bridge.domain.errors import LoginError, NotSignedIn
from bridge.domain.identity import Identity
from bridge.scim.model import is_active
from bridge.storage import SessionRecord
from bridge.storage.scim import ScimRecord, ScimStore

INDEX = {"userName": "username", "externalId": "externalid", "emails": "emails"}

_MESSAGE = "Your account has been deactivated for this application by your identity provider."
_HINT = "If you think this is a mistake, ask your administrator to reactivate your account."


class Deprovisioned(LoginError):
    """A sign-in of a user the IdP deactivated (or deleted) by SCIM: refused until it reactivates them."""

    code = "deprovisioned"
    status = 403
    title = "Your account is deactivated"
    message = _MESSAGE
    hint = _HINT


class ScimUnmatched(LoginError):
    """An identity of a connector SCIM governs without one value of the claim SCIM matches on: whether the user is
    still active cannot be told, so it is refused (fail closed)."""

    code = "scim_claim_missing"
    status = 403
    title = "Your account cannot be checked"
    message = ("Your identity provider did not send the attribute this application uses to check that your account "
               "is active, so you cannot sign in.")
    hint = "Ask your administrator to have the identity provider send it (the bridge's scim.claim)."


def ended() -> NotSignedIn:
    """What a session (or a token of it) of a deactivated user answers at its next use."""
    return NotSignedIn("the IdP deactivated this user by SCIM", code="deprovisioned", message=_MESSAGE, hint=_HINT)


@dataclass(frozen=True)
class Standing:
    """What the SCIM users an identity matches say: ``active`` only if none is inactive or deleted."""

    active: bool
    groups: tuple[str, ...]
    users: tuple[str, ...]  # the SCIM user ids


class Directory:
    """Matches identities with the SCIM users in the store."""

    def __init__(self, store: ScimStore, cfg: ScimSettings, *, workloads: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.cfg = cfg
        self.workloads = workloads  # the `type: workload` connectors: governed only when scim.connectors names them

    def claim_for(self, connector_id: str) -> str | None:
        """The claim SCIM matches for users of ``connector_id`` (None: SCIM does not govern it). Empty
        ``scim.connectors``: every sign-in connector — a CI job is no SCIM user, so not the workload ones."""
        if not self.cfg.connectors:
            return None if connector_id in self.workloads else self.cfg.claim
        return self.cfg.connectors.get(connector_id)

    def key_of(self, identity: Identity) -> str | None:
        """The identity's value SCIM matches on, lower-cased (None: not governed, or it has none — or several:
        ``standing`` refuses those of a governed connector)."""
        claim = self.claim_for(identity.connector_id)
        if claim is None:
            return None
        value: object = (identity.email if claim == "email" else identity.subject if claim == "subject"
                         else identity.claims.get(claim))
        if isinstance(value, list | tuple):
            value = value[0] if len(value) == 1 else None  # several values: not one user
        return value.strip().lower() if isinstance(value, str) and value.strip() else None

    def standing(self, identity: Identity) -> Standing | None:
        """What SCIM says of ``identity`` now; None when no SCIM user matches it (or SCIM does not govern its
        connector). ScimUnmatched when it governs it and the identity has no single value of the claim."""
        key = self.key_of(identity)
        if key is None:
            if (claim := self.claim_for(identity.connector_id)) is not None:
                raise ScimUnmatched(f"no single value of {claim!r} to match SCIM users with")
            return None
        records = [r for rid in self.store.scim_find("User", f"{INDEX[self.cfg.attribute]}:{key}")
                   if (r := self.store.scim_get("User", rid)) is not None]
        if not records:
            return None
        active = all(is_active(r.doc) and not r.deleted for r in records)
        groups = sorted({name for r in records if not r.deleted for _, name in r.groups})
        return Standing(active, tuple(groups), tuple(r.id for r in records))

    def admit(self, identity: Identity) -> None:
        """At sign-in: Deprovisioned when SCIM deactivated (or deleted) this user."""
        st = self.standing(identity)
        if st is not None and not st.active:
            raise Deprovisioned(f"SCIM user(s) {', '.join(st.users)} inactive")

    def govern(self, record: SessionRecord) -> SessionRecord | None:
        """At each use of a session: None when SCIM deactivated its user (the caller ends it); else the session
        with the groups SCIM pushed (``scim.groups``), never stored — decided again at the next use. A session
        without the claim SCIM matches on (made before sign-ins were refused for it) ends too: fail closed."""
        try:
            st = self.standing(record.identity)
        except ScimUnmatched:
            return None
        if st is None:
            return record
        if not st.active:
            return None
        if self.cfg.groups == "off" or record.passthrough_grants is not None:
            return record
        return replace(record, identity=self._grouped(record.identity, st))

    def admitted(self, identity: Identity) -> Identity:
        """At a token exchange (a verified subject token, no session): ``admit`` and ``govern`` in one —
        Deprovisioned when SCIM deactivated (or deleted) this user, ScimUnmatched when the identity lacks the claim
        SCIM matches on, else ``identity`` with SCIM's groups."""
        st = self.standing(identity)
        if st is None:
            return identity
        if not st.active:
            raise Deprovisioned(f"SCIM user(s) {', '.join(st.users)} inactive")
        return identity if self.cfg.groups == "off" else self._grouped(identity, st)

    def _grouped(self, identity: Identity, st: Standing) -> Identity:
        groups = merge(identity.groups, st.groups) if self.cfg.groups == "merge" else st.groups
        return replace(identity, groups=groups)

    def handles(self, user: ScimRecord) -> list[str]:
        """The session index names (bridge/core/sessions.py ``user_handles``) a SCIM user's sessions are under, for
        the connectors matched by e-mail or subject (others are found at their next use)."""
        values = match_values(user, self.cfg.attribute)
        claims = set(self.cfg.connectors.values()) if self.cfg.connectors else {self.cfg.claim}
        out = []
        for v in values:
            if "email" in claims:
                out.append(f"email:{v}")
            if "subject" in claims:
                out.append(f"sub:{v}")
        return out


def match_values(user: ScimRecord, attribute: str) -> list[str]:
    """The lower-cased values of ``attribute`` a SCIM user is matched by (from its index names)."""
    prefix = INDEX[attribute] + ":"
    return [n[len(prefix):] for n in user.names if n.startswith(prefix)]


def merge(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*a, *b]))


class _Sessions(Protocol):
    """What ending a user's sessions needs of bridge/core/sessions.py ``Sessions``."""

    @property
    def store(self) -> SessionIndex: ...

    def get(self, shash: str) -> SessionRecord | None: ...
    def end(self, shash: str, record: SessionRecord | None = None) -> int: ...


class SessionIndex(Protocol):
    def user_sessions(self, handle: str) -> list[str]: ...


def end_inactive(sessions: _Sessions, directory: Directory, handles: list[str]) -> int:
    """End every session filed under ``handles`` whose user SCIM now finds inactive (with its CLI and Identity
    Center tokens and the user's cached credentials: ``Sessions.end``). Returns how many ended."""
    done: set[str] = set()
    for handle in handles:
        for shash in sessions.store.user_sessions(handle):
            record = sessions.get(shash) if shash not in done else None
            if record is not None and directory.govern(record) is None:
                sessions.end(shash, record)
                done.add(shash)
    return len(done)
