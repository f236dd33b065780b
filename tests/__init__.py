"""The test suite. Importing it (pytest does, before any conftest or test module) keeps byte code.

CI machines (and some shells) set ``PYTHONDONTWRITEBYTECODE=1``: then every run, and every Python
subprocess a test starts (the CLI tests run the console script), compiled the bridge, its
dependencies and the tests again — about a third of the unit suite's CPU time. Inside a virtualenv,
byte code goes to ``<venv>/pycache`` instead (``sys.pycache_prefix``; nothing is written next to the
sources, and removing the venv removes it), for this process and the subprocesses it starts. A
prefix the caller chose (``PYTHONPYCACHEPREFIX``, ``-X pycache_prefix``) is left as it is.
"""

from __future__ import annotations

import os
import sys

if sys.prefix != sys.base_prefix and sys.pycache_prefix is None:
    sys.pycache_prefix = os.path.join(sys.prefix, "pycache")
    sys.dont_write_bytecode = False
    os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
