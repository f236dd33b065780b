"""What ``make demo`` prints once it is up (bridge/runtime/demo.py ``_banner``): the commands in it are what a
person copies into a shell, so each must be one shell command as printed."""

from __future__ import annotations

import re
import shlex

import pytest

from bridge.runtime import demo


def test_the_exchange_command_is_one_shell_command_over_two_lines(capsys: pytest.CaptureFixture[str]) -> None:
    demo._banner(8000, {"DEMO_STS_URL": "http://127.0.0.1:5055", "DEMO_OIDC_ISSUER": "http://127.0.0.1:9000",
                        "DEMO_REDIS_URL": "redis://127.0.0.1:6379/0"})
    out = capsys.readouterr().out
    found = re.search(r"^  (\.venv/bin/python -m bridge\.runtime\.demo_exchange .*\\\n\s+--sts \S+)$", out, re.M)
    assert found is not None, out
    words = shlex.split(found[1].replace("\\\n", " "))
    assert words[words.index("--idp") + 1] == "http://127.0.0.1:9000"
    assert words[words.index("--sts") + 1] == "http://127.0.0.1:5055" and words[-1] == "http://127.0.0.1:5055"
