"""Settings loading (bridge/config/): every problem listed with its path, env and file secrets, CLI."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.config import ConfigError, load_settings, settings_from_dict
from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key, load_keyring

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "arn:aws:iam::123456789012:role/Admin"

MINIMAL: dict[str, Any] = {
    "base_url": "https://bridge.example.com",
    "connectors": [
        {
            "id": "corp",
            "type": "oidc",
            "issuer": "https://idp.example.com",
            "client_id": "bridge",
            "client_secret": "s3cret",
        }
    ],
}
DEV_CONNECTOR: dict[str, Any] = {"id": "dev", "type": "dev", "users": [{"subject": "alice", "groups": ["g"]}]}


def minimal(**top: Any) -> dict[str, Any]:
    d = copy.deepcopy(MINIMAL)
    d.update(top)
    return d


def problems_of(raw: Any, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(raw, **kw)
    assert exc.value.problems, "ConfigError without problems"
    assert str(exc.value) == "\n".join(exc.value.problems)
    return exc.value.problems


def connector(**kw: Any) -> dict[str, Any]:
    c = copy.deepcopy(MINIMAL["connectors"][0])
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- valid settings


def test_minimal_valid_config() -> None:
    s = settings_from_dict(minimal(base_url="https://bridge.example.com/"))
    assert s.base_url == "https://bridge.example.com"  # trailing slash dropped
    assert s.issuer_url == "https://bridge.example.com"
    assert s.secure_cookies is True
    c = s.connectors[0]
    assert c.type == "oidc" and c.client_secret is not None and c.client_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)  # SecretStr stays masked
    assert s.mapping.rules == [] and [w for w in s.warnings() if "/metrics is open" not in w] == []
    assert any("/metrics is open" in w for w in s.warnings())  # neither a token nor a listener
    assert s.issuer.audience == "sts.amazonaws.com" and s.aws.partition == "aws"


def test_config_must_be_a_mapping() -> None:
    assert problems_of(["base_url"]) == ["(top level): the config must be a YAML mapping"]


def test_many_problems_are_all_listed_with_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_TEST_UNSET", raising=False)
    raw = minimal(
        base_url="ftp://bridge.example.com",
        bogus=1,
        secret_key="${BRIDGE_TEST_UNSET}",
        connectors=[connector(client_id=None)],
        mapping={
            "rules": [
                {"name": "admins", "group": "g", "role_arn": "arn:aws:iam::1:role/Admin"},
                {"name": "both", "group": "g", "claim": "email", "equals": "x", "role_arn": ADMIN},
            ]
        },
    )
    problems = problems_of(raw)
    expected = [
        "secret_key: environment variable BRIDGE_TEST_UNSET is not set",
        "base_url: must be an http(s) URL with no query",
        "bogus: Extra inputs are not permitted",
        "connectors[0].client_id: Field required",
        "mapping.rules[0].role_arn: 'arn:aws:iam::1:role/Admin' is not an IAM role ARN",
        "mapping.rules[1]: set exactly one of 'group' or 'claim'",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert len(problems) == len(expected)


def test_nested_section_problems_name_their_path() -> None:
    problems = problems_of(
        minimal(aws={"region": "Europe"}, session={"idle_timeout": 5}, issuer={"token_lifetime": 3600})
    )
    assert {p.split(":", 1)[0] for p in problems} == {
        "aws.region",
        "session.idle_timeout",
        "issuer.token_lifetime",
    }


# --------------------------------------------------------------------------- ${VAR} interpolation


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TEST_HOST", "bridge.corp.example")
    monkeypatch.setenv("BRIDGE_TEST_SECRET", "from-env")
    monkeypatch.setenv("BRIDGE_TEST_FLAG", "True")
    monkeypatch.delenv("BRIDGE_TEST_PORT", raising=False)
    raw = minimal(
        base_url="https://${BRIDGE_TEST_HOST}/",
        listen="0.0.0.0:${BRIDGE_TEST_PORT:-8443}",
        connectors=[connector(client_secret="${BRIDGE_TEST_SECRET}"), DEV_CONNECTOR],
        insecure_dev_login="${BRIDGE_TEST_FLAG}",
    )
    s = settings_from_dict(raw)
    assert s.base_url == "https://bridge.corp.example"
    assert s.listen == "0.0.0.0:8443"
    assert s.connectors[0].client_secret.get_secret_value() == "from-env"  # type: ignore[union-attr]
    assert s.insecure_dev_login is True


def test_env_value_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TEST_PORT", "9000")
    assert (
        settings_from_dict(minimal(listen="127.0.0.1:${BRIDGE_TEST_PORT:-8000}")).listen == "127.0.0.1:9000"
    )


def test_unset_variable_is_a_problem_with_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_TEST_MISSING", raising=False)
    problems = problems_of(
        minimal(
            connectors=[connector(client_secret="${BRIDGE_TEST_MISSING}")],
            redis={"url": "redis://${BRIDGE_TEST_MISSING}:6379/0"},
        )
    )
    assert "connectors[0].client_secret: environment variable BRIDGE_TEST_MISSING is not set" in problems
    assert "redis.url: environment variable BRIDGE_TEST_MISSING is not set" in problems


def test_empty_variable_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TEST_PORT", "")
    assert (
        settings_from_dict(minimal(listen="127.0.0.1:${BRIDGE_TEST_PORT:-8000}")).listen == "127.0.0.1:8000"
    )


# --------------------------------------------------------------------------- *_file secrets


def test_client_secret_file_is_read_and_newline_stripped(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("file-secret\n", encoding="utf-8")
    raw = minimal(connectors=[connector(client_secret=None, client_secret_file="secret.txt")])
    s = settings_from_dict(raw, source_dir=tmp_path)  # relative to the config's directory
    assert s.connectors[0].client_secret.get_secret_value() == "file-secret"  # type: ignore[union-attr]


def test_secret_key_file(tmp_path: Path) -> None:
    path = tmp_path / "session.key"
    path.write_text("k" * 40 + "\r\n", encoding="utf-8")
    s = settings_from_dict(minimal(secret_key_file=str(path)))
    assert s.secret_key.get_secret_value() == "k" * 40


def test_unreadable_secret_file_is_listed(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    problems = problems_of(
        minimal(connectors=[connector(client_secret=None, client_secret_file=str(missing))])
    )
    assert (
        problems[0] == f"connectors[0].client_secret_file: cannot read {missing} (No such file or directory)"
    )


def test_secret_and_secret_file_both_given(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("x", encoding="utf-8")
    problems = problems_of(minimal(connectors=[connector(client_secret_file=str(tmp_path / "s"))]))
    assert problems == [
        "connectors[0].client_secret_file: give client_secret or client_secret_file, not both"
    ]


def test_oidc_connector_needs_a_secret_unless_auth_none() -> None:
    problems = problems_of(minimal(connectors=[connector(client_secret=None)]))
    assert problems == [
        "connectors[0].client_secret: required for client_secret_basic (or set client_secret_file)"
    ]
    s = settings_from_dict(
        minimal(connectors=[connector(client_secret=None, token_endpoint_auth_method="none")])
    )
    assert s.connectors[0].client_secret is None  # type: ignore[union-attr]


# --------------------------------------------------------------------------- semantic checks


def test_dev_connector_needs_insecure_dev_login() -> None:
    problems = problems_of(minimal(connectors=[connector(), DEV_CONNECTOR]))
    assert len(problems) == 1
    assert problems[0].startswith("connectors[1]: the dev connector 'dev' needs insecure_dev_login: true")
    s = settings_from_dict(minimal(connectors=[connector(), DEV_CONNECTOR], insecure_dev_login=True))
    assert [c.id for c in s.enabled_connectors] == ["corp", "dev"]
    # A disabled dev connector is harmless.
    s = settings_from_dict(minimal(connectors=[connector(), {**DEV_CONNECTOR, "enabled": False}]))
    assert [c.id for c in s.enabled_connectors] == ["corp"]


def test_duplicate_connector_ids() -> None:
    problems = problems_of(minimal(connectors=[connector(), connector(issuer="https://other.example.com")]))
    assert problems == ["connectors: id 'corp' is used more than once"]


def test_rule_naming_unknown_connector() -> None:
    rules = [{"name": "a", "group": "g", "role_arn": ADMIN, "connectors": ["corp", "okta"]}]
    assert problems_of(minimal(mapping={"rules": rules})) == [
        "mapping.rules[0].connectors: no connector with id 'okta'"
    ]


def test_rule_outside_the_configured_partition() -> None:
    rules = [{"name": "a", "group": "g", "role_arn": "arn:aws-cn:iam::123456789012:role/Admin"}]
    assert problems_of(minimal(mapping={"rules": rules})) == [
        "mapping.rules[0].role_arn: not in the configured partition aws"
    ]


def test_semantic_problems_are_all_listed() -> None:
    raw = minimal(
        connectors=[connector(allowed_algs=["RS256", "HS256"]), connector(), DEV_CONNECTOR],
        session={"idle_timeout": 7200, "absolute_timeout": 3600},
    )
    assert problems_of(raw) == [
        "connectors: id 'corp' is used more than once",
        "connectors[0].allowed_algs: ['HS256'] are not allowed for ID tokens",
        "connectors[2]: the dev connector 'dev' needs insecure_dev_login: true "
        "(it signs anyone in as any user)",
        "session.idle_timeout: longer than session.absolute_timeout",
    ]


def test_warnings() -> None:
    s = settings_from_dict(minimal(connectors=[connector(), DEV_CONNECTOR], insecure_dev_login=True))
    assert any("insecure_dev_login" in w for w in s.warnings())
    http = settings_from_dict(
        minimal(base_url="http://127.0.0.1:8000", connectors=[connector(issuer="http://127.0.0.1:9000")])
    )
    text = "\n".join(http.warnings())
    assert "plain http" in text and "not https" in text and "insecure_dev_login" not in text


def test_accepting_unverified_email_is_warned_about() -> None:
    assert not any("email" in w for w in settings_from_dict(minimal(connectors=[connector()])).warnings())
    s = settings_from_dict(minimal(connectors=[connector(insecure_accept_unverified_email=True)]))
    (w,) = [w for w in s.warnings() if "insecure_accept_unverified_email" in w]
    assert w.startswith(f"connector {s.connectors[0].id}: ") and "not verified" in w


# --------------------------------------------------------------------------- load_settings (YAML files)


def test_load_settings_resolves_relative_paths_against_the_file(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "bridge.yaml", minimal(issuer={"keys_dir": "keys"}))
    s = load_settings(cfg)
    assert s.keys_dir == tmp_path.resolve() / "keys"


def test_invalid_yaml_reports_line_number(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "redis:\n  url: redis://127.0.0.1:6379/0\nbase_url: https://x.example.com\n"
        "  listen: 127.0.0.1:8000\nconnectors: []\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    (problem,) = exc.value.problems
    # libyaml and pure-Python PyYAML word it slightly differently
    assert problem.startswith(f"{cfg} (line 4): not valid YAML: mapping values are not allowed")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path / "absent.yaml")
    assert exc.value.problems == [
        f"{tmp_path / 'absent.yaml'}: cannot read config (No such file or directory)"
    ]


# --------------------------------------------------------------------------- bridge check-config


def run_check(cfg: Path) -> Any:
    return CliRunner().invoke(main, ["check-config", "--config", str(cfg)])


def test_check_config_lists_every_problem_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRIDGE_TEST_UNSET", raising=False)
    cfg = write_yaml(
        tmp_path / "bridge.yaml",
        minimal(
            base_url="not a url",
            bogus=True,
            secret_key="${BRIDGE_TEST_UNSET}",
            connectors=[connector(client_id=None)],
            mapping={"rules": [{"name": "x", "claim": "email", "role_arn": ADMIN}]},
        ),
    )
    result = run_check(cfg)
    assert result.exit_code == 1
    assert "ok" not in result.stdout.split()
    assert f"{cfg}: 5 problem(s):" in result.stderr
    for text in (
        "secret_key: environment variable BRIDGE_TEST_UNSET is not set",
        "base_url: must be an http(s) URL",
        "bogus: Extra inputs are not permitted",
        "connectors[0].client_id: Field required",
        "mapping.rules[0]: 'claim' needs 'equals'",
    ):
        assert f"  - {text}" in result.stderr, (text, result.stderr)


def test_check_config_ok_with_generated_keys(tmp_path: Path) -> None:
    generate_key(tmp_path / "keys", "ES256")
    generate_cache_key(tmp_path / "keys")
    rules = [{"name": "r", "match": {"group": "g"}, "grants": [{"role_arn": "arn:aws:iam::123456789012:role/R"}]}]
    (tmp_path / "metrics_token").write_text("scrape-token\n")
    cfg = write_yaml(tmp_path / "bridge.yaml", minimal(issuer={"keys_dir": str(tmp_path / "keys")},
                                                       mapping={"rules": rules},  # no rules: a warning
                                                       metrics={"bearer_token_file": "metrics_token"}))
    result = run_check(cfg)
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok\n"
    assert result.stderr == ""  # https everywhere, /metrics protected: no warnings


def test_check_config_prints_warnings_but_passes(tmp_path: Path) -> None:
    generate_key(tmp_path / "keys", "RS256")
    generate_cache_key(tmp_path / "keys")
    cfg = write_yaml(
        tmp_path / "bridge.yaml",
        minimal(
            issuer={"keys_dir": "keys"}, insecure_dev_login=True, connectors=[connector(), DEV_CONNECTOR]
        ),
    )
    result = run_check(cfg)
    assert result.exit_code == 0 and result.stdout == "ok\n"
    assert "warning: insecure_dev_login is on" in result.stderr


def test_check_config_refuses_world_readable_key(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "keys", "RS256")
    os.chmod(key.path, 0o644)
    cfg = write_yaml(tmp_path / "bridge.yaml", minimal(issuer={"keys_dir": str(tmp_path / "keys")}))
    result = run_check(cfg)
    assert result.exit_code == 1
    assert f"issuer.keys_dir: {key.path}: private key is readable by others (mode 644)" in result.stderr


def test_check_config_lists_missing_cache_and_saml_keys(tmp_path: Path) -> None:
    generate_key(tmp_path / "keys", "RS256")
    cfg = write_yaml(tmp_path / "bridge.yaml", minimal(issuer={"keys_dir": "keys"}, aws={"default_path": "saml"}))
    result = run_check(cfg)
    assert result.exit_code == 1
    assert "no credential cache key" in result.stderr and "has no SAML key" in result.stderr


def test_check_config_without_keys(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "bridge.yaml", minimal(issuer={"keys_dir": "keys"}))
    result = run_check(cfg)
    assert result.exit_code == 1
    assert "key directory does not exist" in result.stderr


# --------------------------------------------------------------------------- the shipped demo config


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("DEMO_"):
            monkeypatch.delenv(name)
    keys = tmp_path / "demo-keys"
    generate_key(keys, "RS256")
    generate_saml_key(keys, bits=2048)
    generate_cache_key(keys)
    monkeypatch.setenv("DEMO_KEYS_DIR", str(keys))
    return keys


def test_demo_config_validates(demo_env: Path, demo_config: Path) -> None:
    s = load_settings(demo_config)
    assert s.keys_dir == demo_env
    ring, problems = load_keyring(s.keys_dir)
    assert ring is not None and problems == []
    assert s.base_url == "http://127.0.0.1:8000"
    assert [c.id for c in s.enabled_connectors] == ["demo", "dev"]  # ${DEMO_OIDC_ENABLED:-true} is a bool
    assert [r.name for r in s.mapping.rules] == ["admins", "readonly", "platform-deployers", "group-convention",
                                                 "developers-through-the-hub", "audit-vendor", "admin-on-request",
                                                 "no-contractors"]
    vendor = s.mapping.compiled.catalog.by_id["999988887777"].roles["VendorAudit"]
    assert vendor.chain.external_id == "demo-only-not-secret"  # ${DEMO_VENDOR_EXTERNAL_ID:-…}
    assert s.mapping.legacy_rules == []
    assert any("insecure_dev_login" in w for w in s.warnings())


def test_demo_config_passes_check_config(demo_env: Path, demo_config: Path) -> None:
    result = run_check(demo_config)
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok\n"


def test_unknown_connector_type_fails_with_the_registry_types() -> None:
    with pytest.raises(ConfigError) as e:
        settings_from_dict(minimal(connectors=[{"id": "x", "type": "ldap"}]))
    assert e.value.problems == [
        "connectors[0]: Input tag 'ldap' found using 'type' does not match any of the expected tags: "
        "'oidc', 'saml', 'dev', 'workload', 'github'"
    ]


def test_connector_registry_matches_the_settings_union() -> None:
    from typing import get_args

    from bridge.upstream.registry import CONNECTOR_SETTINGS, CONNECTOR_TYPES, AnyConnectorSettings

    assert list(get_args(AnyConnectorSettings)) == list(CONNECTOR_SETTINGS.values())
    for type_, cls in CONNECTOR_SETTINGS.items():
        assert get_args(cls.model_fields["type"].annotation) == (type_,)
        assert cls.__module__ == f"bridge.upstream.{type_}_settings"  # beside its connector
    assert CONNECTOR_TYPES == ("oidc", "saml", "dev", "workload", "github")


def test_semantic_problems_come_connectors_first_then_sections(tmp_path: Path) -> None:
    saml = {"id": "sso", "type": "saml", "metadata_file": "md.xml", "max_session": 99999}
    oidc = {**MINIMAL["connectors"][0], "client_secret": None, "allowed_algs": ["HS256", "RS256"]}
    with pytest.raises(ConfigError) as e:
        settings_from_dict(minimal(connectors=[saml, oidc, DEV_CONNECTOR, DEV_CONNECTOR],
                                   issuer={"key_alg": "ES256"},
                                   redis={"url": "rediss://r:6379/0", "ssl_ca_file": "ca.pem"},
                                   audit={"sink": "file", "path": "nowhere/audit.log"},
                                   listen="0.0.0.0:8000", metrics={"listen": "127.0.0.1:8000"},
                                   session={"idle_timeout": 7200, "absolute_timeout": 3600}),
                           source_dir=tmp_path)
    assert e.value.problems == [
        "connectors: id 'dev' is used more than once",
        "connectors[1].client_secret: required for client_secret_basic (or set client_secret_file)",
        "connectors[1].allowed_algs: ['HS256'] are not allowed for ID tokens",
        "connectors[2]: the dev connector 'dev' needs insecure_dev_login: true (it signs anyone in as any user)",
        "connectors[3]: the dev connector 'dev' needs insecure_dev_login: true (it signs anyone in as any user)",
        "connectors[0].max_session: longer than session.absolute_timeout (it can only shorten sessions)",
        f"connectors[0].metadata_file: {tmp_path / 'md.xml'} does not exist",
        f"redis.ssl_ca_file: {tmp_path / 'ca.pem'} does not exist",
        f"audit.path: folder {tmp_path / 'nowhere'} does not exist",
        "metrics.listen: must be another port than listen",
        "session.idle_timeout: longer than session.absolute_timeout",
    ]


def test_warnings_keep_their_order() -> None:
    saml = {"id": "sso", "type": "saml", "metadata_url": "https://idp/md", "insecure_allow_idp_initiated": True,
            "insecure_allow_response_only_signing": True}
    oidc = {**MINIMAL["connectors"][0], "issuer": "http://idp", "insecure_accept_unverified_email": True}
    s = settings_from_dict(minimal(base_url="http://bridge", insecure_dev_login=True, connectors=[saml, oidc],
                                   redis={"url": "redis://redis.internal:6379/0"}, audit={"sink": "none"}))
    assert [w.split(":")[0] for w in s.warnings()] == [
        "insecure_dev_login is on",
        "base_url http",
        "redis redis.internal is reached without TLS",
        "audit.sink is none",
        "issuer http",
        "connector sso", "connector sso",
        "connector corp", "connector corp",
        "/metrics is open to anyone who reaches the bridge",
    ]


def test_check_config_refuses_passthrough_rules_for_connectors_without_passthrough() -> None:
    """`path: passthrough` redeems an OIDC connector's own ID token: a rule naming a connector without
    aws_passthrough (or, unscoped, with no such connector at all) is refused at load."""
    from bridge.config import settings_from_dict
    from bridge.domain.errors import ConfigError

    dev = {"id": "dev", "type": "dev", "users": [{"subject": "alice"}]}
    oidc = {"id": "corp", "type": "oidc", "issuer": "https://idp.example.com", "client_id": "b", "client_secret": "s",
            "aws_passthrough": True}

    def rules(connectors: list[str] | None) -> dict[str, object]:
        rule = {"name": "direct", "match": {"group": "g"}, "grants": [
            {"role_arn": "arn:aws:iam::123456789012:role/Direct", "path": "passthrough"}]}
        return {"rules": [{**rule, **({"connectors": connectors} if connectors else {})}]}

    base = {"base_url": "http://127.0.0.1:1", "insecure_dev_login": True}
    with pytest.raises(ConfigError) as e:
        settings_from_dict({**base, "connectors": [dev, oidc], "mapping": rules(["dev"])})
    assert "path: passthrough needs an OIDC connector with aws_passthrough" in str(e.value.problems)
    with pytest.raises(ConfigError):
        settings_from_dict({**base, "connectors": [dev], "mapping": rules(None)})
    settings_from_dict({**base, "connectors": [dev, oidc], "mapping": rules(["corp"])})  # fine
    s = settings_from_dict({**base, "connectors": [dev, oidc], "mapping": rules(None)})  # fine: dev users never get it
    assert not any("aws_passthrough" in w for w in s.warnings())  # https issuer, no port


def test_sso_client_limits_have_defaults_and_are_checked() -> None:
    cli = settings_from_dict(minimal()).cli
    assert (cli.sso_client_unused_lifetime, cli.sso_clients_per_address, cli.sso_clients_max) == (3600, 500, 50_000)
    assert settings_from_dict(minimal()).rate_limits.sso_register_per_minute == 10
    problems = problems_of(minimal(cli={"sso_client_lifetime": 3600, "sso_client_unused_lifetime": 7200,
                                        "sso_clients_per_address": 0},
                                   rate_limits={"sso_register_per_minute": -1}))
    text = "\n".join(problems)
    assert "sso_clients_per_address" in text and "sso_register_per_minute" in text
    problems = problems_of(minimal(cli={"sso_client_lifetime": 3600, "sso_client_unused_lifetime": 7200}))
    assert any("sso_client_unused_lifetime must not be longer than sso_client_lifetime" in p for p in problems)


@pytest.mark.parametrize(("endpoint", "named"), [
    (None, False), ("https://sts.amazonaws.com", False), ("https://sts.eu-west-1.amazonaws.com", False),
    ("https://vpce-0a1b-c2d3.sts.eu-west-1.vpce.amazonaws.com", False),
    ("https://sts.cn-north-1.amazonaws.com.cn", False),
    ("https://sts.eu-west-1.api.aws", False), ("https://STS.US-EAST-1.AMAZONAWS.COM", False),
    ("http://127.0.0.1:5055", True), ("https://sts.amazonaws.com.evil.example", True),
    ("https://notamazonaws.com", True)])
def test_local_sts_endpoint_is_named_only_when_it_is_not_aws(endpoint: str | None, named: bool) -> None:
    """The CLI's hints and `bridge exec` name the STS endpoint only for a stand-in (the demo's moto)."""
    aws = {"sts_endpoint_url": endpoint} if endpoint else {}
    settings = settings_from_dict(minimal(aws=aws))
    assert settings.aws.local_sts_endpoint == (endpoint if named else None)
