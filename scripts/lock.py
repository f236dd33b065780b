#!/usr/bin/env python3
"""The Python lock: requirements/*.txt resolved from pyproject.toml by `uv pip compile`, with hashes.

    scripts/lock.py check             # exit 1 with what to do when pyproject.toml changed since the lock
    scripts/lock.py lock UV [--upgrade]  # re-resolve with the uv at UV (keeps locked versions unless --upgrade)

Three files come from one resolution (docs/development.md, "Dependencies"):
  requirements/dev.txt      the lock: the project's dependencies and its `test` extra (tests, lint, docs, uv)
  requirements/runtime.txt  the image's part of it: the project's dependencies alone, same versions
  requirements/build.txt    the build backend (pyproject's build-system.requires), same versions

Each file starts with a digest of the dependency tables of pyproject.toml, so `check` needs no
network and no venv (stdlib only: it runs before `make setup` installs anything).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "requirements"
FILES = {"dev": REQ / "dev.txt", "runtime": REQ / "runtime.txt", "build": REQ / "build.txt"}
DIGEST_PREFIX = "# pyproject-digest: sha256="
PYTHON_MIN = "3.11"


def pyproject_digest(path: Path = ROOT / "pyproject.toml") -> str:
    """A digest of everything in pyproject.toml that the resolution reads (not its tool settings)."""
    data = tomllib.loads(path.read_text())
    project = data.get("project", {})
    relevant = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-system": data.get("build-system", {}).get("requires", []),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def locked_digest(path: Path) -> str | None:
    """The digest a lock file was made from, or None when the file is missing or has none."""
    if not path.is_file():
        return None
    for line in path.read_text().splitlines()[:10]:
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX):].strip()
    return None


def check() -> int:
    want = pyproject_digest()
    stale = [name for name, path in FILES.items() if locked_digest(path) != want]
    if not stale:
        return 0
    print(
        f"The Python lock is out of date: requirements/{{{','.join(stale)}}}.txt were not made from the\n"
        "dependencies now in pyproject.toml. Run `make lock` (keeps every locked version it can) and commit\n"
        "requirements/, or undo the change to pyproject.toml.",
        file=sys.stderr,
    )
    return 1


def _header(digest: str, what: str) -> str:
    return (
        f"# {what}\n"
        "# Made by `make lock` (scripts/lock.py) from pyproject.toml with uv pip compile: do not edit by hand.\n"
        f"{DIGEST_PREFIX}{digest}\n"
    )


def _compile(uv: str, sources: list[str], out: Path, extra: list[str]) -> None:
    cmd = [uv, "pip", "compile", *sources, "--universal", "--python-version", PYTHON_MIN,
           "--generate-hashes", "--no-header", "--quiet", "-o", str(out), *extra]
    subprocess.run(cmd, check=True, cwd=ROOT)


def lock(uv: str, upgrade: bool) -> int:
    REQ.mkdir(exist_ok=True)
    digest = pyproject_digest()
    dev = FILES["dev"]
    # The existing lock is read by uv as the preferred versions: `lock` moves only what it must.
    _compile(uv, ["pyproject.toml"], dev, ["--extra", "test", *(["--upgrade"] if upgrade else [])])
    # The runtime and build files take their versions from dev.txt (a constraint), so the image and
    # the tests run the same releases.
    _compile(uv, ["pyproject.toml"], FILES["runtime"], ["-c", str(dev)])
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    with tempfile.NamedTemporaryFile("w", suffix=".in", dir=REQ, delete=False) as f:
        f.write("\n".join(build_requires) + "\n")
    try:
        # (no annotations: they would name the temporary file)
        _compile(uv, [f.name], FILES["build"], ["-c", str(dev), "--no-annotate"])
    finally:
        Path(f.name).unlink()
    titles = {
        "dev": "The lock: the whole development, test and CI environment (`make setup` installs exactly this).",
        "runtime": "The image's packages: the project's own dependencies, at dev.txt's versions.",
        "build": "The build backend (build-system.requires), at dev.txt's versions.",
    }
    for name, path in FILES.items():
        body = path.read_text().replace(str(REQ) + "/", "requirements/")
        path.write_text(_header(digest, titles[name]) + body)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        return check()
    if argv[:1] == ["lock"] and len(argv) >= 2:
        return lock(argv[1], "--upgrade" in argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
