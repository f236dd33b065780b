"""The typed records the bridge keeps in its store, and their JSON (the shape kept in Redis).

Every record is a frozen dataclass with ``to_json()`` / ``from_json()``. The JSON is exactly what
earlier versions wrote, so a rolling upgrade reads the sessions, tokens and device codes that are
already stored, and an older worker reads what a newer one writes:
- optional keys that were absent stay absent (``passthrough_grants``: an older worker tests for
  the key, not for its value);
- keys this version does not know are kept in ``extra`` and written back unchanged (a newer
  worker's field survives a rewrite by an older one);
- ``from_json`` ignores nothing it needs and refuses (``RecordError``) what it cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from bridge.domain.identity import Grant, Identity
from bridge.domain.identity import PendingLogin as PendingLogin  # a value type the connectors read too: re-exported


class RecordError(ValueError):
    """A stored document that does not have the shape of its record."""


def _extra(d: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


@dataclass(frozen=True)
class PassthroughInfo:
    """What an ``aws_passthrough`` sign-in's upstream artifact is worth at AWS, judged at sign-in:
    ``until`` when AWS takes it (epoch seconds), the asserted roles not offered and why
    (``not_offered``: role arn or None, code, reason), and what AWS will check that the bridge cannot
    (``warnings``). Never the artifact itself (that is kept apart, with a TTL)."""

    kind: str
    until: int
    not_offered: tuple[tuple[str | None, str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "until": self.until, "not_offered": [list(w) for w in self.not_offered],
                "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PassthroughInfo:
        return cls(kind=str(d["kind"]), until=int(d["until"]),
                   not_offered=tuple((None if w[0] is None else str(w[0]), str(w[1]), str(w[2]))
                                     for w in d.get("not_offered") or ()),
                   warnings=tuple(str(w) for w in d.get("warnings") or ()))


@dataclass(frozen=True)
class SessionRecord:
    """A browser session: the verified identity (never a list of grants to trust later, except the
    roles an ``aws_passthrough`` SAML IdP asserted), the CSRF token, and its clocks.

    ``created_at`` / ``expires_at`` (absolute timeout) are stamped by the store at creation;
    ``verified_at`` is when the IdP last vouched for the user (sign-in or re-check)."""

    identity: Identity
    csrf: str
    correlation_id: str | None = None
    verified_at: int | None = None
    created_at: int = 0
    expires_at: int = 0
    passthrough_grants: tuple[Grant, ...] | None = None
    passthrough: PassthroughInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _KNOWN = frozenset({"identity", "csrf", "correlation_id", "verified_at", "created_at", "expires_at",
                        "passthrough_grants", "passthrough"})

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.extra, "identity": self.identity.to_json(), "csrf": self.csrf,
                             "correlation_id": self.correlation_id}
        if self.verified_at is not None:
            d["verified_at"] = self.verified_at
        if self.passthrough_grants is not None:
            d["passthrough_grants"] = [g.to_json() for g in self.passthrough_grants]
        if self.passthrough is not None:
            d["passthrough"] = self.passthrough.to_json()
        d["created_at"] = self.created_at
        d["expires_at"] = self.expires_at
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SessionRecord:
        try:
            grants = d.get("passthrough_grants")
            return cls(identity=Identity.from_json(d["identity"]), csrf=str(d.get("csrf", "")),
                       correlation_id=d.get("correlation_id"),
                       verified_at=None if d.get("verified_at") is None else int(d["verified_at"]),
                       created_at=int(d.get("created_at", 0)), expires_at=int(d.get("expires_at", 0)),
                       passthrough_grants=None if grants is None else tuple(Grant.from_json(g) for g in grants),
                       passthrough=(None if d.get("passthrough") is None
                                    else PassthroughInfo.from_json(d["passthrough"])),
                       extra=_extra(d, cls._KNOWN))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"session: {type(e).__name__}: {e}") from None

    @property
    def last_verified(self) -> int:
        """When the IdP last vouched for the user (sessions from before re-checks: their creation)."""
        return self.verified_at if self.verified_at is not None else self.created_at


@dataclass(frozen=True)
class CliToken:
    """A CLI token (stored under the hash of the bearer value). It holds no identity and no grants:
    it names the session that approved it (``session``: that session's hash) and is good only while
    that session lives, and never past ``expires_at``."""

    client_id: str
    session: str
    created_at: int
    expires_at: int
    client_ip: str | None = None
    user_agent: str | None = None
    correlation_id: str | None = None
    # "access" (a bearer token), "refresh" (an Identity Center refresh token: never a bearer, stored
    # under a separate hash, see bridge/protocols/identity_center.py) or "spent" (a refresh token already used, kept
    # until it would have expired so that its reuse is seen); ``pair``: the hash of its sibling token,
    # revoked with it; ``family``: the grant it descends from (one device or authorization-code approval:
    # every token refreshed from it shares it). All written only when set: plain CLI tokens are unchanged.
    kind: str = "access"
    pair: str | None = None
    family: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "extra"}
        if d["kind"] == "access":
            del d["kind"]
        for optional in ("pair", "family"):
            if d[optional] is None:
                del d[optional]
        return {**self.extra, **d}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CliToken:
        """Refuses (``RecordError``) a token from before tokens followed their session: it carries an
        ``identity`` and no ``session``, and is not trusted."""
        if "identity" in d or "session" not in d:
            raise RecordError("cli token without its session (issued before tokens followed their session)")
        try:
            return cls(client_id=str(d["client_id"]), session=str(d["session"]), created_at=int(d["created_at"]),
                       expires_at=int(d["expires_at"]), client_ip=d.get("client_ip"), user_agent=d.get("user_agent"),
                       correlation_id=d.get("correlation_id"), kind=str(d.get("kind") or "access"),
                       pair=d.get("pair"), family=d.get("family"), extra=_extra(d, _CLI_TOKEN_KNOWN))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"cli token: {type(e).__name__}: {e}") from None


_CLI_TOKEN_KNOWN = frozenset(f.name for f in fields(CliToken)) - {"extra"}


@dataclass(frozen=True)
class DeviceApproval:
    """Which session approved a device code (never its identity or grants: those are read at use)."""

    session: str
    session_expires_at: int
    correlation_id: str | None = None


DeviceStatus = Literal["pending", "approved", "denied"]


@dataclass(frozen=True)
class DeviceCode:
    """An RFC 8628 device authorization (stored under the hash of the device code), and who asked."""

    user_code: str
    client_id: str
    status: DeviceStatus
    expires_at: int
    interval: int
    last_poll: float = 0
    client_ip: str = ""
    user_agent: str = ""
    created_at: int = 0
    grant: DeviceApproval | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.extra, "user_code": self.user_code, "client_id": self.client_id,
                             "status": self.status, "expires_at": self.expires_at, "interval": self.interval,
                             "last_poll": self.last_poll, "client_ip": self.client_ip, "user_agent": self.user_agent,
                             "created_at": self.created_at}
        if self.grant is not None:
            d["grant"] = asdict(self.grant)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeviceCode:
        try:
            status = d["status"]
            if status not in ("pending", "approved", "denied"):
                raise ValueError(f"status {status!r}")
            g = d.get("grant")
            grant = None if g is None else DeviceApproval(str(g["session"]), int(g["session_expires_at"]),
                                                          g.get("correlation_id"))
            return cls(user_code=str(d["user_code"]), client_id=str(d["client_id"]), status=status,
                       expires_at=int(d["expires_at"]), interval=int(d["interval"]),
                       last_poll=float(d.get("last_poll", 0)), client_ip=str(d.get("client_ip") or ""),
                       user_agent=str(d.get("user_agent") or ""), created_at=int(d.get("created_at", 0)),
                       grant=grant, extra=_extra(d, _DEVICE_KNOWN))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"device code: {type(e).__name__}: {e}") from None


_DEVICE_KNOWN = frozenset(f.name for f in fields(DeviceCode)) - {"extra"}


@dataclass(frozen=True)
class SsoClient:
    """A client registered through IAM Identity Center's ``RegisterClient`` (stored under its client id).
    Public clients only; the secret is kept as its SHA-256."""

    client_id: str
    secret_hash: str
    name: str
    issued_at: int
    expires_at: int
    grant_types: tuple[str, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    # ``address``: the hash of where it was registered from (what the per-address cap counts); ``use_by``:
    # until its first token it ends then (``cli.sso_client_unused_lifetime``), None once used (and for
    # registrations of earlier versions). Written only when set.
    address: str = ""
    use_by: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "client_id": self.client_id, "secret_hash": self.secret_hash, "name": self.name,
            "issued_at": self.issued_at, "expires_at": self.expires_at, "grant_types": list(self.grant_types),
            "redirect_uris": list(self.redirect_uris), "scopes": list(self.scopes)}
        if self.address:
            d["address"] = self.address
        if self.use_by is not None:
            d["use_by"] = self.use_by
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SsoClient:
        try:
            return cls(client_id=str(d["client_id"]), secret_hash=str(d["secret_hash"]), name=str(d["name"]),
                       issued_at=int(d["issued_at"]), expires_at=int(d["expires_at"]),
                       grant_types=tuple(str(x) for x in d.get("grant_types") or ()),
                       redirect_uris=tuple(str(x) for x in d.get("redirect_uris") or ()),
                       scopes=tuple(str(x) for x in d.get("scopes") or ()), address=str(d.get("address") or ""),
                       use_by=None if d.get("use_by") is None else int(d["use_by"]))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"sso client: {type(e).__name__}: {e}") from None


@dataclass(frozen=True)
class AuthCode:
    """An authorization code (stored under its hash, single use): which client asked, where it goes
    back, its PKCE challenge, and which session approved it (never its identity or grants)."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    approval: DeviceApproval
    expires_at: int
    client_ip: str = ""
    user_agent: str = ""
    family: str | None = None  # set once redeemed: kept until it expires, so a replay ends what it gave

    def to_json(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "redirect_uri": self.redirect_uri,
                "code_challenge": self.code_challenge, "approval": asdict(self.approval),
                "expires_at": self.expires_at, "client_ip": self.client_ip, "user_agent": self.user_agent,
                **({"family": self.family} if self.family else {})}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AuthCode:
        try:
            a = d["approval"]
            return cls(client_id=str(d["client_id"]), redirect_uri=str(d["redirect_uri"]),
                       code_challenge=str(d["code_challenge"]),
                       approval=DeviceApproval(str(a["session"]), int(a["session_expires_at"]),
                                               a.get("correlation_id")),
                       expires_at=int(d["expires_at"]), client_ip=str(d.get("client_ip") or ""),
                       user_agent=str(d.get("user_agent") or ""),
                       family=str(d["family"]) if d.get("family") else None)
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"auth code: {type(e).__name__}: {e}") from None


RequestStatus = Literal["pending", "approved", "denied", "revoked", "expired", "ended"]
REQUEST_STATUSES: tuple[str, ...] = ("pending", "approved", "denied", "revoked", "expired", "ended")


@dataclass(frozen=True)
class AccessRequest:
    """A request for a role the rules give on request (stored under its id; bridge/core/access_requests.py).

    It keeps the requester's identity as of the request (for the approvers' page and the approval
    re-check) and the role asked for, never a grant: while ``approved`` and before ``expires_at`` the
    decision point turns the *rules'* on-request grant for this exact account (``account``: connector,
    issuer, subject) into a usable one. ``id`` is also the correlation id of every audit record of it."""

    id: str
    account: str  # the requester's exact account handle (bridge.core.sessions.exact_handle)
    requester: Identity
    role_arn: str
    account_id: str
    label: str
    rule: str
    reason: str
    duration: int  # the access window asked for (seconds)
    status: RequestStatus
    created_at: int
    break_glass: bool = False
    decided_at: int | None = None
    decided_by: Mapping[str, Any] | None = None  # {issuer, subject, email, connector}, or {operator: name}
    comment: str = ""
    activated_at: int | None = None
    expires_at: int | None = None
    ended_at: int | None = None
    ended_by: Mapping[str, Any] | None = None
    end_reason: str = ""
    # The requester's narrower session policy (compact JSON, checked by bridge/core/request_policy.py when the
    # request was made): the grant it activates carries exactly this. None: the whole role, as the rule gives it.
    policy: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("extra", "requester")}
        d["requester"] = self.requester.to_json()
        d["decided_by"] = None if self.decided_by is None else dict(self.decided_by)
        d["ended_by"] = None if self.ended_by is None else dict(self.ended_by)
        return {**self.extra, **d}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AccessRequest:
        try:
            status = d["status"]
            if status not in REQUEST_STATUSES:
                raise ValueError(f"status {status!r}")
            def opt(k: str) -> int | None:
                return None if d.get(k) is None else int(d[k])

            return cls(id=str(d["id"]), account=str(d["account"]), requester=Identity.from_json(d["requester"]),
                       role_arn=str(d["role_arn"]), account_id=str(d.get("account_id") or ""),
                       label=str(d.get("label") or ""), rule=str(d.get("rule") or ""),
                       reason=str(d.get("reason") or ""), duration=int(d["duration"]), status=status,
                       created_at=int(d["created_at"]), break_glass=bool(d.get("break_glass")),
                       decided_at=opt("decided_at"), decided_by=d.get("decided_by"),
                       comment=str(d.get("comment") or ""), activated_at=opt("activated_at"),
                       expires_at=opt("expires_at"), ended_at=opt("ended_at"), ended_by=d.get("ended_by"),
                       end_reason=str(d.get("end_reason") or ""),
                       policy=None if d.get("policy") is None else str(d["policy"]), extra=_extra(d, _REQUEST_KNOWN))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"access request: {type(e).__name__}: {e}") from None

    def active(self, now: float) -> bool:
        """Approved and within its window."""
        return self.status == "approved" and self.expires_at is not None and now < self.expires_at


_REQUEST_KNOWN = frozenset(f.name for f in fields(AccessRequest)) - {"extra"}


@dataclass(frozen=True)
class SignInNote:
    """What the last sign-ins through one connector said about the IdP (``bridge check-config --probe``):
    when the last one was, and the warnings of the last one that had any (attribute and claim names only)."""

    last_at: int
    warned_at: int | None = None
    warnings: tuple[str, ...] = ()

    @classmethod
    def after(cls, old: SignInNote | None, at: int, warnings: list[str]) -> SignInNote:
        """The note once a sign-in at ``at`` said ``warnings``: a sign-in without any keeps the last warnings."""
        if warnings:
            return cls(at, at, tuple(warnings))
        return cls(at, old.warned_at, old.warnings) if old is not None else cls(at)

    def to_json(self) -> dict[str, Any]:
        return {"last_at": self.last_at, "warned_at": self.warned_at, "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SignInNote:
        try:
            warned = d.get("warned_at")
            return cls(int(d["last_at"]), None if warned is None else int(warned),
                       tuple(str(w) for w in d.get("warnings") or ()))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"SignInNote: {e}") from None
