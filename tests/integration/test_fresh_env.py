"""The fresh-machine path: the project's files in an empty folder, `make setup` from the lock, unit tests.

This is what a new user's `git clone` + `make test` does before any test runs: no venv, no stamp,
nothing cached in the tree. (uv's download cache may be warm: it saves downloads, and every file is
still checked against the lock's hashes.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration
FRESH_TESTS = ("tests/unit/test_architecture.py", "tests/unit/test_cli_lazy.py", "tests/unit/test_lock.py",
               "tests/unit/test_rules_cases.py", "tests/unit/test_startup_checks.py")


def _project_files() -> list[str]:
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        pytest.fail("this test copies the checkout's files: run it in a git checkout")
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, check=True, timeout=60).stdout
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]


def _locked(path: Path) -> dict[str, set[str]]:
    """name → versions (a universal lock may pin one name twice, under different markers)."""
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", path.read_text(), re.M):
        out.setdefault(m[1].lower().replace("_", "-"), set()).add(m[2])
    return out


def test_an_empty_folder_builds_exactly_the_lock_and_passes_the_unit_tests(tmp_path: Path) -> None:
    tree = tmp_path / "clone"
    for rel in _project_files():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tree / rel)
    assert not (tree / ".venv").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST", "PYTHON"))}
    python = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    setup = subprocess.run(["make", "--no-print-directory", "setup", f"PYTHON={python}"], cwd=tree, env=env,
                           capture_output=True, text=True, timeout=600)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]

    # exactly the lock: every locked package at its version (for this platform), nothing more but the project
    freeze = subprocess.run([str(tree / ".venv/bin/uv"), "pip", "freeze", "--python", str(tree / ".venv/bin/python")],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    installed = {m[1].lower().replace("_", "-"): m[2] for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", freeze, re.M)}
    locked = _locked(tree / "requirements" / "dev.txt")
    seeded = {"pip", "setuptools", "wheel"}  # what `python -m venv` puts in, not a dependency
    extra = {k: v for k, v in installed.items() if v not in locked.get(k, set()) and k not in seeded}
    assert extra == {}, "installed something not in the lock"
    for core in ("flask", "redis", "boto3", "pytest", "mypy", "uv"):
        assert installed[core] in locked[core]

    (tree / ".demo").mkdir(exist_ok=True)
    # Not the whole unit suite again (the suite itself runs it): the tests that import every module of the
    # package (architecture), run the CLI as a user does, and load the shipped config with its rules.
    run = subprocess.run([str(tree / ".venv/bin/python"), "-m", "pytest", *FRESH_TESTS, "-q", "-p", "no:randomly",
                          "-p", "no:cacheprovider"], cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    m = re.search(r"(\d+) passed", run.stdout)
    assert m and int(m[1]) > 300, tail
    assert " failed" not in run.stdout.splitlines()[-1], tail
