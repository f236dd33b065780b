"""`make demo`'s program, end to end: `bridge demo --smoke` starts Redis, moto, the demo IdP and the
bridge under gunicorn, signs in, fetches credentials, calls STS with them, and stops everything."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bridge.localredis import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_demo_smoke() -> None:
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "demo", "--smoke", "--port", str(free_port())],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "demo smoke ok: arn:aws:sts::123456789012:assumed-role/Admin/alice@example.com" in out.stdout
    assert "demo console ok: signed in as Admin" in out.stdout
    assert "demo console (SAML POST) ok: signed in as ReadOnly" in out.stdout
