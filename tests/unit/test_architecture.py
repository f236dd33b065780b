"""Layering rules, read from the source with ``ast`` (nothing under bridge/ is imported here).

- mapping, aws and upstream never reach the web layer (flask or bridge.web);
- the pure modules (mapping, and aws arn/limits/token/formats/validate/keys) use no I/O clients;
- nothing under bridge/ uses pickle (sessions are JSON in Redis);
- bridge/storage and the deciding services (access, issuing, console sign-in, sessions, device, flow)
  never reach the web layer; storage records are typed: the ``Store`` interface passes no
  ``dict[str, Any]`` except on the raw paths (the IdP's upstream grant), and every record is a frozen
  dataclass with ``to_json`` / ``from_json``.

Imports are followed through bridge's own modules too, so a pure module cannot pick up flask by
importing a bridge module that imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "bridge"

NO_WEB_PACKAGES = ("mapping", "aws", "upstream")
PURE_AWS = ("arn", "limits", "token", "formats", "validate", "keys", "assertion", "metadata", "console")
# Deciding and storing, without Flask: the web layer calls them, never the reverse.
NO_WEB_CORE = ("bridge.access", "bridge.issuing", "bridge.console_signin", "bridge.sessions", "bridge.device",
               "bridge.flow", "bridge.credcache", "bridge.keysource")
# Store methods whose payload belongs to someone else (the connector's upstream grant): untyped on purpose.
RAW_STORE_METHODS = {"put_upstream", "get_upstream"}
WEB = ("flask", "bridge.web")
IO_CLIENTS = ("redis", "boto3", "botocore", "requests", "flask")
PICKLERS = ("pickle", "_pickle", "cPickle", "cloudpickle", "dill", "shelve", "jsonpickle")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module name ``source`` imports (absolute, relative resolved, ``from a import b`` → a and a.b)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.add(node.args[0].value)
    return found


def _is(name: str, banned: tuple[str, ...]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


SOURCES = {module_name(p): p for p in sorted(BRIDGE.rglob("*.py"))}
DIRECT = {
    m: imports_in(p.read_text(encoding="utf-8"), m, p.name == "__init__.py") for m, p in SOURCES.items()
}


def closure(module: str) -> set[str]:
    """``module``'s imports, following bridge's own modules (and their parent packages) transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        for name in DIRECT.get(m, ()):
            if name in seen:
                continue
            seen.add(name)
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                prefix = ".".join(parts[:i])
                if prefix in SOURCES and prefix not in seen | {module}:
                    seen.add(prefix)
                    todo.append(prefix)
            if name in SOURCES:
                todo.append(name)
    return seen


NO_WEB_MODULES = sorted(
    [m for m in SOURCES if m.split(".")[1:2] and m.split(".")[1] in (*NO_WEB_PACKAGES, "storage")]
    + [m for m in NO_WEB_CORE if m in SOURCES]
)
PURE_MODULES = sorted(
    [m for m in SOURCES if m.startswith("bridge.mapping")] + [f"bridge.aws.{name}" for name in PURE_AWS]
)


# --------------------------------------------------------------------------- the checker itself


def test_import_collector_sees_every_form() -> None:
    src = (
        "import flask.json\nfrom bridge import web\nfrom ..web.portal import x\nfrom . import limits\n"
        "import importlib\nimportlib.import_module('redis')\n__import__('pickle')\n"
    )
    found = imports_in(src, "bridge.aws.sample")
    assert {"flask.json", "bridge.web", "bridge.web.portal", "bridge.aws.limits", "redis", "pickle"} <= found
    assert _is("flask.json", WEB) and _is("bridge.web.portal", WEB) and not _is("flaskish", WEB)


def test_the_layout_the_rules_talk_about_exists() -> None:
    assert {
        "bridge.mapping",
        "bridge.mapping.engine",
        "bridge.mapping.model",
        "bridge.upstream.oidc",
        "bridge.aws.sts",
        "bridge.web.portal",
    } <= set(SOURCES)
    assert all(m in SOURCES for m in PURE_MODULES)
    # Sanity: the web layer really does import flask, so the check below can fail.
    assert any(_is(n, ("flask",)) for m in SOURCES if m.startswith("bridge.web") for n in DIRECT[m])


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("module", NO_WEB_MODULES)
def test_no_web_imports_outside_the_web_layer(module: str) -> None:
    direct = sorted(n for n in DIRECT[module] if _is(n, WEB))
    assert direct == [], f"{module} imports {direct}"
    indirect = sorted(n for n in closure(module) if _is(n, WEB))
    assert indirect == [], f"{module} reaches {indirect} through bridge modules"


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_use_no_io_clients(module: str) -> None:
    direct = sorted(n for n in DIRECT[module] if _is(n, IO_CLIENTS))
    assert direct == [], f"{module} imports {direct}"
    indirect = sorted(n for n in closure(module) if _is(n, IO_CLIENTS))
    assert indirect == [], f"{module} reaches {indirect} through bridge modules"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_pickle_anywhere(module: str) -> None:
    tree = ast.parse(SOURCES[module].read_text(encoding="utf-8"))
    imported = sorted(n for n in DIRECT[module] if _is(n, PICKLERS))
    named = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in PICKLERS})
    assert imported == [] and named == [], f"{module} uses {imported or named}"


def test_storage_and_the_deciding_services_are_covered() -> None:
    assert {"bridge.storage", "bridge.storage.interface", "bridge.storage.records", "bridge.storage.redis",
            "bridge.storage.memory"} <= set(NO_WEB_MODULES)
    assert set(NO_WEB_CORE) <= set(NO_WEB_MODULES)


def _class(path: Path, name: str) -> ast.ClassDef:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def test_the_store_interface_passes_typed_records() -> None:
    store = _class(BRIDGE / "storage" / "interface.py", "Store")
    methods = [n for n in store.body if isinstance(n, ast.FunctionDef)]
    assert len(methods) > 30  # the whole interface is read here, not an empty class
    untyped = []
    for fn in methods:
        annotations = [a.annotation for a in (*fn.args.args, *fn.args.kwonlyargs) if a.annotation is not None]
        annotations += [fn.returns] if fn.returns is not None else []
        if any("Any" in ast.unparse(a) for a in annotations) and fn.name not in RAW_STORE_METHODS:
            untyped.append(fn.name)
    assert untyped == [], f"Store methods passing untyped documents: {untyped}"


def test_both_stores_implement_the_whole_interface() -> None:
    wanted = {n.name for n in _class(BRIDGE / "storage" / "interface.py", "Store").body
              if isinstance(n, ast.FunctionDef)}
    for module, cls in (("redis", "RedisStore"), ("memory", "MemoryStore")):
        have = {n.name for n in _class(BRIDGE / "storage" / f"{module}.py", cls).body if isinstance(n, ast.FunctionDef)}
        assert wanted - have == set(), f"{cls} lacks {sorted(wanted - have)}"


def test_storage_records_are_frozen_dataclasses_with_json() -> None:
    tree = ast.parse((BRIDGE / "storage" / "records.py").read_text(encoding="utf-8"))
    records = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.decorator_list]
    assert {r.name for r in records} >= {"SessionRecord", "PendingLogin", "CliToken", "DeviceCode"}
    for r in records:
        frozen = any(isinstance(d, ast.Call) and any(k.arg == "frozen" and getattr(k.value, "value", False)
                                                     for k in d.keywords) for d in r.decorator_list)
        assert frozen, f"{r.name} is not a frozen dataclass"
        names = {n.name for n in r.body if isinstance(n, ast.FunctionDef)}
        if r.name != "DeviceApproval":  # nested inside DeviceCode's JSON
            assert {"to_json", "from_json"} <= names, f"{r.name} lacks to_json/from_json"
