"""The Python lock (requirements/*.txt) against pyproject.toml, the Makefile, CI and the image.

What `make setup`, CI and the image install must be exactly the lock: these tests fail when a
dependency is edited without `make lock`, when a group goes unlocked, when a pin has no hash, or when
an install step resolves afresh.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.modules import load_file

ROOT = Path(__file__).resolve().parents[2]
REQ = ROOT / "requirements"


def _lock_module() -> ModuleType:
    return load_file("lockscript", ROOT / "scripts" / "lock.py")


def _pins(path: Path) -> dict[str, dict[Version, frozenset[str]]]:
    """name → {version: hashes} for every `name==version` entry of a compiled requirements file (a
    universal lock may pin one name at two versions, under different markers)."""
    text = path.read_text()
    out: dict[str, dict[Version, frozenset[str]]] = {}
    for m in re.finditer(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)((?:[^\n]*\\\n)*[^\n]*)", text, re.M):
        name = canonicalize_name(m[1].split("[")[0])
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", m[3]))
        out.setdefault(name, {})[Version(m[2])] = hashes
    return out


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_lock_was_made_from_the_pyproject_in_this_tree() -> None:
    lock = _lock_module()
    want = lock.pyproject_digest()
    for name, path in lock.FILES.items():
        assert lock.locked_digest(path) == want, f"requirements/{name}.txt is stale: run `make lock`"
    assert lock.check() == 0


def test_a_dependency_edited_without_make_lock_fails_the_check_with_what_to_do(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    lock = _lock_module()
    tree = tmp_path / "tree"
    shutil.copytree(REQ, tree / "requirements")
    text = (ROOT / "pyproject.toml").read_text().replace('"flask>=3.1,<4"', '"flask>=3.1,<3.2"')
    assert text != (ROOT / "pyproject.toml").read_text()
    (tree / "pyproject.toml").write_text(text)
    monkeypatch.setattr(lock, "ROOT", tree)
    monkeypatch.setattr(lock, "FILES", {k: tree / "requirements" / v.name for k, v in lock.FILES.items()})
    monkeypatch.setattr(lock, "pyproject_digest", lambda: _lock_module().pyproject_digest(tree / "pyproject.toml"))
    assert lock.check() == 1
    err = capsys.readouterr().err
    assert "out of date" in err and "make lock" in err and "dev" in err
    # a tool setting is not a dependency: editing it leaves the lock valid
    (tree / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text().replace("line-length = 120",
                                                                                     "line-length = 100"))
    assert lock.check() == 0


def test_every_requirement_and_every_optional_group_is_locked_at_a_version_it_allows() -> None:
    data = _pyproject()
    pins = _pins(REQ / "dev.txt")
    groups = {"dependencies": data["project"]["dependencies"], "build-system": data["build-system"]["requires"]}
    groups.update({f"extra {k}": v for k, v in data["project"]["optional-dependencies"].items()})
    assert "extra test" in groups
    for group, reqs in groups.items():
        for spec in reqs:
            req = Requirement(spec)
            name = canonicalize_name(req.name)
            assert name in pins, f"{group}: {req.name} is not in requirements/dev.txt (run `make lock`)"
            for version in pins[name]:
                assert req.specifier.contains(version, prereleases=True), (group, spec, str(version))


def test_every_pin_carries_hashes_and_the_lock_names_no_host() -> None:
    for path in REQ.glob("*.txt"):
        pins = _pins(path)
        assert len(pins) >= 3, path
        unhashed = [name for name, versions in pins.items() for hashes in versions.values() if not hashes]
        assert not unhashed, f"{path.name}: no hashes for {unhashed}"
        assert "://" not in path.read_text(), f"{path.name} names an index or a URL"


def test_the_image_and_build_files_are_the_locks_versions_and_hashes() -> None:
    dev = _pins(REQ / "dev.txt")
    for name in ("runtime.txt", "build.txt"):
        for pkg, versions in _pins(REQ / name).items():
            assert pkg in dev, f"{name}: {pkg} is not in the lock"
            for version, hashes in versions.items():
                assert version in dev[pkg] and hashes <= dev[pkg][version], f"{name}: {pkg} differs from the lock"
    runtime = _pins(REQ / "runtime.txt")
    for test_only in ("pytest", "moto", "mypy", "ruff", "playwright", "uv"):
        assert test_only not in runtime, f"the image would install {test_only}"
    for spec in _pyproject()["project"]["dependencies"]:
        assert canonicalize_name(Requirement(spec).name) in runtime, spec


def test_setup_ci_and_the_image_install_exactly_the_lock() -> None:
    make = (ROOT / "Makefile").read_text()
    setup = make[make.index("$(STAMP):"):make.index("\nsetup:")]
    assert "pip sync" in setup and "--require-hashes $(LOCK)" in setup and "LOCK := requirements/dev.txt" in make
    assert "--no-deps --no-build-isolation -e ." in setup  # the project, without resolving anything
    assert re.search(r"^test: lock-check \$\(STAMP\)", make, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    docker = (ROOT / "deploy" / "Dockerfile").read_text()
    steps = [" ".join(step.split()) for step in re.split(r"&&|\n(?!\s)", docker.replace("\\\n", " "))]
    installs = [step for step in steps if re.search(r"pip install", step)]
    assert len(installs) >= 3, installs
    for step in installs:
        # every pip install in the image is the lock with hashes, or a local wheel with --no-deps
        assert re.search(r"--require-hashes .*-r requirements/\w+\.txt", step) or (
            "--no-deps" in step and "--no-index" in step), step
    assert "requirements/runtime.txt" in docker and "requirements/build.txt" in docker


def test_the_system_packages_are_named_once_with_why() -> None:
    script = (ROOT / "scripts" / "setup-system.sh").read_text()
    table = re.findall(r"^pkg (\S+) +(\S+) +(\S+) +# (\S.*)$", script, re.M)
    packages = {package for _, package, _, _ in table}
    assert {"redis-server", "xmlsec1", "chromium", "nodejs"} <= packages, packages
    assert all(len(why) > 15 for *_, why in table), "every package says why it is needed"
    assert script.count("apt-get install") == 1
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install" not in ci and "scripts/setup-system.sh test" in ci, \
        ".ci/run installs through scripts/setup-system.sh, not a second list"
