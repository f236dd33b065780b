"""SCIM's error response (RFC 7644 §3.12): ``status``, optional ``scimType``, ``detail``."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    """A refused SCIM request: nothing was changed. ``scim_type`` is one of RFC 7644 Table 9 (invalidFilter,
    tooMany, uniqueness, mutability, invalidSyntax, invalidPath, noTarget, invalidValue, invalidVers, ...)."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None, *, allowed: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.allowed = allowed  # a 405's Allow header

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            out["scimType"] = self.scim_type
        return out


def bad(detail: str, scim_type: str = "invalidValue") -> ScimError:
    return ScimError(400, detail, scim_type)


def not_found(kind: str, rid: str) -> ScimError:
    return ScimError(404, f"{kind} {rid[:64]!r} not found")
