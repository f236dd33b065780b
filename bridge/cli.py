"""The ``bridge`` command: serve, demo, check-config, explain, preview, verify, keys, rules-schema."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from bridge import mapping
from bridge.aws.assertion import mint_saml_response
from bridge.aws.keys import SUPPORTED_ALGS, generate_cache_key, generate_key, generate_saml_key, load_keyring
from bridge.aws.metadata import idp_metadata
from bridge.aws.token import mint_token
from bridge.aws.validate import validate_assume_params, validate_jwt
from bridge.aws.validate_saml import IdpMetadata, validate_saml_response
from bridge.config import Settings, listen_port, load_settings
from bridge.errors import ConfigError
from bridge.identity import Identity, identity_from_sample


def _fail(lines: list[str], header: str) -> NoReturn:
    click.echo(header, err=True)
    for line in lines:
        click.echo(f"  - {line}", err=True)
    sys.exit(1)


def _settings(path: str) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as e:
        _fail(e.problems, f"{path}: {len(e.problems)} problem(s):")


def _identity(path: str) -> Identity:
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        _fail([str(e)], f"{path}: cannot read identity JSON")
    try:
        return identity_from_sample(d)
    except ValueError as e:
        _fail([str(e)], f"{path}: not an identity document")


@click.group()
@click.version_option(package_name="federation-bridge")
def main() -> None:
    """Federation Bridge: sign in with your IdP, get AWS access decided by rules."""


@main.command("check-config")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--previous", "previous_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="the config in force: fail if a running bridge would refuse to reload to these rules "
                   "(too few rules; mapping.max_shrink)")
def check_config(config_path: str, previous_path: str | None) -> None:
    """Validate a config file (and its keys); print every problem, or "ok"."""
    from bridge.rulebook import refusal
    from bridge.services import load_keys

    settings = _settings(config_path)
    _, problems = load_keys(settings)
    if problems:
        _fail(problems, f"{config_path}: {len(problems)} problem(s):")
    for w in settings.warnings():
        click.echo(f"warning: {w}", err=True)
    kept = len(_settings(previous_path).mapping.rules) if previous_path else None
    if (refused := refusal(kept, settings.mapping)) is not None:
        if previous_path:
            _fail([refused[1]], f"{config_path}: a running bridge would refuse to reload to these rules:")
        # Starting with no rules is allowed (a fresh install); a running bridge refuses to reload to it.
        click.echo(f"warning: {refused[1]}; a running bridge refuses to reload to this", err=True)
    click.echo("ok")


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--bind", default=None, help="host:port (default: the config's listen)")
@click.option("--workers", default=None, type=int, help="gunicorn worker processes")
def serve(config_path: str, bind: str | None, workers: int | None) -> None:
    """Run the bridge under gunicorn (deploy/gunicorn.conf.py, gthread workers)."""
    settings = _settings(config_path)
    from bridge.app import asset_dir

    conf = asset_dir("deploy") / "gunicorn.conf.py"
    env = {**os.environ, "BRIDGE_CONFIG": str(Path(config_path).resolve()),
           "BRIDGE_BIND": bind or settings.listen}
    if settings.metrics.listen:
        # A second gunicorn listener; the app answers only /metrics there (bridge/app.py).
        if listen_port(settings.metrics.listen) == listen_port(env["BRIDGE_BIND"]):
            _fail([f"metrics.listen {settings.metrics.listen} and --bind {env['BRIDGE_BIND']} share a port"],
                  "cannot serve:")
        env["BRIDGE_METRICS_BIND"] = settings.metrics.listen
    else:
        env.pop("BRIDGE_METRICS_BIND", None)
    if workers:
        env["BRIDGE_WORKERS"] = str(workers)
    args = [sys.executable, "-m", "gunicorn", "-c", str(conf), "bridge.wsgi:app"]
    os.execvpe(args[0], args, env)  # noqa: S606 - replaces this process with gunicorn


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--config", "config_path", default="config/demo.yaml", show_default=True)
@click.option("--smoke", is_flag=True, help="sign in once, fetch credentials, call STS, then stop")
def demo(port: int, config_path: str, smoke: bool) -> None:
    """Run the demo: Redis, local STS (moto), the demo IdP and the bridge. Ctrl-C stops all."""
    from bridge.demo import run_demo

    sys.exit(run_demo(Path(config_path), port, smoke=smoke))


@main.group()
def keys() -> None:
    """Signing keys for the tokens the bridge mints."""


@keys.command("generate")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(["all", "jwt", "saml", "cache"]), default="all", show_default=True,
              help="jwt: token signing key; saml: SAML signing key + certificate; cache: credential cache key")
@click.option("--alg", type=click.Choice(SUPPORTED_ALGS), default="RS256", show_default=True)
def keys_generate(directory: str, kind: str, alg: str) -> None:
    """Create new signing keys (mode 0600). The newest of each kind signs; all are published."""
    if kind in ("all", "jwt"):
        key = generate_key(Path(directory), alg)
        click.echo(f"created {key.path} (alg {alg}, kid {key.kid})")
    if kind in ("all", "saml"):
        skey = generate_saml_key(Path(directory))
        click.echo(f"created {skey.path} and {skey.path.with_suffix('.crt').name} (RSA "
                   f"{skey.cert.public_key().key_size}, SAML signing; valid until "  # type: ignore[union-attr]
                   f"{skey.cert.not_valid_after_utc:%Y-%m-%d})")
    if kind in ("all", "cache"):
        click.echo(f"created {generate_cache_key(Path(directory))} (AES-256-GCM credential cache key)")


@keys.command("rotate")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--kind", type=click.Choice(["all", "jwt", "saml"]), default="jwt", show_default=True)
@click.option("--alg", type=click.Choice(SUPPORTED_ALGS), default="RS256", show_default=True)
@click.option("--publish-for", "publish_for", type=click.IntRange(0), default=3600, show_default=True,
              help="seconds the next key is published before it signs (AWS caches JWKS; SAML: time "
                   "to upload the new IdP metadata to IAM)")
@click.option("--overlap", type=click.IntRange(0), default=3600, show_default=True,
              help="seconds the old key stays published after the next one starts signing")
def keys_rotate(directory: str, kind: str, alg: str, publish_for: int, overlap: int) -> None:
    """Add the next signing key: published now, signing after --publish-for; the old key retires
    --overlap seconds later. Running bridges pick it up (issuer.keys_reload_interval)."""
    from bridge.aws.keys import prune, rotate

    now = int(time.time())
    for path in prune(Path(directory), now=now):
        click.echo(f"removed retired key {path.name}")
    if overlap < 300:
        click.echo(f"warning: --overlap {overlap} is shorter than a token's lifetime (up to 300 s): tokens "
                   "signed by the old key just before the switch may fail at AWS", err=True)
    for k in (["jwt", "saml"] if kind == "all" else [kind]):
        try:
            new, scheduled = rotate(Path(directory), k, now=now, publish_for=publish_for, overlap=overlap, alg=alg)
        except ValueError as e:
            _fail([str(e)], "cannot rotate:")
        starts = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now + publish_for))
        click.echo(f"created {new.path.name} ({k}, kid {new.kid}): published now, signs from {starts}")
        for old in scheduled:
            click.echo(f"  {old.name} retires at "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now + publish_for + overlap))}")
        if k == "saml":
            click.echo("  next: `bridge metadata --config …` and `aws iam update-saml-provider` with it before "
                       "the new key signs", err=True)


@keys.command("list")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True))
def keys_list(directory: str) -> None:
    """Every key with its state: signing, next (published, not signing yet), retiring, retired."""
    ring, problems = load_keyring(Path(directory))
    for p in problems:
        click.echo(f"problem: {p}", err=True)
    if ring is None:
        sys.exit(1)
    now = time.time()
    view = ring.view(now)

    def when(t: int | None) -> str:
        return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

    for kind, all_keys, published in (("jwt", ring.keys, view.keys), ("saml", ring.saml, view.saml)):
        for k in all_keys:
            if not k.schedule.published(now):
                state = "retired"
            elif published and k is published[-1]:
                state = "signing"
            elif k.schedule.sign_from is not None and k.schedule.sign_from > now:
                state = "next"
            elif k.schedule.retire_at is not None:
                state = "retiring"
            else:
                state = "published"
            click.echo(f"{kind:4s} {state:9s} {k.kid:44s} signs from {when(k.schedule.sign_from):23s} "
                       f"retires {when(k.schedule.retire_at):23s} {k.path.name}")


@keys.command("prune")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True))
def keys_prune(directory: str) -> None:
    """Delete keys whose retirement time has passed."""
    from bridge.aws.keys import prune

    for path in prune(Path(directory), now=time.time()):
        click.echo(f"removed {path.name}")


@main.group("sessions")
def sessions_group() -> None:
    """Users' sign-ins: list them, or revoke everything of a user at once (offboarding)."""


def _services(config_path: str) -> Any:
    from bridge.services import build_services

    settings = _settings(config_path)
    try:
        return build_services(settings)
    except ConfigError as e:
        _fail(e.problems, f"{config_path}: {len(e.problems)} problem(s):")


@sessions_group.command("list")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--user", required=True, help="e-mail address or subject")
@click.option("--json", "as_json", is_flag=True)
def sessions_list(config_path: str, user: str, as_json: bool) -> None:
    """The live browser sessions of a user and the CLI logins each approved."""
    from bridge.errors import StoreUnavailable

    svc = _services(config_path)
    try:
        rows = []
        for shash, rec in svc.sessions.of_user(user):
            ident = rec.identity
            tokens = svc.device.tokens_of(shash) if svc.device is not None else []
            rows.append({"session": shash[:16], "connector": ident.connector_id, "subject": ident.subject,
                         "email": ident.email, "created_at": rec.created_at, "expires_at": rec.expires_at,
                         "cli_tokens": [{"client_id": t.client_id, "created_at": t.created_at,
                                         "expires_at": t.expires_at, "client_ip": t.client_ip}
                                        for _, t in tokens]})
    except StoreUnavailable as e:
        _fail([e.detail], "cannot read sessions:")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no live session for {user}")
    for r in rows:
        click.echo(f"{r['session']}  {r['connector']}  {r['email'] or r['subject']}  signed in "
                   f"{_when(r['created_at'])}, ends {_when(r['expires_at'])}, {len(r['cli_tokens'])} CLI login(s)")


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(t))) if isinstance(t, int) else "?"


@sessions_group.command("revoke")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--user", required=True, help="e-mail address or subject")
def sessions_revoke(config_path: str, user: str) -> None:
    """End every session of a user, every CLI login they approved, and their cached credentials."""
    from bridge.audit import Context
    from bridge.errors import StoreUnavailable

    svc = _services(config_path)
    try:
        done = svc.sessions.revoke_user(user)
    except StoreUnavailable as e:
        _fail([e.detail], "cannot revoke sessions:")
    svc.auditor.record("revocation", Context(), outcome="success", user=user, sessions=done.sessions,
                       cli_tokens=done.tokens, by="bridge sessions revoke")
    click.echo(f"revoked {done.sessions} session(s) and {done.tokens} CLI login(s) of {user}")


@main.group("audit")
def audit_group() -> None:
    """The audit trail (audit.sink: file or redis)."""


@audit_group.command("tail")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "--lines", default=20, show_default=True, type=click.IntRange(1, 100000))
@click.option("-f", "--follow", is_flag=True, help="keep printing new records")
@click.option("--correlation-id", "correlation", default=None, help="only records of this sign-in")
@click.option("--type", "type_", default=None,
              type=click.Choice(["sign_in", "grant_decision", "credentials", "console"]))
@click.option("--max-seconds", type=float, default=None, hidden=True, help="stop following after this long")
def audit_tail(config_path: str, lines: int, follow: bool, correlation: str | None, type_: str | None,
               max_seconds: float | None) -> None:
    """Print the last audit records (JSON lines), optionally following and filtering."""
    from bridge import audit

    settings = _settings(config_path)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def stop() -> bool:
        return deadline is not None and time.monotonic() > deadline

    def show(line: str) -> None:
        if correlation or type_:
            try:
                doc = json.loads(line)
            except ValueError:
                return
            if (correlation and doc.get("correlation_id") != correlation) or (type_ and doc.get("type") != type_):
                return
        click.echo(line)

    a = settings.audit
    if a.sink == "file":
        assert a.path is not None
        path = settings.resolve(a.path)
        for line in audit.read_file(path, lines=lines):
            show(line)
        if follow:
            for line in audit.follow_file(path, stop=stop):
                show(line)
    elif a.sink == "redis":
        from bridge.errors import StoreUnavailable
        from bridge.store import Store, redis_client

        store = Store(redis_client(settings.redis, settings.resolve), settings.redis.key_prefix)
        try:
            rows = store.audit_read(a.stream, count=lines)
            for _, line in rows:
                show(line)
            last = rows[-1][0] if rows else "$"
            while follow and not stop():
                for rid, line in store.audit_read(a.stream, count=100, after=last, block_ms=1000):
                    last = rid
                    show(line)
        except StoreUnavailable as e:
            _fail([e.detail], f"cannot read the audit stream {settings.redis.key_prefix}{a.stream}:")
    else:
        _fail([f"audit.sink is {a.sink}: records go to the bridge's standard output (your log collector); "
               "`audit tail` reads the file and redis sinks"], "nothing to tail:")


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
def metadata(config_path: str) -> None:
    """Print the bridge's SAML IdP metadata (for `aws iam create-saml-provider`)."""
    settings = _settings(config_path)
    ring, problems = load_keyring(settings.keys_dir)
    ring = ring.view(time.time()) if ring is not None else None
    if ring is None or not ring.saml:
        _fail(problems or ["no SAML signing key: run `bridge keys generate --kind saml`"], "cannot build metadata:")
    sys.stdout.buffer.write(idp_metadata(settings.saml_entity_id, ring.saml, f"{settings.base_url}/idp/sso"))


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--identity", "identity_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--matched-only", is_flag=True, help="list only the rules that matched (large rule sets)")
def explain(config_path: str, identity_path: str, as_json: bool, matched_only: bool) -> None:
    """Show, rule by rule, what an identity matches and why, then the grants it gets."""
    settings = _settings(config_path)
    ident = _identity(identity_path)
    results = mapping.explain(settings.mapping, ident, **settings.grant_defaults())
    if as_json:
        shown = [r for r in results if r.matched] if matched_only else results
        doc = mapping.report(results, ident)
        doc["rules"] = [r.to_json() for r in shown]
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    click.echo(mapping.report_text(results, ident, only_matched=matched_only))


@main.command("rules-schema")
def rules_schema() -> None:
    """Print the JSON Schema of the mapping section and of rules files (for editors' YAML validation)."""
    schema = mapping.MappingSettings.model_json_schema()
    schema["title"] = "Federation Bridge rules (mapping: section, or a rules file)"
    click.echo(json.dumps(schema, indent=2))


def _decode_part(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--identity", "identity_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--role", "role_arn", required=True, help="role ARN the identity is granted")
@click.option("--as", "kind", type=click.Choice(["jwt", "saml"]), default="jwt", show_default=True)
@click.option("--duration", type=int, default=None, help="DurationSeconds (default: the grant's)")
@click.option("--decode", is_flag=True, help="print the decoded token / pretty SAML XML instead")
def preview(config_path: str, identity_path: str, role_arn: str, kind: str, duration: int | None,
            decode: bool) -> None:
    """Print the token or SAMLResponse that would be sent to AWS for this identity and role."""
    from bridge.services import saml_issuer_for

    settings = _settings(config_path)
    ident = _identity(identity_path)
    grants = mapping.evaluate(settings.mapping, ident, **settings.grant_defaults())
    grant = next((g for g in grants if g.role_arn == role_arn), None)
    if grant is None:
        _fail([g.role_arn for g in grants] or ["(none)"], f"{role_arn} is not granted to this identity; granted:")
    ring, problems = load_keyring(settings.keys_dir)
    if ring is None:
        _fail(problems, "no usable signing key:")
    now = int(time.time())
    ring = ring.view(now)
    duration = duration or grant.default_duration
    if kind == "saml":
        if ring.saml_active is None:
            _fail(["run `bridge keys generate --kind saml`"], "no SAML signing key:")
        b64 = mint_saml_response(grant, ident, ring.saml_active, saml_issuer_for(settings), now=now,
                                 duration=duration)
        click.echo(_pretty_xml(base64.b64decode(b64)) if decode else b64)
        metadata = IdpMetadata.from_xml(idp_metadata(settings.saml_entity_id, ring.saml, settings.base_url))
        issues = validate_saml_response(b64, metadata=metadata, now=now, partition=settings.aws.partition,
                                        role_arn=grant.role_arn, principal_arn=grant.provider_arn)
    else:
        token = mint_token(grant, ident, ring.active, issuer=settings.issuer_url,
                           audience=grant.audience or settings.issuer.audience, now=now,
                           lifetime=settings.issuer.token_lifetime)
        if decode:
            h, c, _ = token.split(".")
            click.echo(json.dumps({"header": _decode_part(h), "claims": _decode_part(c),
                                   "RoleSessionName": grant.session_name, "DurationSeconds": duration}, indent=2))
        else:
            click.echo(token)
        issues = validate_jwt(token, jwks=ring.jwks(), issuer=settings.issuer_url,
                              audiences={grant.audience or settings.issuer.audience}, now=now)
        issues += validate_assume_params(grant.session_name, duration, grant.max_duration)
    click.echo("AWS rules: ok" if not issues else "AWS rules broken:\n  " + "\n  ".join(issues), err=True)


def _pretty_xml(raw: bytes) -> str:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
    return str(etree.tostring(etree.fromstring(raw, parser), pretty_print=True, encoding="unicode"))


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="the bridge config (its issuer, audiences, keys); required for --jwt")
@click.option("--jwt", "jwt_path", type=click.Path(exists=True, dir_okay=False), help="a JWT to check")
@click.option("--jwks", "jwks_path", type=click.Path(exists=True, dir_okay=False),
              help="JWKS JSON file (default: the config's own keys)")
@click.option("--saml", "saml_path", type=click.Path(exists=True, dir_okay=False),
              help="a SAMLResponse to check: base64 (as posted) or raw XML")
@click.option("--metadata", "metadata_path", type=click.Path(exists=True, dir_okay=False),
              help="the IdP metadata IAM holds (default: the config's own)")
@click.option("--role", "role_arn", default=None, help="RoleArn of the AssumeRoleWithSAML call")
@click.option("--principal", "principal_arn", default=None, help="PrincipalArn (SAML provider) of the call")
@click.option("--partition", type=click.Choice(["aws", "aws-us-gov", "aws-cn"]), default=None)
def verify(config_path: str | None, jwt_path: str | None, jwks_path: str | None, saml_path: str | None,
           metadata_path: str | None, role_arn: str | None, principal_arn: str | None,
           partition: str | None) -> None:
    """Run the strict AWS-rules validator on a JWT or SAMLResponse; list every rule it breaks."""
    if bool(jwt_path) == bool(saml_path):
        _fail(["give exactly one of --jwt FILE or --saml FILE"], "nothing to verify:")
    settings = _settings(config_path) if config_path else None
    now = int(time.time())
    if saml_path:
        raw = Path(saml_path).read_bytes().strip()
        b64 = base64.b64encode(raw).decode() if raw.startswith(b"<") else raw.decode("ascii", "replace")
        if metadata_path:
            md = Path(metadata_path).read_bytes()
        elif settings is not None:
            ring, problems = load_keyring(settings.keys_dir)
            ring = ring.view(now) if ring is not None else None
            if ring is None or not ring.saml:
                _fail(problems or ["no SAML signing key"], "cannot build the bridge's metadata:")
            md = idp_metadata(settings.saml_entity_id, ring.saml, settings.base_url)
        else:
            _fail(["give --metadata FILE (the IdP metadata uploaded to IAM) or --config"], "no metadata:")
        try:
            metadata = IdpMetadata.from_xml(md)
        except ValueError as e:
            _fail([str(e)], "unusable metadata:")
        part = partition or (settings.aws.partition if settings else "aws")
        issues = validate_saml_response(b64, metadata=metadata, now=now, partition=part, role_arn=role_arn,
                                        principal_arn=principal_arn)
        what = saml_path
    else:
        if settings is None:
            _fail(["--jwt needs --config (the issuer and audiences to check against)"], "missing option:")
        assert jwt_path is not None
        token = Path(jwt_path).read_text(encoding="utf-8").strip()
        if jwks_path:
            jwks = json.loads(Path(jwks_path).read_text(encoding="utf-8"))
        else:
            ring, problems = load_keyring(settings.keys_dir)
            if ring is None:
                _fail(problems, "no usable signing key:")
            jwks = ring.view(now).jwks()
        audiences = {settings.issuer.audience} | {g.audience for r in settings.mapping.rules for g in r.grants or []
                                                  if g.audience}
        issues = validate_jwt(token, jwks=jwks, issuer=settings.issuer_url, audiences=audiences, now=now)
        what = jwt_path
    if issues:
        _fail(issues, f"{what}: {len(issues)} AWS rule(s) broken:")
    click.echo("ok: it passes every AWS rule the bridge knows")

def _register_client_commands() -> None:
    from bridge.client_cli import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_register_client_commands()

if __name__ == "__main__":
    main()
