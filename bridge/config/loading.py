"""Reading config files into ``Settings``: ``load_settings(path)``, ``settings_from_dict(raw)``, the
``mapping:`` section with its rules file (``load_mapping_section``), and ``reload_mapping``.

Every entry point raises ``ConfigError`` listing EVERY problem as ``path.to.option: message``:
the raw document's (``bridge.config.sources``), the schema's (``bridge.config.schema``), the
mapping's and, once all of those pass, the semantic ones (``bridge.config.checks``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridge.config.checks import semantic_problems
from bridge.config.schema import Settings
from bridge.config.sources import (
    FileStamp,
    file_stamp,
    interpolate,
    parse_yaml,
    read_secret_files,
    rules_file_path,
    yaml_problem,
)
from bridge.domain.errors import ConfigError
from bridge.mapping import MappingSettings, load_mapping
from bridge.mapping.compiler import gc_paused
from bridge.mapping.settings import account_problems
from bridge.upstream.registry import CONNECTOR_TYPES
from bridge.upstream.workload_settings import workload_ids


def _loc(loc: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in CONNECTOR_TYPES and parts and parts[-1].endswith("]"):
            continue  # discriminator tag pydantic adds; the user never wrote it
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _read_rules_file(path: Path, label: str, problems: list[str]) -> dict[str, Any]:
    """The rules file (YAML, or JSON when it ends in .json — parsed faster, for generated rule sets):
    a list of rules, or a mapping with ``rules`` and/or ``accounts``."""
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix.lower() == ".json" else parse_yaml(text)
    except OSError as e:
        problems.append(f"mapping.rules_file: cannot read {path} ({e.strerror})")
        return {}
    except yaml.YAMLError as e:
        problems.append(yaml_problem(label, e))
        return {}
    except json.JSONDecodeError as e:
        problems.append(f"{label} (line {e.lineno}): not valid JSON: {e.msg}")
        return {}
    if isinstance(doc, list):
        doc = {"rules": doc}
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        problems.append(f"{label}: must be a list of rules, or a mapping with rules and accounts")
        return {}
    for k in [k for k in doc if k not in ("rules", "accounts", "expected_rules")]:
        problems.append(f"{label}:{k}: unknown key (a rules file holds rules, accounts and expected_rules)")
        del doc[k]
    if "${" not in text:  # nothing to interpolate: skip walking 10,000 rules
        return doc
    out: dict[str, Any] = interpolate(doc, f"{label}:", problems)
    return out



def load_mapping_section(raw: Any, source_dir: Path, *, partition: str, connectors: list[str] | None,
                         workloads: list[str] | None = None) -> tuple[MappingSettings | None, list[str]]:
    """The ``mapping:`` section plus its rules file, validated and compiled; problems prefixed with where
    they are (``mapping.rules[2]…`` or ``rules.yaml:rules[2]…``). ``workloads``: the workload connectors' ids."""
    with gc_paused():
        return _load_mapping_section(raw, source_dir, partition, connectors, workloads or [])


def _load_mapping_section(raw: Any, source_dir: Path, partition: str, connectors: list[str] | None,
                          workloads: list[str]) -> tuple[MappingSettings | None, list[str]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, ["mapping: must be a mapping (rules, accounts, rules_file, reload_interval)"]
    problems: list[str] = []
    doc, origin, stamps = _with_rules_file(dict(raw), source_dir, problems)
    _with_accounts_file(doc, source_dir, problems, stamps)
    _external_id_files(doc, source_dir, problems)
    try:
        mapping = load_mapping(doc, partition=partition, connectors=connectors, workloads=workloads)
        mapping.file_stamps.update(stamps)
    except ConfigError as e:
        problems += [_where_written(p, origin) for p in e.problems]
        return None, problems
    return (mapping if not problems else None), problems


def _external_id_files(doc: dict[str, Any], source_dir: Path, problems: list[str]) -> None:
    """``external_id_file`` of catalog roles and grants, wherever written (the config, a rules file, a reload),
    read in place, relative to the config's folder. Only where an ExternalId can be, not a walk of every
    rule (10,000 rules load in well under a second)."""
    places: list[tuple[str, Any]] = []
    accounts = doc.get("accounts")
    if isinstance(accounts, dict):
        places += [(f"accounts.{a}.roles.{r}", e) for a, acct in accounts.items() if isinstance(acct, dict)
                   and isinstance(acct.get("roles"), dict) for r, e in acct["roles"].items()]
    rules = doc.get("rules")
    if isinstance(rules, list):
        places += [(f"rules[{i}].grants[{j}]", g) for i, rule in enumerate(rules) if isinstance(rule, dict)
                   and isinstance(rule.get("grants"), list) for j, g in enumerate(rule["grants"])]
    for where, entry in places:
        if isinstance(entry, dict) and "external_id_file" in entry:
            entry.update(read_secret_files({"external_id_file": entry.pop("external_id_file"),
                                            **({"external_id": entry.pop("external_id")} if "external_id" in entry
                                               else {})}, f"mapping.{where}", source_dir, problems))


def _with_rules_file(doc: dict[str, Any], source_dir: Path, problems: list[str],
                     ) -> tuple[dict[str, Any], dict[str, str], dict[str, FileStamp]]:
    """``doc`` (the ``mapping:`` section) with its rules file's keys merged in; where each key was
    written (``mapping.`` or ``<rules_file>:``); the rules file's stamp."""
    origin = dict.fromkeys(doc, "mapping.")
    rules_file = doc.get("rules_file")
    stamps: dict[str, FileStamp] = {}
    if rules_file is not None and not (isinstance(rules_file, str) and rules_file):
        problems.append("mapping.rules_file: must be a file path")
    elif rules_file:
        path = rules_file_path(rules_file, source_dir)
        assert path is not None
        stamps[str(path)] = file_stamp(path)
        for k, v in _read_rules_file(path, rules_file, problems).items():
            if doc.get(k) is not None:
                problems.append(f"mapping.{k}: given here and in {rules_file}; keep one")
            doc[k] = v
            origin[k] = f"{rules_file}:"
    return doc, origin, stamps


def _with_accounts_file(doc: dict[str, Any], source_dir: Path, problems: list[str],
                        stamps: dict[str, FileStamp]) -> None:
    """``mapping.accounts_file`` (what ``bridge accounts sync --write`` writes) merged into the catalog; its
    stamp, so an edit reloads it with the rules. Problems say the file and the entry."""
    name = doc.get("accounts_file")
    if name is None:
        return
    if not (isinstance(name, str) and name):
        problems.append("mapping.accounts_file: must be a file path")
        return
    path = rules_file_path(name, source_dir)
    assert path is not None
    stamps[str(path)] = file_stamp(path)
    try:
        text = path.read_text(encoding="utf-8")
        read = json.loads(text) if path.suffix.lower() == ".json" else parse_yaml(text)
    except OSError as e:
        problems.append(f"mapping.accounts_file: cannot read {path} ({e.strerror})")
        return
    except yaml.YAMLError as e:
        problems.append(yaml_problem(name, e))
        return
    except json.JSONDecodeError as e:
        problems.append(f"{name} (line {e.lineno}): not valid JSON: {e.msg}")
        return
    if not isinstance(read, dict) or set(read) != {"accounts"} or not isinstance(read["accounts"], dict):
        problems.append(f"{name}: must be a mapping with one key, accounts (as `bridge accounts sync --write` "
                        "writes it)")
        return
    entries: dict[str, Any] = read["accounts"]
    _external_id_files({"accounts": entries}, source_dir, problems)  # relative to the config's folder, as elsewhere
    bad = account_problems(entries)
    if bad:
        problems += [f"{name}:{p}" for p in bad]
        return
    accounts = doc.get("accounts") or {}
    if not isinstance(accounts, dict):
        return  # the loader says what is wrong with mapping.accounts
    for acct in sorted(set(accounts) & set(entries)):
        problems.append(f"mapping.accounts.{acct}: also in {name}; keep one")
    doc["accounts"] = {**entries, **accounts}


def _where_written(problem: str, origin: dict[str, str]) -> str:
    """A mapping problem prefixed with where its key was written (``mapping.`` or ``<rules_file>:``)."""
    if problem.startswith("(top level)"):
        return "mapping" + problem.removeprefix("(top level)")
    key = re.match(r"[A-Za-z_]+", problem)
    return origin.get(key[0] if key else "", "mapping.") + problem


def reload_mapping(settings: Settings) -> MappingSettings:
    """Read the mapping again (the config file's ``mapping:`` and its rules file); raise ConfigError
    listing every problem. Only the mapping changes: other settings need a restart."""
    raw: Any = settings._mapping_raw
    problems: list[str] = []
    stamps: dict[str, FileStamp] = {}
    if settings.source_file is not None:
        stamps[str(settings.source_file)] = file_stamp(settings.source_file)
        try:
            doc = parse_yaml(settings.source_file.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError([f"{settings.source_file}: cannot read config ({e.strerror})"]) from None
        except yaml.YAMLError as e:
            raise ConfigError([yaml_problem(str(settings.source_file), e)]) from None
        raw = interpolate(doc.get("mapping") if isinstance(doc, dict) else None, "mapping", problems)
    mapping, more = load_mapping_section(raw, settings.source_dir, partition=settings.aws.partition,
                                         connectors=[c.id for c in settings.connectors],
                                         workloads=workload_ids(settings.connectors))
    problems += more
    if problems or mapping is None:
        raise ConfigError(problems)
    mapping.file_stamps.update(stamps)
    return mapping


def settings_from_dict(raw: Any, *, source_dir: Path = Path("."), source_file: Path | None = None) -> Settings:
    """Build and validate settings from a parsed YAML document; raise ConfigError with every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): the config must be a YAML mapping"])
    data = interpolate(raw, "", problems)
    data = read_secret_files(data, "", source_dir, problems)
    data["source_dir"] = source_dir
    data["source_file"] = source_file
    raw_mapping = data.pop("mapping", None)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        problems += [f"{_loc(err['loc'])}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors()]
    # The mapping is checked even when other sections are broken, so every problem shows at once.
    aws = data.get("aws") if isinstance(data.get("aws"), dict) else {}
    connectors = data.get("connectors") if isinstance(data.get("connectors"), list) else []
    mapping, more = load_mapping_section(
        raw_mapping, source_dir, partition=str(aws.get("partition", "aws")),
        connectors=[str(c.get("id")) for c in connectors if isinstance(c, dict) and "id" in c],
        workloads=workload_ids(settings.connectors) if settings is not None else [])
    problems += more
    if settings is None or mapping is None:
        raise ConfigError(problems)
    settings.mapping = mapping
    settings._mapping_raw = raw_mapping
    problems += semantic_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read ``path`` (YAML) into Settings; raise ConfigError listing every problem."""
    p = Path(path)
    stamp = file_stamp(p.resolve())
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{p}: cannot read config ({e.strerror})"]) from None
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError([yaml_problem(str(p), e)]) from None
    settings = settings_from_dict(raw, source_dir=p.resolve().parent, source_file=p.resolve())
    settings.mapping.file_stamps[str(p.resolve())] = stamp
    return settings
