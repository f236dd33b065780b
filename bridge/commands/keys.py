"""Signing keys: keys generate, rotate, list, prune."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from bridge.commands._common import fail
from bridge.keys.signing import (
    SUPPORTED_ALGS,
    KeyRing,
    SamlKey,
    SigningKey,
    generate_cache_key,
    generate_key,
    generate_saml_key,
    load_keyring,
    prune,
    rotate,
)

DIR = click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True))


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


@click.group()
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
@DIR
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
            fail([str(e)], "cannot rotate:")
        click.echo(f"created {new.path.name} ({k}, kid {new.kid}): published now, signs from "
                   f"{_utc(now + publish_for)}")
        for old in scheduled:
            click.echo(f"  {old.name} retires at {_utc(now + publish_for + overlap)}")
        if k == "saml":
            click.echo("  next: `bridge metadata --config …` and `aws iam update-saml-provider` with it before "
                       "the new key signs", err=True)


def _state(key: SigningKey | SamlKey, published: Sequence[SigningKey | SamlKey], now: float) -> str:
    schedule = key.schedule
    if not schedule.published(now):
        return "retired"
    if published and key is published[-1]:
        return "signing"
    if schedule.sign_from is not None and schedule.sign_from > now:
        return "next"
    if schedule.retire_at is not None:
        return "retiring"
    return "published"


def _print_keys(ring: KeyRing, now: float) -> None:
    view = ring.view(now)

    def when(t: int | None) -> str:
        return "-" if t is None else _utc(t)

    for kind, all_keys, published in (("jwt", ring.keys, view.keys), ("saml", ring.saml, view.saml)):
        for k in all_keys:
            click.echo(f"{kind:4s} {_state(k, published, now):9s} {k.kid:44s} signs from "
                       f"{when(k.schedule.sign_from):23s} retires {when(k.schedule.retire_at):23s} {k.path.name}")


@keys.command("list")
@DIR
def keys_list(directory: str) -> None:
    """Every key with its state: signing, next (published, not signing yet), retiring, retired."""
    ring, problems = load_keyring(Path(directory))
    for p in problems:
        click.echo(f"problem: {p}", err=True)
    if ring is None:
        sys.exit(1)
    _print_keys(ring, time.time())


@keys.command("prune")
@DIR
def keys_prune(directory: str) -> None:
    """Delete keys whose retirement time has passed."""
    for path in prune(Path(directory), now=time.time()):
        click.echo(f"removed {path.name}")
