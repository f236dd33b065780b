"""Semantic checks: problems across options and sections, run once every section validated.

Each problem reads ``path.to.option: message``, like the validation problems before them; they
come out in a stable order (connectors first, in the order written, then the other sections).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from bridge.aws.arn import PARTITIONS
from bridge.config.apps import apps_problems
from bridge.config.schema import Settings, listen_port
from bridge.config.scim import scim_problems
from bridge.config.sources import parse_yaml
from bridge.keys.signing import SUPPORTED_ALGS
from bridge.upstream.dev_settings import DevConnectorSettings
from bridge.upstream.oidc_settings import OidcConnectorSettings
from bridge.upstream.registry import AnyConnectorSettings
from bridge.upstream.saml_settings import SamlConnectorSettings

_SYMMETRIC_OR_NONE = ("none", "HS256", "HS384", "HS512")


def semantic_problems(s: Settings) -> list[str]:
    """Every problem a validated ``Settings`` still has (an empty list when it is usable)."""
    problems = _duplicate_connector_ids(s)
    for i, c in enumerate(s.connectors):
        problems += _connector_problems(f"connectors[{i}]", c, s)
    for i, c in enumerate(s.connectors):
        if isinstance(c, SamlConnectorSettings):
            problems += _saml_problems(f"connectors[{i}]", c, s)
    return (problems + _issuer_aws_problems(s) + _local_file_problems(s) + _listener_session_problems(s)
            + _passthrough_rule_problems(s) + scim_problems(s) + apps_problems(s))


def _passthrough_rule_problems(s: Settings) -> list[str]:
    """``path: passthrough`` grants redeem an OIDC connector's own ID token (``aws_passthrough``): a rule
    with one must name only such connectors, or (unscoped) there must be one; identities of other
    connectors are never offered the grant (withheld ``no_passthrough``)."""
    able = {c.id for c in s.connectors if isinstance(c, OidcConnectorSettings) and c.aws_passthrough}
    problems = []
    for i, r in enumerate(s.mapping.rules):
        if not any(getattr(g, "path", None) == "passthrough" for g in r.grants or []):
            continue
        where = f"mapping.rules[{i}] ({r.name})"
        unable = [c for c in (r.connectors or []) if c not in able]
        if unable:
            problems.append(f"{where}: path: passthrough needs an OIDC connector with aws_passthrough: true; "
                            f"{unable} have none (SAML pass-through offers the IdP's Role attribute, not rules)")
        elif r.connectors is None and not able:
            problems.append(f"{where}: path: passthrough needs an OIDC connector with aws_passthrough: true, and "
                            "no connector has one; scope the rule with connectors: [...] or use path jwt/saml")
    return problems


def _duplicate_connector_ids(s: Settings) -> list[str]:
    ids = [c.id for c in s.connectors]
    return [f"connectors: id {dup!r} is used more than once" for dup in sorted({i for i in ids if ids.count(i) > 1})]


def _connector_problems(where: str, c: AnyConnectorSettings, s: Settings) -> list[str]:
    problems = []
    if isinstance(c, DevConnectorSettings) and c.enabled and not s.insecure_dev_login:
        problems.append(f"{where}: the dev connector {c.id!r} needs insecure_dev_login: true "
                        "(it signs anyone in as any user)")
    if isinstance(c, OidcConnectorSettings):
        minted = c.apple is not None  # preset apple: the secret is minted from apple.private_key
        if c.token_endpoint_auth_method != "none" and c.client_secret is None and not minted:  # noqa: S105
            problems.append(f"{where}.client_secret: required for {c.token_endpoint_auth_method} "
                            "(or set client_secret_file)")
        bad = [a for a in c.allowed_algs if a in _SYMMETRIC_OR_NONE]
        if bad:
            problems.append(f"{where}.allowed_algs: {bad} are not allowed for ID tokens")
    return problems


def _saml_problems(where: str, c: SamlConnectorSettings, s: Settings) -> list[str]:
    problems = []
    if c.max_session is not None and c.max_session > s.session.absolute_timeout:
        problems.append(f"{where}.max_session: longer than session.absolute_timeout "
                        "(it can only shorten sessions)")
    for name in ("metadata_file", "sp_key_file", "sp_cert_file"):
        path = getattr(c, name)
        if path is not None and not s.resolve(path).is_file():
            problems.append(f"{where}.{name}: {s.resolve(path)} does not exist")
    for j, path in enumerate(c.idp_cert_files):
        if not s.resolve(path).is_file():
            problems.append(f"{where}.idp_cert_files[{j}]: {s.resolve(path)} does not exist")
    return problems


def _issuer_aws_problems(s: Settings) -> list[str]:
    problems = []
    if s.issuer.key_alg not in SUPPORTED_ALGS:
        problems.append(f"issuer.key_alg: use one of {SUPPORTED_ALGS}")
    if s.aws.partition not in PARTITIONS:
        problems.append("aws.partition: unknown partition")
    return problems


def _local_file_problems(s: Settings) -> list[str]:
    problems = []
    for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        path = getattr(s.redis, name)
        if path is not None and not s.resolve(path).is_file():
            problems.append(f"redis.{name}: {s.resolve(path)} does not exist")
    if s.audit.sink == "file" and s.audit.path is not None and not s.resolve(s.audit.path).parent.is_dir():
        problems.append(f"audit.path: folder {s.resolve(s.audit.path).parent} does not exist")
    return problems


def _listener_session_problems(s: Settings) -> list[str]:
    problems = []
    if s.metrics.listen is not None and listen_port(s.metrics.listen) == listen_port(s.listen):
        problems.append("metrics.listen: must be another port than listen")
    if s.session.idle_timeout > s.session.absolute_timeout:
        problems.append("session.idle_timeout: longer than session.absolute_timeout")
    return problems


def startup_warnings(s: Settings) -> list[str]:
    """What a starting bridge warns about (never fatal): the settings' warnings, and an empty rule set."""
    out = s.warnings()
    if not s.mapping.rules and s.mapping.expected_rules is None:
        # Allowed (a fresh install, tests), but say so: nobody signing in gets any role.
        out.append("mapping: no rules: nobody gets any role")
    return out


# What config/bridge.example.yaml puts where a secret goes: a config that still has it was copied
# and not finished.
PLACEHOLDER = "change-me"


def deployment_problems(s: Settings) -> list[str]:
    """What ``bridge check-config`` and ``bridge serve`` refuse on top of a valid ``Settings``: a config
    that would start but cannot work in production (placeholder secrets, an issuer AWS would not
    register, a rules file with nothing in it). Startup from code (tests, the demo) does not check these."""
    problems = [f"{where}: still the example's placeholder {PLACEHOLDER!r}: set a real secret (e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`) or read it from a *_file"
                for where in _placeholder_secrets(s)]
    issuer = urlsplit(s.issuer_url)
    if issuer.port is not None:
        where = "issuer.url" if s.issuer.url else "issuer.url (unset: base_url)"
        problems.append(f"{where}: {s.issuer_url} has a port; AWS IAM registers OIDC issuers by https URL without "
                        "a port (serve the issuer documents on 443, or set issuer.url to the public URL)")
    path = s.rules_path
    if path is not None and _holds_nothing(path):
        problems.append(f"mapping.rules_file: {path} is empty (no rules, no accounts): a truncated or half-written "
                        "file? Write the rules; to mean none, write `expected_rules: 0` and `rules: []`")
    return problems


def _placeholder_secrets(s: Settings) -> list[str]:
    found = []
    secrets = {"secret_key": s.secret_key, "redis.password": s.redis.password,
               "redis.sentinel_password": s.redis.sentinel_password, "metrics.bearer_token": s.metrics.bearer_token}
    for i, c in enumerate(s.connectors):
        secrets[f"connectors[{i}].client_secret"] = getattr(c, "client_secret", None)
    for where, value in secrets.items():
        if value is not None and PLACEHOLDER in value.get_secret_value().lower():
            found.append(where)
    return found


def _holds_nothing(path: Path) -> bool:
    """The rules file exists and holds nothing: no bytes, only blanks, or only YAML comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # the loader reported it
    if not text.strip():
        return True
    try:
        return path.suffix.lower() != ".json" and parse_yaml(text) is None
    except Exception:  # noqa: BLE001 - broken YAML was reported by the loader
        return False
