"""What AWS is sent: preview (mint it for an identity and role), verify (the strict AWS-rules validator)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from bridge import mapping
from bridge.aws.assertion import mint_saml_response
from bridge.aws.metadata import idp_metadata
from bridge.aws.token import mint_token
from bridge.aws.validate import validate_assume_params, validate_jwt
from bridge.aws.validate_saml import IdpMetadata, validate_saml_response
from bridge.commands._common import CONFIG, fail, identity_from, settings_from
from bridge.config import Settings
from bridge.domain.identity import Grant, Identity
from bridge.keys.signing import KeyRing, load_keyring


def _decode_part(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _pretty_xml(raw: bytes) -> str:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
    return str(etree.tostring(etree.fromstring(raw, parser), pretty_print=True, encoding="unicode"))


def _preview_saml(settings: Settings, ident: Identity, grant: Grant, ring: KeyRing, now: int, duration: int,
                  decode: bool) -> Sequence[object]:
    """Print the SAMLResponse (base64, or pretty XML); return the AWS rules it breaks."""
    from bridge.web.services import saml_issuer_for

    if ring.saml_active is None:
        fail(["run `bridge keys generate --kind saml`"], "no SAML signing key:")
    b64 = mint_saml_response(grant, ident, ring.saml_active, saml_issuer_for(settings), now=now, duration=duration)
    click.echo(_pretty_xml(base64.b64decode(b64)) if decode else b64)
    metadata = IdpMetadata.from_xml(idp_metadata(settings.saml_entity_id, ring.saml, settings.base_url))
    return validate_saml_response(b64, metadata=metadata, now=now, partition=settings.aws.partition,
                                  role_arn=grant.role_arn, principal_arn=grant.provider_arn)


def _preview_jwt(settings: Settings, ident: Identity, grant: Grant, ring: KeyRing, now: int, duration: int,
                 decode: bool) -> Sequence[object]:
    """Print the web identity token (or its decoded parts); return the AWS rules it breaks."""
    audience = grant.audience or settings.issuer.audience
    token = mint_token(grant, ident, ring.active, issuer=settings.issuer_url, audience=audience, now=now,
                       lifetime=settings.issuer.token_lifetime)
    if decode:
        h, c, _ = token.split(".")
        click.echo(json.dumps({"header": _decode_part(h), "claims": _decode_part(c),
                               "RoleSessionName": grant.session_name, "DurationSeconds": duration}, indent=2))
    else:
        click.echo(token)
    return [*validate_jwt(token, jwks=ring.jwks(), issuer=settings.issuer_url, audiences={audience}, now=now),
            *validate_assume_params(grant.session_name, duration, grant.max_duration)]


@click.command()
@CONFIG
@click.option("--identity", "identity_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--role", "role_arn", required=True, help="role ARN the identity is granted")
@click.option("--as", "kind", type=click.Choice(["jwt", "saml"]), default="jwt", show_default=True)
@click.option("--duration", type=int, default=None, help="DurationSeconds (default: the grant's)")
@click.option("--decode", is_flag=True, help="print the decoded token / pretty SAML XML instead")
def preview(config_path: str, identity_path: str, role_arn: str, kind: str, duration: int | None,
            decode: bool) -> None:
    """Print the token or SAMLResponse that would be sent to AWS for this identity and role."""
    settings = settings_from(config_path)
    ident = identity_from(identity_path)
    grants = mapping.evaluate(settings.mapping, ident, **settings.grant_defaults())
    grant = next((g for g in grants if g.role_arn == role_arn), None)
    if grant is None:
        fail([g.role_arn for g in grants] or ["(none)"], f"{role_arn} is not granted to this identity; granted:")
    ring, problems = load_keyring(settings.keys_dir)
    if ring is None:
        fail(problems, "no usable signing key:")
    now = int(time.time())
    mint = _preview_saml if kind == "saml" else _preview_jwt
    if settings.aws.mfa_tag:  # what the issuer adds itself (docs/step-up-mfa.md)
        from bridge.aws.bridge_tags import with_bridge_tags

        grant = with_bridge_tags(grant, ident)
    if grant.hubs:  # what AWS receives is the first call, into the chain's first hub (docs/many-accounts.md)
        from bridge.core.issuing import first_call

        click.echo(f"note: {role_arn} is reached through {' → '.join(h.role_arn for h in grant.hubs)}: this is "
                   "the first call, into the hub; sts:AssumeRole signed by its session goes on from there", err=True)
        grant, duration = first_call(grant), first_call(grant).default_duration
    issues = mint(settings, ident, grant, ring.view(now), now, duration or grant.default_duration, decode)
    click.echo("AWS rules: ok" if not issues else "AWS rules broken:\n  " + "\n  ".join(map(str, issues)), err=True)


def _bridge_metadata(settings: Settings | None, now: int) -> bytes:
    """The IdP metadata the bridge publishes (what IAM holds when the artifact is the bridge's own)."""
    if settings is None:
        fail(["give --metadata FILE (the IdP metadata uploaded to IAM) or --config"], "no metadata:")
    ring, problems = load_keyring(settings.keys_dir)
    ring = ring.view(now) if ring is not None else None
    if ring is None or not ring.saml:
        fail(problems or ["no SAML signing key"], "cannot build the bridge's metadata:")
    return idp_metadata(settings.saml_entity_id, ring.saml, settings.base_url)


def _verify_saml(saml_path: str, metadata_path: str | None, settings: Settings | None, now: int,
                 partition: str | None, role_arn: str | None, principal_arn: str | None) -> Sequence[object]:
    raw = Path(saml_path).read_bytes().strip()
    b64 = base64.b64encode(raw).decode() if raw.startswith(b"<") else raw.decode("ascii", "replace")
    md = Path(metadata_path).read_bytes() if metadata_path else _bridge_metadata(settings, now)
    try:
        metadata = IdpMetadata.from_xml(md)
    except ValueError as e:
        fail([str(e)], "unusable metadata:")
    part = partition or (settings.aws.partition if settings else "aws")
    return validate_saml_response(b64, metadata=metadata, now=now, partition=part, role_arn=role_arn,
                                  principal_arn=principal_arn)


def _fetch_json(url: str) -> Any:
    import requests  # only for an upstream issuer's discovery and JWKS

    try:
        r = requests.get(url, timeout=10)
        r.raise_for_status()
        return r.json()
    except (requests.RequestException, ValueError) as e:
        fail([f"{url}: {type(e).__name__} (AWS must fetch it over https within about 5 seconds)"], "cannot fetch:")


def _verify_upstream_jwt(jwt_path: str, jwks_path: str | None, issuer: str, audience: str | None,
                         now: int) -> Sequence[object]:
    """An upstream IdP's ID token (OIDC ``aws_passthrough``), as AWS checks it against the IAM OIDC
    provider ``issuer`` with client id ``audience``: discovery and JWKS fetched from the issuer, as AWS does."""
    if not audience:
        fail(["--issuer needs --audience (the client id registered in the IAM OIDC provider)"], "missing option:")
    token = Path(jwt_path).read_text(encoding="utf-8").strip()
    discovery = _fetch_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if jwks_path:
        jwks = json.loads(Path(jwks_path).read_text(encoding="utf-8"))
    else:
        uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
        if not isinstance(uri, str):
            fail([f"{issuer}: its discovery document has no jwks_uri"], "cannot fetch:")
        jwks = _fetch_json(uri)
    return validate_jwt(token, jwks=jwks, issuer=issuer, audiences={audience}, now=now,
                        discovery=discovery if isinstance(discovery, dict) else None)


def _verify_jwt(jwt_path: str, jwks_path: str | None, settings: Settings | None, now: int) -> Sequence[object]:
    if settings is None:
        fail(["--jwt needs --config (the issuer and audiences to check against), or --issuer and --audience "
              "for an upstream IdP's token"], "missing option:")
    token = Path(jwt_path).read_text(encoding="utf-8").strip()
    if jwks_path:
        jwks = json.loads(Path(jwks_path).read_text(encoding="utf-8"))
    else:
        ring, problems = load_keyring(settings.keys_dir)
        if ring is None:
            fail(problems, "no usable signing key:")
        jwks = ring.view(now).jwks()
    audiences = {settings.issuer.audience} | {g.audience for r in settings.mapping.rules for g in r.grants or []
                                              if g.audience}
    return validate_jwt(token, jwks=jwks, issuer=settings.issuer_url, audiences=audiences, now=now)


@click.command()
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
@click.option("--issuer", default=None,
              help="with --jwt: an upstream IdP's issuer (the IAM OIDC provider URL) instead of the bridge's own")
@click.option("--audience", default=None, help="with --issuer: the client id registered in the IAM OIDC provider")
def verify(config_path: str | None, jwt_path: str | None, jwks_path: str | None, saml_path: str | None,
           metadata_path: str | None, role_arn: str | None, principal_arn: str | None,
           partition: str | None, issuer: str | None, audience: str | None) -> None:
    """Run the strict AWS-rules validator on a JWT or SAMLResponse; list every rule it breaks.

    An upstream IdP's ID token (pass-through): --jwt FILE --issuer URL --audience CLIENT_ID."""
    if bool(jwt_path) == bool(saml_path):
        fail(["give exactly one of --jwt FILE or --saml FILE"], "nothing to verify:")
    settings = settings_from(config_path) if config_path else None
    now = int(time.time())
    if saml_path:
        issues = _verify_saml(saml_path, metadata_path, settings, now, partition, role_arn, principal_arn)
        what = saml_path
    else:
        assert jwt_path is not None
        if issuer:
            issues = _verify_upstream_jwt(jwt_path, jwks_path, issuer, audience, now)
        else:
            issues = _verify_jwt(jwt_path, jwks_path, settings, now)
        what = jwt_path
    if issues:
        fail(issues, f"{what}: {len(issues)} AWS rule(s) broken:")
    click.echo("ok: it passes every AWS rule the bridge knows")
