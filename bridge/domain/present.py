"""A grant on the wire: one function per shape it is sent in, each from the typed ``Grant``.

- the portal's JSON (``GET /portal`` with ``Accept: application/json``): ``portal_grant``, ``portal_offer``;
- the CLI's API (``/api/v1/grants``, and the AWS CLI page's config text): ``api_grant``, ``api_offer``;
- the access-requests JSON (``GET /requests``): ``request_offer``;
- the IAM Identity Center portal protocol (``ListAccounts``, ``ListAccountRoles``): ``sso_account``, ``sso_role``.

Nothing else builds these dicts, so a key added, renamed or dropped shows here and in
tests/unit/test_present.py. Pure: no Flask, no Redis; what a shape needs from a service (the console
sign-in method) is passed in. A chained grant says which hubs it goes through by their labels; its
duration is already capped at 1 hour by the rules (role chaining); the ExternalId is never sent, only
whether one goes with the chain (``external_id``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from bridge.domain.identity import Grant

_PLAIN = re.compile(r"\A[\w.@=+,-]+\Z", re.ASCII)


def go_path(grant: Grant) -> str:
    """The bookmarkable console link of a grant: /go/<alias or account id>/<role name>."""
    account, role = grant.account_alias or grant.account_id, grant.role_name
    if not _PLAIN.match(account):
        account = quote(account, safe="")
    if not _PLAIN.match(role):
        role = quote(role, safe="")
    return f"/go/{account}/{role}"


def account_name(grant: Grant) -> str:
    """How pages and the SSO portal name a grant's account: its label, else its alias, else its id."""
    return grant.account_label or grant.account_alias or grant.account_id


def hub_labels(grant: Grant) -> list[str]:
    """The hubs a chained grant goes through, first to last ([] for a direct grant)."""
    return [h.label for h in grant.hubs]


def portal_grant(gr: Grant, console: str) -> dict[str, Any]:
    """A role as the portal's JSON lists it; ``console``: its console sign-in method (ConsoleSignIn.method)."""
    return {"id": gr.id, "role_arn": gr.role_arn, "account_id": gr.account_id, "label": gr.label,
            "account_alias": gr.account_alias, "account_label": gr.account_label,
            "max_duration": gr.max_duration, "default_duration": gr.default_duration,
            "mfa_required": gr.mfa_required, "console": console, "go": go_path(gr), "hubs": hub_labels(gr)}


def portal_offer(gr: Grant, console: str) -> dict[str, Any]:
    """A role the portal's JSON offers on request (README "Access requests")."""
    return {**portal_grant(gr, console), "state": "request"}


def api_grant(gr: Grant) -> dict[str, Any]:
    """A role as ``/api/v1/grants`` lists it (and the AWS CLI page hands it to bridge.client.ssoconfig);
    ``request_id``: the approved access request that holds it, else None."""
    return {"id": gr.id, "role_arn": gr.role_arn, "account_id": gr.account_id, "label": gr.label,
            "role_name": gr.role_name, "max_duration": gr.max_duration, "account_alias": gr.account_alias,
            "account_label": gr.account_label, "default_duration": gr.default_duration, "path": gr.path,
            "hubs": hub_labels(gr), "external_id": gr.sends_external_id, "request_id": gr.request_id or None}


def api_offer(gr: Grant) -> dict[str, Any]:
    """A role ``/api/v1/grants`` offers on request."""
    return {"id": gr.id, "role_arn": gr.role_arn, "account_id": gr.account_id, "label": gr.label,
            "role_name": gr.role_name, "account_alias": gr.account_alias, "state": "request",
            "max_duration": gr.max_duration}


def request_offer(gr: Grant, *, max_window: int, reason_required: bool, break_glass: bool) -> dict[str, Any]:
    """A role ``GET /requests`` offers, with its request policy (the longest window, whether a reason
    is asked for, whether it is break-glass)."""
    return {"id": gr.id, "role_arn": gr.role_arn, "account_id": gr.account_id, "label": gr.label,
            "role_name": gr.role_name, "account_alias": gr.account_alias, "account_label": gr.account_label,
            "state": "request", "max_window": max_window, "reason_required": reason_required,
            "break_glass": break_glass}


def sso_account(gr: Grant, email: str | None = None) -> dict[str, str]:
    """An ``accountList`` entry of ListAccounts for the account of ``gr`` (any of its grants: they share
    the catalog's names); ``emailAddress`` only when the accounts catalog has one."""
    item = {"accountId": gr.account_id, "accountName": account_name(gr)}
    if email:
        item["emailAddress"] = email
    return item


def sso_role(gr: Grant) -> dict[str, str]:
    """A ``roleList`` entry of ListAccountRoles: the role name ``gr`` is served under in its account."""
    return {"roleName": gr.role_name, "accountId": gr.account_id}
