"""Narrow wiring (bridge/web/services.py is the composition root): no constructor takes the whole ``Settings``,
every ``Services`` field is set (a feature that is off is a null object, never None), and nothing is
assigned onto a service after it was built (a dependency cycle is broken, not hidden)."""

from __future__ import annotations

import ast
from pathlib import Path

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"


def _annotation(a: ast.arg) -> str:
    return ast.unparse(a.annotation) if a.annotation is not None else ""


def settings_constructors(root: Path) -> list[str]:
    """Every ``__init__`` under ``root`` with a parameter typed ``Settings`` (the whole settings)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "__init__" not in source or "Settings" not in source:  # none to find: not worth a parse
            continue
        for n in ast.walk(ast.parse(source)):
            if isinstance(n, ast.FunctionDef) and n.name == "__init__":
                out += [f"{path.relative_to(root)}:{n.lineno} {a.arg}" for a in n.args.args + n.args.kwonlyargs
                        if "Settings" in {p.strip() for p in _annotation(a).split("|")}]
    return out


def optional_services_fields(services: Path) -> list[str]:
    cls = next(n for n in ast.parse(services.read_text(encoding="utf-8")).body
               if isinstance(n, ast.ClassDef) and n.name == "Services")
    return [ast.unparse(f) for f in cls.body if isinstance(f, ast.AnnAssign)
            and ("None" in ast.unparse(f.annotation) or "Optional" in ast.unparse(f.annotation))]


def assigned_after_construction(services: Path) -> list[str]:
    """``x.attr = …`` inside ``build_services``: wiring set onto a service once it exists."""
    fn = next(n for n in ast.walk(ast.parse(services.read_text(encoding="utf-8")))
              if isinstance(n, ast.FunctionDef) and n.name == "build_services")
    return [ast.unparse(n) for n in ast.walk(fn) if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Attribute) for t in n.targets)]


def test_no_constructor_takes_the_whole_settings() -> None:
    assert settings_constructors(BRIDGE) == []


# Off means "not served at all" for these (no blueprint, a 404), which a null object would hide.
FEATURES_THAT_MAY_BE_ABSENT = ["scim: ScimService | None"]


def test_every_services_field_is_set() -> None:
    assert optional_services_fields(BRIDGE / "web" / "services.py") == FEATURES_THAT_MAY_BE_ABSENT


def test_nothing_is_assigned_onto_a_service_after_it_was_built() -> None:
    assert assigned_after_construction(BRIDGE / "web" / "services.py") == []


def test_the_checks_find_each_kind_of_wide_wiring(tmp_path: Path) -> None:
    """The three checks above can fail: each finds what the wiring looked like before."""
    (tmp_path / "issuing.py").write_text("class CredentialIssuer:\n"
                                         "    def __init__(self, settings: Settings, keys: object) -> None: ...\n")
    services = tmp_path / "services.py"
    services.write_text("@dataclass\nclass Services:\n    settings: Settings\n"
                        "    cache: CredentialCache | None = None\n"
                        "def build_services(settings: Settings) -> Services:\n"
                        "    access = AccessPoint(settings)\n    access.requests = AccessRequests(access)\n")
    assert settings_constructors(tmp_path) == ["issuing.py:2 settings"]
    assert optional_services_fields(services) == ["cache: CredentialCache | None = None"]
    assert assigned_after_construction(services) == ["access.requests = AccessRequests(access)"]
