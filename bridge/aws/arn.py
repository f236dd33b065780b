"""ARN parsing and partition facts (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.domain.partitions import NAMES

PARTITIONS = NAMES  # the partition names, from the partition table
_ROLE_RE = re.compile(
    rf"^arn:(?P<partition>{'|'.join(map(re.escape, NAMES))}):iam::(?P<account>\d{{12}}):role/"
    r"(?P<path>(?:[\x21-\x7e]+/)*)(?P<name>[\w+=,.@-]{1,64})\Z",
    re.ASCII,  # \d and \w must not accept non-ASCII digits and letters (claims feed templated ARNs)
)


@dataclass(frozen=True)
class RoleArn:
    partition: str
    account_id: str
    path: str
    name: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:role/{self.path}{self.name}"


def parse_role_arn(arn: str) -> RoleArn:
    """Parse ``arn:<partition>:iam::<12 digits>:role/[path/]name`` or raise ValueError saying why."""
    m = _ROLE_RE.match(arn)
    if not m:
        raise ValueError(f"{arn!r} is not an IAM role ARN (arn:aws:iam::123456789012:role/Name)")
    return RoleArn(m["partition"], m["account"], m["path"], m["name"])
