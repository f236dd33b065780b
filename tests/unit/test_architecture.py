"""Layering rules, read from the source with ``ast`` (nothing under bridge/ is imported here).

- mapping, aws, upstream and the core use cases (bridge/core) never reach the web layer (flask or bridge.web);
- the pure modules (mapping, the partition table, and aws arn/limits/token/formats/validate/keys, ...)
  use no I/O clients;
- connector settings (``bridge/upstream/*_settings.py``, the ``type`` registry) and the config package
  reach no web framework, I/O client or IdP protocol library when imported: loading the config stays
  light (a settings class's ``open()`` imports its own connector module, and nothing else, when called);
- nothing under bridge/ uses pickle (sessions are JSON in Redis);
- bridge/upstream never imports the strict AWS-rules validators (bridge.aws.validate*, and with them
  xmlsec): it reads AWS's sign-in URLs and audiences from the partition table (bridge/domain/partitions.py);
- bridge/upstream never imports bridge.aws at all, directly or through other bridge modules, nor
  bridge.storage (the value types connectors read are in bridge.domain.identity);
- outside bridge/upstream nothing compares a connector's ``type`` with a type name: the core reads
  the connector's ``policy`` and asks capabilities with ``isinstance`` (bridge/upstream/base.py);
- nothing under bridge/ refers to ``shared/`` (files outside this repository); the AWS rules the code
  cites are in docs/aws-rules.md, and every section cited there exists.
- bridge/storage and the deciding services (access, issuing, console sign-in, sessions, device, flow)
  never reach the web layer; storage records are typed: the ``Store`` interface passes no
  ``dict[str, Any]`` except on the raw paths (the IdP's upstream grant), and every record is a frozen
  dataclass with ``to_json`` / ``from_json``.
- every module under bridge/ has at most 500 lines and every function a cyclomatic complexity (radon cc)
  of at most 20 (``COMPLEXITY_ALLOWED`` would name an exception; it is empty).

Imports are followed through bridge's own modules too, so a pure module cannot pick up flask by
importing a bridge module that imports it.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "bridge"

NO_WEB_PACKAGES = ("mapping", "aws", "upstream", "core")
PURE_AWS = ("arn", "limits", "token", "formats", "validate", "problems", "console",
            "assertion", "metadata", "iam_setup", "iam_render", "doctor")
# Deciding and storing, without Flask: the web layer calls them, never the reverse.
NO_WEB_CORE = ("bridge.core", "bridge.keys", "bridge.protocols", "bridge.domain", "bridge.telemetry")
# Store methods whose payload belongs to someone else (the connector's upstream grant): untyped on purpose.
RAW_STORE_METHODS = {"put_upstream", "get_upstream"}
WEB = ("flask", "bridge.web")
IO_CLIENTS = ("redis", "boto3", "botocore", "requests", "flask")
# What a connector's settings (and loading the config) must not pull in: they are read before any
# connector runs, by `bridge check-config` too.
HEAVY = ("flask", "redis", "boto3", "botocore", "authlib", "requests", "onelogin", "xmlsec")
PICKLERS = ("pickle", "_pickle", "cPickle", "cloudpickle", "dill", "shelve", "jsonpickle")
STRICT_VALIDATORS = ("bridge.aws.validate", "bridge.aws.validate_saml", "xmlsec")
AWS_RULES = ROOT / "docs" / "aws-rules.md"


@functools.cache
def parse(source: str) -> ast.Module:
    """ast.parse, once per text: several rules read every module (the trees are only read)."""
    return ast.parse(source)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _nodes(tree: ast.AST, import_time: bool) -> list[ast.AST]:
    """Every node of ``tree``; with ``import_time``, none inside a function body (what runs when the
    module is imported, not when one of its functions is called)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if not (import_time and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return out


def imports_in(source: str, module: str, is_package: bool = False, import_time: bool = False) -> set[str]:
    """Every module name ``source`` imports (absolute, relative resolved, ``from a import b`` → a and a.b);
    with ``import_time`` only those imported when the module itself is (not inside its functions)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in _nodes(parse(source), import_time):
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


# What importing each module imports (function bodies left out: the imports they defer run when called).
AT_IMPORT = {
    m: imports_in(p.read_text(encoding="utf-8"), m, p.name == "__init__.py", import_time=True)
    for m, p in SOURCES.items()
}
parse.cache_clear()  # a tree of every module, kept for the whole session, made each garbage collection slower


@pytest.fixture(scope="module", autouse=True)
def _forget_the_trees() -> Iterator[None]:
    yield
    parse.cache_clear()


def closure(module: str, graph: dict[str, set[str]] = DIRECT) -> set[str]:
    """``module``'s imports, following bridge's own modules (and their parent packages) transitively
    (``graph``: every import, or ``AT_IMPORT``: what importing it runs)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        for name in graph.get(m, ()):
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
    + [m for m in SOURCES if any(m == p or m.startswith(p + ".") for p in NO_WEB_CORE)]
)
PURE_MODULES = sorted(
    [m for m in SOURCES if m.startswith("bridge.mapping")] + [f"bridge.aws.{name}" for name in PURE_AWS]
    + ["bridge.domain.partitions", "bridge.keys.signing",
       "bridge.domain.present"]  # a grant's wire shapes: no Flask, no I/O
)

CONNECTOR_SETTINGS_MODULES = sorted(
    m for m in SOURCES if m.startswith("bridge.upstream.") and (m.endswith("_settings") or m.endswith(".registry"))
)
LIGHT_MODULES = CONNECTOR_SETTINGS_MODULES + sorted(
    m for m in SOURCES if m == "bridge.config" or m.startswith("bridge.config.")
) + ["bridge.domain.settings_base"]


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
    assert {
        "bridge.upstream.oidc_settings",
        "bridge.upstream.saml_settings",
        "bridge.upstream.dev_settings",
        "bridge.upstream.registry",
    } <= set(CONNECTOR_SETTINGS_MODULES)
    assert {"bridge.config", "bridge.config.schema", "bridge.config.loading", "bridge.config.checks"} <= set(
        LIGHT_MODULES
    )
    # Sanity: the connectors themselves do use authlib / python3-saml, so the check below can fail.
    assert any(_is(n, ("authlib",)) for n in DIRECT["bridge.upstream.oidc"])
    assert any(_is(n, ("onelogin",)) for n in DIRECT["bridge.upstream.saml"])
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


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_connector_settings_and_config_stay_light(module: str) -> None:
    direct = sorted(n for n in AT_IMPORT[module] if _is(n, HEAVY))
    assert direct == [], f"{module} imports {direct}"
    indirect = sorted(n for n in closure(module, AT_IMPORT) if _is(n, HEAVY))
    assert indirect == [], f"{module} reaches {indirect} through bridge modules when it is imported"


@pytest.mark.parametrize("module", CONNECTOR_SETTINGS_MODULES)
def test_connector_settings_defer_only_their_own_connector(module: str) -> None:
    """``open()`` imports its connector when the service starts; nothing else is put off till then."""
    own = (module.removesuffix("_settings"),)
    deferred = sorted(n for n in DIRECT[module] - AT_IMPORT[module] if n.startswith("bridge.") and not _is(n, own))
    assert deferred == [], f"{module} defers {deferred}: only its own connector module may be imported in open()"


def test_the_light_rule_tells_deferred_imports_from_import_time_ones() -> None:
    src = ("import pydantic\n\ndef open():\n    from bridge.upstream.oidc import OidcConnector\n"
           "    return lambda: __import__('x')\n")
    assert imports_in(src, "bridge.upstream.oidc_settings", import_time=True) == {"pydantic"}
    assert {"bridge.upstream.oidc", "x"} <= imports_in(src, "bridge.upstream.oidc_settings")
    # The real settings modules do defer their connectors, which reach authlib / python3-saml.
    oidc_settings = "bridge.upstream.oidc_settings"
    assert "bridge.upstream.oidc" in DIRECT[oidc_settings] - AT_IMPORT[oidc_settings]
    assert any(_is(n, HEAVY) for n in closure("bridge.upstream.saml_settings"))


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_pickle_anywhere(module: str) -> None:
    tree = parse(SOURCES[module].read_text(encoding="utf-8"))
    imported = sorted(n for n in DIRECT[module] if _is(n, PICKLERS))
    named = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in PICKLERS})
    assert imported == [] and named == [], f"{module} uses {imported or named}"


UPSTREAM_MODULES = sorted(m for m in SOURCES if m.startswith("bridge.upstream"))


@pytest.mark.parametrize("module", UPSTREAM_MODULES)
def test_upstream_never_imports_the_strict_validators(module: str) -> None:
    direct = sorted(n for n in DIRECT[module] if _is(n, STRICT_VALIDATORS))
    assert direct == [], f"{module} imports {direct}; use bridge.domain.partitions for AWS URLs and audiences"
    indirect = sorted(n for n in closure(module) if _is(n, STRICT_VALIDATORS))
    assert indirect == [], f"{module} reaches {indirect} through bridge modules"


def test_the_validator_rule_still_has_something_to_catch() -> None:
    # The SAML connector does use the partition table, and the validator does import xmlsec.
    assert "bridge.domain.partitions" in DIRECT["bridge.upstream.saml"]
    assert "xmlsec" in DIRECT["bridge.aws.validate_saml"]


STORAGE_PACKAGE = ("bridge.storage", "bridge.store")


@pytest.mark.parametrize("module", UPSTREAM_MODULES)
def test_upstream_never_imports_storage(module: str) -> None:
    """Connectors see the values they need (``bridge.domain.identity``), never the store: no arrow back up."""
    direct = sorted(n for n in DIRECT[module] if _is(n, STORAGE_PACKAGE))
    assert direct == [], f"{module} imports {direct}; put the value type in bridge.domain.identity or upstream.base"
    indirect = sorted(n for n in closure(module) if _is(n, STORAGE_PACKAGE))
    assert indirect == [], f"{module} reaches {indirect} through bridge modules"


def test_the_storage_rule_still_has_something_to_catch() -> None:
    old = imports_in("from bridge.storage.records import PendingLogin\n", "bridge.upstream.base")
    assert any(_is(n, STORAGE_PACKAGE) for n in old) and not _is("bridge.storagex", STORAGE_PACKAGE)
    assert any(_is(n, STORAGE_PACKAGE) for n in DIRECT["bridge.core.flow"])  # the core does use the store


CONNECTOR_TYPE_NAMES = frozenset({"oidc", "saml", "dev"})


def connector_type_tests(source: str) -> list[str]:
    """Each comparison of a ``.type`` with a connector type name (``connector.type == "saml"``,
    ``c.type in ("oidc", "dev")``), as source text: the core asks capabilities, never the type."""
    found = []
    for node in ast.walk(parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        names = {c.value for o in operands for c in ast.walk(o) if isinstance(c, ast.Constant)}
        if any(isinstance(o, ast.Attribute) and o.attr == "type" for o in operands) and names & CONNECTOR_TYPE_NAMES:
            found.append(ast.unparse(node))
    return found


def test_the_connector_type_rule_can_fail() -> None:
    src = ('if connector.type == "saml": pass\nif "oidc" != c.type: pass\nx = conn.type in ("dev", "oidc")\n'
           'y = e.type == "InvalidClient"\nz = connector.type\n')
    assert connector_type_tests(src) == ['connector.type == \'saml\'', '\'oidc\' != c.type',
                                         'conn.type in (\'dev\', \'oidc\')']


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if not m.startswith("bridge.upstream")))
def test_no_connector_type_tests_outside_upstream(module: str) -> None:
    found = connector_type_tests(SOURCES[module].read_text(encoding="utf-8"))
    assert found == [], (f"{module} branches on a connector's type: {found}; read its ``policy`` or ask a "
                         "capability (isinstance(connector, Reverifier | Passthrough | ...), bridge/upstream/base.py)")


AWS_PACKAGE = ("bridge.aws",)


def aws_reached(module: str) -> tuple[list[str], list[str]]:
    """What of bridge.aws ``module`` imports directly, and what it reaches through bridge modules."""
    direct = sorted(n for n in DIRECT[module] if _is(n, AWS_PACKAGE))
    indirect = sorted(n for n in closure(module) if _is(n, AWS_PACKAGE))
    return direct, indirect


@pytest.mark.parametrize("module", UPSTREAM_MODULES)
def test_upstream_never_imports_bridge_aws(module: str) -> None:
    direct, indirect = aws_reached(module)
    assert direct == [], f"{module} imports {direct}; AWS partition facts are in bridge.domain.partitions"
    assert indirect == [], f"{module} reaches {indirect} through bridge modules"


def test_the_aws_rule_still_has_something_to_catch() -> None:
    # The old import (before partitions.py left bridge/aws) is caught, and bridge.awsome would not be.
    old = imports_in("from bridge.aws.partitions import by_name\n", "bridge.upstream.saml")
    assert any(_is(n, AWS_PACKAGE) for n in old)
    assert not _is("bridge.awsome", AWS_PACKAGE) and not _is("bridge.domain.partitions", AWS_PACKAGE)
    # Real modules outside upstream do reach bridge.aws, directly and only through other bridge modules.
    assert aws_reached("bridge.commands.awssetup")[0]
    assert any(not direct and indirect for direct, indirect in map(aws_reached, SOURCES))


BRIDGE_FILES = sorted(p for p in BRIDGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", BRIDGE_FILES, ids=[str(p.relative_to(ROOT)) for p in BRIDGE_FILES])
def test_nothing_in_bridge_refers_to_shared(path: Path) -> None:
    text = path.read_bytes().decode("utf-8", "replace")
    found = sorted({m.group(0) for m in re.finditer(r"\S*\bshared/\S*|\S*aws-federation\.md\S*", text)})
    assert found == [], f"{path.relative_to(ROOT)} refers to files outside the repository: {found}"


CITATION = re.compile(r"docs/aws-rules\.md (§\d+(?:\.\d+)?(?:[–-]\d+(?:\.\d+)?)?(?:(?:,| and) §\d+(?:\.\d+)?)*)")


def _cited_sections() -> set[str]:
    cited: set[str] = set()
    for path in [*BRIDGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py"),
                 ROOT / "README.md", *(p for p in (ROOT / "docs").rglob("*.md") if p != AWS_RULES)]:
        for m in CITATION.finditer(path.read_text(encoding="utf-8")):
            cited.update(re.findall(r"§(\d+(?:\.\d+)?)", m.group(1)))
    return cited


def test_every_cited_aws_rules_section_exists() -> None:
    headings = set(re.findall(r"^##+ (\d+(?:\.\d+)?)\.? ", AWS_RULES.read_text(encoding="utf-8"), re.MULTILINE))
    cited = _cited_sections()
    assert {"1.10", "2.7", "3"} <= cited  # the checker sees the citations
    assert sorted(cited - headings) == []


# --------------------------------------------------------------------------- the mapping package

MAPPING_MODULES = sorted(m for m in SOURCES if m.startswith("bridge.mapping."))
MAPPING_BANNED = ("bridge.web", "bridge.store", "flask", "redis", "boto3", "botocore")
# The schema must not know who compiles it: compiler and settings build on model, never the reverse.
ABOVE_THE_SCHEMA = ("bridge.mapping.compiler", "bridge.mapping.settings", "bridge.mapping.engine")


def mapping_graph() -> dict[str, set[str]]:
    """Imports between bridge.mapping's modules (the package ``__init__``, which re-exports them, left out)."""
    return {m: {n for n in DIRECT[m] if n in MAPPING_MODULES and n != m} for m in MAPPING_MODULES}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for n in graph.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, …, a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_cycle_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_mapping_layout_exists() -> None:
    assert {"bridge.mapping.model", "bridge.mapping.compiler", "bridge.mapping.settings",
            "bridge.mapping.engine"} <= set(MAPPING_MODULES)
    # Sanity: the graph sees real edges, so the rules below can fail.
    assert "bridge.mapping.model" in mapping_graph()["bridge.mapping.compiler"]


def test_the_mapping_schema_does_not_import_the_compiler() -> None:
    direct = sorted(n for n in DIRECT["bridge.mapping.model"] if _is(n, ABOVE_THE_SCHEMA))
    assert direct == [], f"bridge.mapping.model imports {direct} (even inside a function: that is a cycle)"
    indirect = sorted(reachable(mapping_graph(), "bridge.mapping.model") & set(ABOVE_THE_SCHEMA))
    assert indirect == [], f"bridge.mapping.model reaches {indirect} through other mapping modules"


def test_no_import_cycles_in_mapping() -> None:
    cycle = find_cycle(mapping_graph())
    assert cycle is None, "import cycle in bridge.mapping: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.startswith("bridge.mapping")))
def test_mapping_never_imports_web_store_or_io_clients(module: str) -> None:
    direct = sorted(n for n in DIRECT[module] if _is(n, MAPPING_BANNED))
    assert direct == [], f"{module} imports {direct}"
    indirect = sorted(n for n in closure(module) if _is(n, MAPPING_BANNED))
    assert indirect == [], f"{module} reaches {indirect} through bridge modules"


# --------------------------------------------------------------------------- size and complexity, all of bridge/

MAX_MODULE_LINES = 500
MAX_COMPLEXITY = 20
# Functions allowed above MAX_COMPLEXITY for now, as "<path>:<radon fullname>". Each entry is a debt with
# an owner, not an exemption: remove it when the function is split (the test below fails while an entry
# is no longer needed, so the list cannot outlive its reason).
COMPLEXITY_ALLOWED: set[str] = set()  # none: every function is at most CC 20


def too_complex(source: str, where: str) -> dict[str, int]:
    """``"<where>:<fullname>" → complexity`` for every block (function, method, class, nested function at
    any depth) of ``source`` above MAX_COMPLEXITY, as radon cc counts it."""
    radon = pytest.importorskip("radon.complexity")
    found: dict[str, int] = {}
    todo = list(radon.cc_visit(source))
    while todo:
        block = todo.pop()
        todo.extend(getattr(block, "closures", []))
        if block.complexity > MAX_COMPLEXITY:
            found[f"{where}:{block.fullname}"] = block.complexity
    return found


def _relative(module: str) -> str:
    return str(SOURCES[module].relative_to(ROOT))


def test_the_complexity_rule_can_fail() -> None:
    branches = "".join(f"    if x == {i}:\n        y += {i}\n" for i in range(MAX_COMPLEXITY))
    source = f"def f(x):\n    y = 0\n{branches}    def g(z):\n{branches.replace('    ', '        ')}" \
             "        return z\n    return g(y)\n"
    assert too_complex(source, "sample.py") == {"sample.py:f": MAX_COMPLEXITY + 1, "sample.py:g": MAX_COMPLEXITY + 1}
    assert too_complex("def h(x):\n    return x\n", "sample.py") == {}


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_modules_stay_small(module: str) -> None:
    lines = len(SOURCES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_relative(module)} has {lines} lines; split it along its sections"


def test_functions_stay_simple() -> None:
    found: dict[str, int] = {}
    for module in sorted(SOURCES):
        found.update(too_complex(SOURCES[module].read_text(encoding="utf-8"), _relative(module)))
    over = sorted(f"{name} ({cc})" for name, cc in found.items() if name not in COMPLEXITY_ALLOWED)
    assert over == [], f"cyclomatic complexity above {MAX_COMPLEXITY} (radon cc): split these along their sections"
    stale = sorted(COMPLEXITY_ALLOWED - found.keys())
    assert stale == [], f"no longer above {MAX_COMPLEXITY} (or gone): remove from COMPLEXITY_ALLOWED: {stale}"


def test_storage_and_the_deciding_services_are_covered() -> None:
    assert {"bridge.storage", "bridge.storage.interface", "bridge.storage.records", "bridge.storage.redis",
            "bridge.storage.memory"} <= set(NO_WEB_MODULES)
    assert set(NO_WEB_CORE) | {"bridge.core.signin"} <= set(NO_WEB_MODULES)


def _storage_classes() -> dict[str, ast.ClassDef]:
    return {n.name: n for path in sorted((BRIDGE / "storage").glob("*.py"))
            for n in parse(path.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef)}


def _interface(classes: dict[str, ast.ClassDef]) -> list[ast.FunctionDef]:
    """The ``Store`` façade's methods: its own and those of the per-resource protocols it is made of."""
    todo, out, done = ["Store"], [], set()
    while todo:
        name = todo.pop()
        if name in done or name not in classes:
            continue
        done.add(name)
        out += [n for n in classes[name].body if isinstance(n, ast.FunctionDef)]
        todo += [b.id for b in classes[name].bases if isinstance(b, ast.Name)]
    return out


def test_the_store_interface_passes_typed_records() -> None:
    methods = _interface(_storage_classes())
    assert len(methods) > 30  # the whole interface is read here, not an empty class
    untyped = []
    for fn in methods:
        annotations = [a.annotation for a in (*fn.args.args, *fn.args.kwonlyargs) if a.annotation is not None]
        annotations += [fn.returns] if fn.returns is not None else []
        if any("Any" in ast.unparse(a) for a in annotations) and fn.name not in RAW_STORE_METHODS:
            untyped.append(fn.name)
    assert untyped == [], f"Store methods passing untyped documents: {untyped}"


def _methods(name: str, classes: dict[str, ast.ClassDef]) -> set[str]:
    """The methods of the storage class ``name``, with those of its bases defined under bridge/storage (mixins)."""
    cls = classes[name]
    own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    bases = [b.id for b in cls.bases if isinstance(b, ast.Name) and b.id in classes]
    return own.union(*(_methods(b, classes) for b in bases))


def test_both_stores_implement_the_whole_interface() -> None:
    classes = _storage_classes()
    wanted = {n.name for n in _interface(classes)}
    for cls in ("RedisStore", "MemoryStore"):
        have = _methods(cls, classes)
        assert wanted - have == set(), f"{cls} lacks {sorted(wanted - have)}"


def test_the_services_take_only_the_resources_they_use() -> None:
    """The use cases name the per-resource protocols (bridge/storage/resources.py), never the whole ``Store``
    façade: only the composition root (bridge/web/services.py) and the views it serves hold all of it."""
    whole = []
    for path in sorted(p for pkg in ("core", "protocols", "scim") for p in (BRIDGE / pkg).rglob("*.py")):
        for node in ast.walk(parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bridge.storage") and any(
                    a.name == "Store" for a in node.names):
                whole.append(str(path.relative_to(ROOT)))
    assert whole == [], f"take the resources they use, not the Store façade: {whole}"


def test_storage_records_are_frozen_dataclasses_with_json() -> None:
    records = [n for path in (BRIDGE / "storage" / "records.py", BRIDGE / "domain" / "identity.py")
               for n in parse(path.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef)
               and n.decorator_list and (path.name == "records.py" or n.name == "PendingLogin")]
    assert {r.name for r in records} >= {"SessionRecord", "PendingLogin", "CliToken", "DeviceCode", "SsoClient",
                                         "AuthCode"}
    for r in records:
        frozen = any(isinstance(d, ast.Call) and any(k.arg == "frozen" and getattr(k.value, "value", False)
                                                     for k in d.keywords) for d in r.decorator_list)
        assert frozen, f"{r.name} is not a frozen dataclass"
        names = {n.name for n in r.body if isinstance(n, ast.FunctionDef)}
        if r.name != "DeviceApproval":  # nested inside DeviceCode's JSON
            assert {"to_json", "from_json"} <= names, f"{r.name} lacks to_json/from_json"


# --------------------------------------------------------------------------- packages and their layers

# Lowest first; a package imports only from lower layers (and itself). The table in docs/development.md
# ("Layout") says what each owns; this list is the rule.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("client", "domain"),  # leaves: the laptop client (stdlib + click) and the shared value types
    ("telemetry",),
    ("keys",),
    ("aws",),
    ("mapping",),
    ("upstream",),
    ("config",),
    ("storage",),
    ("scim",),  # SCIM's resources and directory: the core asks the directory at each sign-in and session use
    ("core",),
    ("protocols",),
    ("web",),
    ("runtime",),
    ("commands",),
    ("__main__",),
)
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
# click, and CPython's own C sha256 (imported directly: hashlib costs credential-process start-up time)
CLIENT_MAY_IMPORT = ("click", "_sha2")


def package_of(module: str) -> str:
    return module.split(".")[1]


def upward_imports(module: str) -> list[str]:
    """``module``'s imports of bridge packages at its own layer or above (its own package excepted)."""
    own = package_of(module)
    return sorted(n for n in DIRECT[module] if n.startswith("bridge.") and package_of(n) != own
                  and RANK[package_of(n)] >= RANK[own])


PACKAGED = sorted(m for m in SOURCES if m.count(".") >= 1)


def test_only_the_package_itself_and_the_console_script_sit_at_the_root() -> None:
    root = sorted(p.name for p in BRIDGE.glob("*.py"))
    assert root == ["__init__.py", "__main__.py"]
    assert set(RANK) == {p.name for p in BRIDGE.iterdir() if (p / "__init__.py").exists()} | {"__main__"}


@pytest.mark.parametrize("module", PACKAGED)
def test_imports_go_down_the_layers_only(module: str) -> None:
    assert upward_imports(module) == [], f"{module} imports from its own layer or above"


def test_the_layer_rule_can_fail() -> None:
    assert upward_imports("bridge.runtime.app") == [] and "bridge.web" in {
        ".".join(n.split(".")[:2]) for n in DIRECT["bridge.runtime.app"]}
    assert RANK["web"] > RANK["core"] > RANK["mapping"]


CLIENT_MODULES = sorted(m for m in SOURCES if m == "bridge.client" or m.startswith("bridge.client."))


@pytest.mark.parametrize("module", CLIENT_MODULES)
def test_the_laptop_client_imports_only_the_standard_library_and_click(module: str) -> None:
    foreign = sorted(n for n in DIRECT[module] if n.split(".")[0] not in sys.stdlib_module_names
                     and not _is(n, ("bridge.client", *CLIENT_MAY_IMPORT)))
    assert foreign == []


def test_the_package_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for m in PACKAGED:
        graph.setdefault(package_of(m), set()).update(
            package_of(n) for n in DIRECT[m] if n.startswith("bridge.") and n.count(".") >= 1
            and package_of(n) != package_of(m))
    assert find_cycle(graph) is None
