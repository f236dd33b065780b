"""``/ServiceProviderConfig``, ``/ResourceTypes``, ``/Schemas`` (RFC 7643 §5-7): what this provider supports."""

from __future__ import annotations

from typing import Any

from bridge.scim.filter import CORE_GROUP, CORE_USER, ENTERPRISE_USER
from bridge.scim.model import list_response
from bridge.scim.service import MAX_COUNT

SPC = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


def service_provider_config(base: str) -> dict[str, Any]:
    return {"schemas": [SPC], "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": MAX_COUNT}, "changePassword": {"supported": False},
            "sort": {"supported": False}, "etag": {"supported": False},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer token", "primary": True,
                                       "description": "Authorization: Bearer <the token in scim.token_file>"}],
            "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"}}


def resource_types(base: str) -> list[dict[str, Any]]:
    return [
        {"schemas": [RESOURCE_TYPE], "id": "User", "name": "User", "endpoint": "/Users", "schema": CORE_USER,
         "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": False}],
         "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"}},
        {"schemas": [RESOURCE_TYPE], "id": "Group", "name": "Group", "endpoint": "/Groups", "schema": CORE_GROUP,
         "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/Group"}},
    ]


def _attr(name: str, type_: str = "string", **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "multiValued": False, "required": False, "caseExact": False,
            "mutability": "readWrite", "returned": "default", "uniqueness": "none", **kw}


def schemas(base: str) -> list[dict[str, Any]]:
    """The attributes the bridge reads (it keeps the rest as sent)."""
    multi = {"multiValued": True, "subAttributes": [_attr("value"), _attr("display"), _attr("type")]}
    user = [_attr("userName", required=True, uniqueness="server"), _attr("externalId", caseExact=True),
            _attr("displayName"), _attr("active", "boolean"), _attr("emails", "complex", **multi),
            _attr("groups", "complex", **{**multi, "mutability": "readOnly"})]
    group = [_attr("displayName", required=True, uniqueness="server"), _attr("externalId", caseExact=True),
             _attr("members", "complex", **multi)]
    return [{"schemas": [SCHEMA], "id": urn, "name": name, "attributes": attrs,
             "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{urn}"}}
            for urn, name, attrs in ((CORE_USER, "User", user), (CORE_GROUP, "Group", group),
                                     (ENTERPRISE_USER, "EnterpriseUser", []))]


def listed(items: list[dict[str, Any]]) -> dict[str, Any]:
    return list_response(items, len(items), 1)
