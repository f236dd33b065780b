"""Load a Python file that is not a package module (scripts/, deploy/gunicorn.conf.py) for a test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


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
