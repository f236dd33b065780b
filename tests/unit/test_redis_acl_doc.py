"""The ACL for the bridge's Redis user documented in docs/operations.md ("Redis: topologies and memory") is
the list the topology tests run under (tests/redis_topologies.py ``BRIDGE_COMMANDS``), so the two cannot
drift apart."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.redis_topologies import BRIDGE_COMMANDS


def test_documented_acl_is_the_tested_command_list() -> None:
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    block = re.search(r"```\n(ACL SETUSER bridge .*?)```", page, re.S)
    assert block, "docs/operations.md: the ACL SETUSER block is missing"
    documented = re.findall(r"\+([a-z|]+)", block[1])
    assert sorted(documented) == sorted(BRIDGE_COMMANDS)
    assert len(documented) == len(set(documented))
