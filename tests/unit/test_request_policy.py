"""An access request's own session policy (bridge/core/request_policy.py): checked when asked for, every
problem said, nothing invalid returned (so nothing invalid is stored)."""

from __future__ import annotations

import json

import pytest

from bridge.core.request_policy import RequestPolicyError, parse_request_policy, pretty

GOOD = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:List*"],
                                               "Resource": "arn:aws:s3:::data/home/alice/*"}]}


def test_a_narrowing_policy_comes_back_compact_and_pretty_for_the_approver() -> None:
    compact = parse_request_policy(json.dumps(GOOD, indent=4))
    assert compact == json.dumps(GOOD, separators=(",", ":"))
    assert json.loads(pretty(compact)) == GOOD and "\n  " in pretty(compact)


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "the policy is not JSON"),
    ("[]", "the policy must be a JSON object"),
    (json.dumps({**GOOD, "Version": "2008-10-17"}), 'the policy needs "Version": "2012-10-17"'),
    (json.dumps({"Version": "2012-10-17"}), "the policy needs a Statement"),
    (json.dumps({**GOOD, "Statement": [{**GOOD["Statement"][0], "Action": "*"}]}),
     'Statement[0]: Action "*" asks for every action the role has'),
    (json.dumps({**GOOD, "Statement": [{**GOOD["Statement"][0], "Resource": ["*"]}]}),
     'Statement[0]: Resource "*" asks for every resource the role has'),
    (json.dumps({**GOOD, "Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "x"}]}),
     "Statement[0]: NotAction asks for everything but some actions"),
    (json.dumps({**GOOD, "Statement": [{"Effect": "Maybe", "Action": "s3:GetObject", "Resource": "x"}]}),
     'Statement[0]: Effect must be "Allow" or "Deny"'),
    (json.dumps({**GOOD, "Statement": [{**GOOD["Statement"][0], "Resource": "arn:aws:s3:::" + "x" * 2100}]}),
     "AWS takes at most 2048"),
    (json.dumps(GOOD, ensure_ascii=False).replace("alice", "al\u0100ce"), "characters AWS does not take"),
])
def test_bad_policies_are_refused_with_what_to_fix(text: str, problem: str) -> None:
    with pytest.raises(RequestPolicyError) as e:
        parse_request_policy(text)
    assert any(problem in p for p in e.value.problems), e.value.problems


def test_every_problem_is_listed_at_once() -> None:
    doc = {"Version": "x", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    with pytest.raises(RequestPolicyError) as e:
        parse_request_policy(json.dumps(doc))
    assert len(e.value.problems) == 3


def test_a_deny_of_everything_is_a_narrowing_and_allowed() -> None:
    doc = {"Version": "2012-10-17", "Statement": [GOOD["Statement"][0],
                                                  {"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    assert json.loads(parse_request_policy(json.dumps(doc))) == doc
