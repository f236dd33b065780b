"""The README's ACL for the bridge's Redis user is the list the topology tests run under
(tests/redis_topologies.py ``BRIDGE_COMMANDS``), so the two cannot drift apart."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.redis_topologies import BRIDGE_COMMANDS


def test_readme_acl_is_the_tested_command_list() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```\n(ACL SETUSER bridge .*?)```", readme, re.S)
    assert block, "README: the ACL SETUSER block is missing"
    documented = re.findall(r"\+([a-z|]+)", block[1])
    assert sorted(documented) == sorted(BRIDGE_COMMANDS)
    assert len(documented) == len(set(documented))
