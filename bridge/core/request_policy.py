"""An access request's own session policy (issue 25 item 3): what a requester may ask for to narrow the role.
Pure. ``parse_request_policy`` checks it when the request is made: nothing invalid is ever stored.

A session policy can only narrow a role (AWS intersects it with the role's policies), so the checks are about
asking for something precise that an approver can read and approve: JSON, an IAM policy document, AWS's
characters and 2,048-character limit (bridge/aws/limits.py), and no statement that asks for the whole role
(an Allow of ``"*"`` actions or ``"*"`` resources, or NotAction/NotResource, which means "everything but").
Wildcards inside a value (``s3:Get*``, ``arn:aws:s3:::data/home/alice/*``) are fine: they narrow.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.aws.limits import policy_problems

VERSION = "2012-10-17"


class RequestPolicyError(ValueError):
    """Why the policy a requester gave cannot be used; ``problems`` lists every reason, each for the page."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _values(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


def _statement_problems(i: int, st: Any) -> list[str]:
    at = f"Statement[{i}]"
    if not isinstance(st, dict):
        return [f"{at} is not an object"]
    out = []
    if st.get("Effect") not in ("Allow", "Deny"):
        out.append(f'{at}: Effect must be "Allow" or "Deny"')
    for neg, pos in (("NotAction", "Action"), ("NotResource", "Resource")):
        if neg in st:
            out.append(f"{at}: {neg} asks for everything but some {pos.lower()}s; name the {pos.lower()}s with "
                       f"{pos}")
        elif pos not in st:
            out.append(f"{at}: {pos} is missing")
        elif not _values(st[pos]) or not all(isinstance(v, str) and v for v in _values(st[pos])):
            out.append(f"{at}: {pos} must be a string or a list of strings")
        elif st.get("Effect") == "Allow" and "*" in _values(st[pos]):
            out.append(f'{at}: {pos} "*" asks for every {pos.lower()} the role has; a request\'s policy narrows '
                       f"the role (leave it out to ask for the whole role)")
    return out


def parse_request_policy(text: str) -> str:
    """The policy a requester typed, checked, as the compact JSON sent to STS (``Policy``); RequestPolicyError
    listing every problem otherwise."""
    if problems := policy_problems(text):  # characters first: a message about a stray byte, not JSON's
        raise RequestPolicyError(problems)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise RequestPolicyError([f"the policy is not JSON: {e}"]) from None
    if not isinstance(doc, dict):
        raise RequestPolicyError(['the policy must be a JSON object: {"Version": "2012-10-17", "Statement": [...]}'])
    out = [] if doc.get("Version") == VERSION else [f'the policy needs "Version": "{VERSION}"']
    out += [f"the policy has {k!r}; a session policy has only Version, Id and Statement"
            for k in doc if k not in ("Version", "Id", "Statement")]
    statements = doc.get("Statement")
    statements = [statements] if isinstance(statements, dict) else statements
    if not isinstance(statements, list) or not statements:
        out.append("the policy needs a Statement (one object, or a list of them)")
    else:
        for i, st in enumerate(statements):
            out += _statement_problems(i, st)
    compact = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    out += policy_problems(compact)  # the 2,048 characters count what is sent
    if out:
        raise RequestPolicyError(out)
    return compact


def pretty(policy: str) -> str:
    """``policy`` as an approver reads it (indented; the page escapes it like any text)."""
    return json.dumps(json.loads(policy), indent=2, ensure_ascii=False)
