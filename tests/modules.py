"""Helpers the tests share: load a Python file that is not a package module (scripts/, deploy/gunicorn.conf.py),
and an audit sink that keeps what it was given."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def load_file(name: str, path: Path, *, register: bool = False) -> ModuleType:
    """Run ``path`` as module ``name`` and return it; ``register`` puts it in ``sys.modules`` first (a
    module whose dataclasses look their own module up needs that)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class ListSink:
    """An audit sink (``bridge.telemetry.audit``) keeping each record it was given, parsed."""

    name = "list"

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, line: str) -> None:
        self.lines.append(json.loads(line))
