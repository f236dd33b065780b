"""Admin CLI: keys generate, explain, preview (jwt), verify."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.commands.cli import main
from bridge.keys.signing import generate_cache_key, generate_saml_key

IDENTITY = {"connector": "dev", "subject": "alice", "email": "alice@example.com", "name": "Alice",
            "groups": ["aws-admins", "aws-readonly"], "claims": {"department": "Platform"}}
ADMIN = "arn:aws:iam::123456789012:role/Admin"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    r = CliRunner().invoke(main, ["keys", "generate", "--dir", str(tmp_path / "keys"), "--alg", "ES256", "--kind",
                                  "jwt"])
    assert r.exit_code == 0 and "kid" in r.output
    (key,) = (tmp_path / "keys").glob("jwt-*-ES256.pem")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # The SAML key at the smallest size the bridge accepts: these tests are not about key size, and a
    # 3072-bit key (the CLI's default, generated once in test_keys_generate_kinds) costs ~0.4 s each.
    generate_saml_key(tmp_path / "keys", bits=2048)
    generate_cache_key(tmp_path / "keys")
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(f"""
base_url: https://bridge.example.com
issuer: {{keys_dir: keys}}
connectors: [{{id: corp, type: oidc, issuer: "https://idp.example.com", client_id: c, client_secret: s}}]
mapping:
  rules:
    - name: admins
      match: {{group: aws-admins}}
      grants: [{{role_arn: "{ADMIN}", tags: {{Dept: "{{claims.department}}"}}, transitive_tags: [Dept],
                source_identity: "{{email}}"}}]
    - name: finance
      match: {{claim: claims.department, equals: Finance}}
      grants: [{{role_arn: "arn:aws:iam::123456789012:role/Fin"}}]
""")
    ident = tmp_path / "id.json"
    ident.write_text(json.dumps(IDENTITY))
    return cfg, ident


def test_explain_text_and_json(setup: tuple[Path, Path]) -> None:
    cfg, ident = setup
    r = CliRunner().invoke(main, ["explain", "--config", str(cfg), "--identity", str(ident)])
    assert r.exit_code == 0, r.output
    assert "MATCH admins: member of group 'aws-admins'" in r.output
    assert "no    finance: claims.department is 'Platform', not 'Finance'" in r.output
    assert "1 grant(s)" in r.output and ADMIN in r.output
    r = CliRunner().invoke(main, ["explain", "--config", str(cfg), "--identity", str(ident), "--json"])
    doc = json.loads(r.output)
    assert [g["role_arn"] for g in doc["grants"]] == [ADMIN]
    assert doc["rules"][1] == {"rule": "finance", "matched": False, "outcome": "no match", "grants": [],
                               "withheld": [], "notes": [],
                               "reason": "claims.department is 'Platform', not 'Finance'"}


def test_preview_prints_a_valid_token_and_decodes(setup: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, ident = setup
    r = CliRunner().invoke(main, ["preview", "--config", str(cfg), "--identity", str(ident), "--role", ADMIN])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert token.count(".") == 2 and "AWS rules: ok" in r.stderr
    # verify accepts what preview printed
    (tmp_path / "t.jwt").write_text(token)
    r = CliRunner().invoke(main, ["verify", "--config", str(cfg), "--jwt", str(tmp_path / "t.jwt")])
    assert r.exit_code == 0 and r.output.startswith("ok")
    r = CliRunner().invoke(main, ["preview", "--config", str(cfg), "--identity", str(ident), "--role", ADMIN,
                                  "--decode"])
    doc = json.loads(r.stdout)
    assert doc["header"]["alg"] == "ES256" and doc["header"]["kid"]
    assert doc["claims"]["iss"] == "https://bridge.example.com" and doc["claims"]["aud"] == "sts.amazonaws.com"
    assert doc["claims"]["https://aws.amazon.com/tags"] == {  # + the bridge's own, transitive (docs/step-up-mfa.md)
        "principal_tags": {"Dept": ["Platform"], "bridge:mfa": ["false"]},
        "transitive_tag_keys": ["Dept", "bridge:mfa"]}
    assert doc["RoleSessionName"] == "alice@example.com"


def test_preview_role_not_granted(setup: tuple[Path, Path]) -> None:
    cfg, ident = setup
    r = CliRunner().invoke(main, ["preview", "--config", str(cfg), "--identity", str(ident), "--role",
                                  "arn:aws:iam::123456789012:role/Fin"])
    assert r.exit_code == 1 and "is not granted" in r.stderr and ADMIN in r.stderr


def test_verify_lists_every_broken_rule(setup: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = setup
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    bad = jwt.encode({"alg": "RS256", "kid": "other"}, {"iss": "http://x:8080", "aud": ["a", "b"], "iat": 1.5},
                     RSAKey.generate_key(2048))
    (tmp_path / "bad.jwt").write_text(bad)
    r = CliRunner().invoke(main, ["verify", "--config", str(cfg), "--jwt", str(tmp_path / "bad.jwt")])
    assert r.exit_code == 1
    for fragment in ("kid 'other' is not in the published JWKS", "iss 'http://x:8080' is not the configured issuer",
                     "aud must be a single string", "sub must be a string", "iat must be a JSON integer",
                     "exp must be a JSON integer"):
        assert fragment in r.stderr, fragment


def test_bad_identity_file(setup: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = setup
    (tmp_path / "bad.json").write_text("[1, 2]")
    r = CliRunner().invoke(main, ["explain", "--config", str(cfg), "--identity", str(tmp_path / "bad.json")])
    assert r.exit_code == 1 and "not an identity document" in r.stderr


def test_keys_generate_kinds(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["keys", "generate", "--dir", str(tmp_path / "all"), "--alg", "ES256"])
    assert r.exit_code == 0, r.output  # --kind all: one of each
    kinds = ("jwt-*-ES256.pem", "saml-*.pem", "cache-*.key")
    assert [len(list((tmp_path / "all").glob(g))) for g in kinds] == [1, 1, 1]
    r = CliRunner().invoke(main, ["keys", "generate", "--dir", str(tmp_path), "--kind", "saml"])
    assert r.exit_code == 0 and "SAML signing" in r.output
    assert len(list(tmp_path.glob("saml-*.pem"))) == 1 and len(list(tmp_path.glob("saml-*.crt"))) == 1
    assert not list(tmp_path.glob("jwt-*"))
    key = next(tmp_path.glob("saml-*.pem"))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_metadata_and_saml_preview_and_verify(setup: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, ident = setup
    r = CliRunner().invoke(main, ["metadata", "--config", str(cfg)])
    assert r.exit_code == 0 and r.stdout_bytes.startswith(b"<?xml") and b"entityID" in r.stdout_bytes
    (tmp_path / "md.xml").write_bytes(r.stdout_bytes)
    r = CliRunner().invoke(main, ["preview", "--config", str(cfg), "--identity", str(ident), "--role", ADMIN,
                                  "--as", "saml", "--duration", "7200"])
    assert r.exit_code == 0 and "AWS rules: ok" in r.stderr
    b64 = r.stdout.strip()
    (tmp_path / "resp.b64").write_text(b64)
    r = CliRunner().invoke(main, ["verify", "--saml", str(tmp_path / "resp.b64"), "--metadata",
                                  str(tmp_path / "md.xml"), "--role", ADMIN, "--principal",
                                  "arn:aws:iam::123456789012:saml-provider/FederationBridge"])
    assert r.exit_code == 0 and r.output.startswith("ok"), r.output
    r = CliRunner().invoke(main, ["preview", "--config", str(cfg), "--identity", str(ident), "--role", ADMIN,
                                  "--as", "saml", "--decode"])
    assert "<saml:Attribute Name=\"https://aws.amazon.com/SAML/Attributes/Role\"" in r.stdout
    assert "PrincipalTag:Dept" in r.stdout and "\n  " in r.stdout  # pretty-printed
    # Raw XML works too, and a tampered copy lists what broke.
    import base64

    xml = base64.b64decode(b64).replace(b"alice@example.com", b"mallory@example.com")
    (tmp_path / "bad.xml").write_bytes(xml)
    r = CliRunner().invoke(main, ["verify", "--saml", str(tmp_path / "bad.xml"), "--config", str(cfg)])
    assert r.exit_code == 1 and "3: the Assertion signature does not verify" in r.stderr


def test_verify_needs_exactly_one_artifact(setup: tuple[Path, Path]) -> None:
    cfg, _ = setup
    r = CliRunner().invoke(main, ["verify", "--config", str(cfg)])
    assert r.exit_code == 1 and "exactly one of --jwt" in r.stderr


def test_explain_shows_deny_withheld_and_merges(tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text("""
base_url: https://bridge.example.com
connectors: [{id: corp, type: oidc, issuer: "https://idp.example.com", client_id: c, client_secret: s}]
mapping:
  accounts: {"123456789012": {alias: sandbox, label: Sandbox, roles: {Admin: {max_session_duration: 43200}}}}
  rules:
    - {name: admins, match: {group: aws-admins}, grants: [{account: sandbox, role: Admin,
       duration: {max: 43200}, tags: {Team: "{claims.team|default(core)}"}}]}
    - {name: teams, match: {claim: groups, regex: "team-(?P<t>.+)"}, grants: [{account: sandbox, role: Admin,
       tags: {Squad: "{match.t}"}}]}
    - {name: mfa, match: {group: aws-admins}, grants: [{role_arn: "arn:aws:iam::123456789012:role/Break",
       mfa_required: true}]}
    - {name: no-billing, match: {group: aws-admins}, deny: {roles: ["Billing"]}}
    - {name: billing, match: {group: aws-admins}, grants: [{role_arn: "arn:aws:iam::123456789012:role/Billing"}]}
    - {name: unrelated, match: {group: nobody}, grants: [{role_arn: "arn:aws:iam::123456789012:role/X"}]}
""")
    ident = tmp_path / "id.json"
    ident.write_text(json.dumps({**IDENTITY, "groups": ["aws-admins", "team-red"], "mfa": False}))
    r = CliRunner().invoke(main, ["explain", "--config", str(cfg), "--identity", str(ident)])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "  MATCH teams: groups 'team-red' matches regex 'team-(?P<t>.+)'" in out
    assert "note: Admin: merged into the grant from rule 'admins'" in out
    assert "  DENY  no-billing: member of group 'aws-admins'" in out
    assert "withheld arn:aws:iam::123456789012:role/Billing: denied by rule 'no-billing'" in out
    assert "withheld arn:aws:iam::123456789012:role/Break: this role needs a sign-in with MFA" in out
    assert "1 grant(s):" in out and "account 123456789012 (Sandbox)" in out
    assert "tags Team='core', Squad='red'" in out and "duration 3600s (max 43200s)" in out
    assert "2 withheld:" in out and "no    unrelated" in out
    r = CliRunner().invoke(main, ["explain", "--config", str(cfg), "--identity", str(ident), "--matched-only"])
    assert "unrelated" not in r.output and "rules (5 of 6 shown):" in r.output
    doc = json.loads(CliRunner().invoke(main, ["explain", "--config", str(cfg), "--identity", str(ident), "--json",
                                              "--matched-only"]).output)
    assert [x["rule"] for x in doc["rules"]] == ["admins", "teams", "mfa", "no-billing", "billing"]
    assert [x["outcome"] for x in doc["rules"]] == ["granted", "merged", "withheld", "deny", "withheld"]
    assert {(w["rule"], w["code"]) for w in doc["withheld"]} == {("mfa", "mfa"), ("billing", "denied")}
    assert doc["grants"][0]["tags"] == {"Team": "core", "Squad": "red"}


def test_explain_the_demo_config_as_the_readme_shows(monkeypatch: pytest.MonkeyPatch, demo_config: Path) -> None:
    for name in [n for n in os.environ if n.startswith("DEMO_")]:
        monkeypatch.delenv(name)
    root = Path(__file__).resolve().parents[2]
    r = CliRunner().invoke(main, ["explain", "--config", str(demo_config), "--identity",
                                  str(root / "config" / "demo-identity.json")])
    assert r.exit_code == 0, r.output
    assert "6 grant(s):" in r.output and "group-convention" in r.output
    assert "arn:aws:iam::123456789012:role/Billing" in r.output
    assert "reached through hub/BridgeHub (role chaining" in r.output  # the workloads and vendor accounts
    assert "ExternalId set for audit-vendor/VendorAudit (its value is never shown)" in r.output
    assert "demo-only-not-secret" not in r.output


def test_rules_schema_describes_the_rules() -> None:
    r = CliRunner().invoke(main, ["rules-schema"])
    assert r.exit_code == 0
    schema = json.loads(r.output)
    assert {"Rule", "GrantSpec", "Condition", "ClaimCond", "AccountEntry"} <= set(schema["$defs"])
    assert schema["$defs"]["Rule"]["additionalProperties"] is False
    assert set(schema["$defs"]["ClaimCond"]["properties"]) == {"claim", "equals", "in", "contains", "starts_with",
                                                               "ends_with", "regex", "glob", "exists", "ignore_case"}


def test_grants_from_newer_sessions_load() -> None:
    from bridge.domain.identity import Grant

    g = Grant(role_arn=ADMIN, account_id="123456789012", label="A", session_name="s1", via="r", account_alias="x")
    assert Grant.from_json({**g.to_json(), "added_later": 1}) == g
    old = {k: v for k, v in g.to_json().items() if k not in ("account_alias", "account_label")}
    assert Grant.from_json(old).account_alias == ""
