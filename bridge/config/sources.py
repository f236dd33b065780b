"""The raw documents, before validation: YAML reading, ``${VAR}`` / ``${VAR:-default}`` interpolation,
``*_file`` secrets, file stamps (what tells a changed file from an unchanged one) and config-relative paths.

- ``${NAME}`` in any string is replaced by the environment variable (an unset variable is a
  problem); ``${NAME:-default}`` falls back to ``default``.
- For a secret option ``X`` (``client_secret``, ``secret_key``, ``bearer_token``, a role's ``external_id``…),
  ``X_file: /path`` reads the secret from that file (trailing newline stripped). Giving both is a problem.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from bridge.mapping.compiler import gc_paused

SECRET_OPTIONS = ("client_secret", "secret_key", "password", "sentinel_password", "bearer_token", "external_id",
                  "token", "private_key")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(node: Any, path: str, problems: list[str]) -> Any:
    """``node`` with ``${VAR}`` / ``${VAR:-default}`` replaced in every string; unset variables go to ``problems``."""
    if isinstance(node, dict):
        return {k: interpolate(v, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        def sub(m: re.Match[str]) -> str:
            value = os.environ.get(m[1])
            if value is None or (value == "" and m[2] is not None):  # ":-" = unset or empty, as in sh
                if m[2] is None:
                    problems.append(f"{path}: environment variable {m[1]} is not set")
                    return ""
                return m[2]
            return value
        out = _ENV_RE.sub(sub, node)
        # A whole-value ${X} that became "true"/"123" should type like YAML would.
        if _ENV_RE.fullmatch(node) and out.lower() in ("true", "false"):
            return out.lower() == "true"
        return out
    return node


def read_secret_files(node: Any, path: str, base: Path, problems: list[str]) -> Any:
    """``node`` with every ``<secret>_file`` replaced by ``<secret>``, read from that file (relative to ``base``)."""
    if isinstance(node, list):
        return [read_secret_files(v, f"{path}[{i}]", base, problems) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out = {k: read_secret_files(v, f"{path}.{k}" if path else k, base, problems) for k, v in node.items()}
    for name in SECRET_OPTIONS:
        file_key = f"{name}_file"
        if file_key not in out:
            continue
        where = f"{path}.{file_key}" if path else file_key
        if name in out:
            problems.append(f"{where}: give {name} or {file_key}, not both")
        p = Path(str(out.pop(file_key)))
        p = p if p.is_absolute() else base / p
        try:
            out[name] = p.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            problems.append(f"{where}: cannot read {p} ({e.strerror})")
    return out


FileStamp = tuple[int, int, int] | None  # (mtime_ns, size, inode); None = missing


def file_stamp(path: Path) -> FileStamp:
    """What tells a changed file from an unchanged one, cheaply. Taken *before* reading a file, so a
    change made while it is being read still shows as a change later."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def parse_yaml(text: str) -> Any:
    """A YAML document (safe loader)."""
    # libyaml when present, and no cyclic GC while building the tree: a 10,000-rule file parses in a
    # fraction of the time (bench/bench_rules.py).
    with gc_paused():
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def yaml_problem(where: str, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    line = f"line {mark.line + 1}" if mark else "?"
    return f"{where} ({line}): not valid YAML: {getattr(e, 'problem', e)}"


def rules_file_path(rules_file: str | None, source_dir: Path) -> Path | None:
    """``mapping.rules_file`` resolved against the config's folder."""
    if not rules_file:
        return None
    p = Path(rules_file)
    return p if p.is_absolute() else source_dir / p

