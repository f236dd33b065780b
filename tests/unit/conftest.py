"""Fixtures of the unit tests (no peers, no state outside ``tmp_path``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    """The shipped ``config/demo.yaml``, copied into a fresh checkout layout under ``tmp_path``.

    The demo config points ``audit.path`` (and, by default, ``issuer.keys_dir``) into ``../.demo``,
    the folder ``bridge demo`` creates. The copy keeps the file byte for byte and gives it its own
    empty ``.demo`` folder, so the real config check runs unchanged without depending on a demo
    (or an integration test) having run in this checkout.
    """
    cfg = tmp_path / "checkout" / "config" / "demo.yaml"
    cfg.parent.mkdir(parents=True)
    shutil.copyfile(ROOT / "config" / "demo.yaml", cfg)
    (tmp_path / "checkout" / ".demo").mkdir()
    return cfg
