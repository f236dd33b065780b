"""mkdocs hook: refuse to build the site from generated pages that no longer match the code.

The configuration reference, the troubleshooting page and the demo's rules page are written by
``scripts/gen_docs.py`` (``make docs-gen``); ``mkdocs build --strict`` (in ``make lint``) fails here
when one is out of date or when ``docs/errors.yaml`` and the error codes in ``bridge/`` disagree.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]


def _gen_docs() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def on_pre_build(config: Any, **kwargs: Any) -> None:
    gen = _gen_docs()
    problems = gen.catalog_problems()
    if problems:
        raise PluginError("docs/errors.yaml does not match the error codes in bridge/:\n  " + "\n  ".join(problems))
    stale = gen.stale_pages()
    if stale:
        raise PluginError(f"generated pages out of date: {', '.join(stale)} — run `make docs-gen`")


def saml_presets_table() -> str:
    """The attribute names of each SAML ``attribute_preset``, from the code."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bridge.upstream.saml_settings import SAML_PRESETS

    def names(values: tuple[str, ...]) -> str:
        return ", ".join(f"`{v}`" for v in values) or "—"

    rows = ["| `attribute_preset` | e-mail | name | groups | stable id (suggested for `subject_attribute`) |",
            "|---|---|---|---|---|"]
    rows += [f"| `{name}` | {names(a['email'])} | {names(a['name'])} | {names(a['groups'])} | {names(a['subject'])} |"
             for name, a in SAML_PRESETS.items()]
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Tables filled in from the code at build time (markers: ``<!-- saml-presets -->``)."""
    if "<!-- saml-presets -->" in markdown:
        markdown = markdown.replace("<!-- saml-presets -->", saml_presets_table())
    return markdown
