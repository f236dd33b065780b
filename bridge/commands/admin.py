"""Running the bridge: check-config, serve, demo, metadata."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from bridge.commands._common import CONFIG, fail, settings_from
from bridge.config import Settings, deployment_problems, listen_port

# gunicorn threads per worker when BRIDGE_THREADS is not set (deploy/gunicorn.conf.py)
DEFAULT_THREADS = 8
# threads a worker keeps for everything but STS (health checks, JWKS, sign-in) when STS is stalled
SPARE_THREADS = 2


@click.command("check-config")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--previous", "previous_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="the config in force: fail if a running bridge would refuse to reload to these rules "
                   "(too few rules; mapping.max_shrink)")
@click.option("--probe", is_flag=True,
              help="also reach every IdP (discovery, JWKS, SAML metadata) and Redis, and show what the last "
                   "sign-in through each connector warned about (attributes under other names, a transient "
                   "NameID, missing claims)")
def check_config(config_path: str, previous_path: str | None, probe: bool) -> None:
    """Validate a config file (and its keys); print every problem, or "ok"."""
    from bridge.core.rulebook import refusal

    settings = settings_from(config_path)
    problems = startup_problems(settings)
    if problems:
        fail(problems, f"{config_path}: {len(problems)} problem(s):")
    for w in settings.warnings():
        click.echo(f"warning: {w}", err=True)
    kept = len(settings_from(previous_path).mapping.rules) if previous_path else None
    if (refused := refusal(kept, settings.mapping)) is not None:
        if previous_path:
            fail([refused[1]], f"{config_path}: a running bridge would refuse to reload to these rules:")
        # Starting with no rules is allowed (a fresh install); a running bridge refuses to reload to it.
        click.echo(f"warning: {refused[1]}; a running bridge refuses to reload to this", err=True)
    if probe:
        _probe(config_path, settings)
    click.echo("ok")


def _probe(config_path: str, settings: Settings) -> None:
    from bridge.commands.probe import probe

    report = probe(settings)
    for line in report.lines:
        click.echo(f"probe: {line}")
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    if report.problems:
        fail(report.problems, f"{config_path}: the probe found {len(report.problems)} problem(s):")


def startup_problems(settings: Settings) -> list[str]:
    """What check-config and serve refuse beyond validation: the keys, and deployment_problems."""
    from bridge.web.services import load_keys

    _, problems = load_keys(settings)
    return problems + deployment_problems(settings)


@click.command()
@CONFIG
@click.option("--bind", default=None, help="host:port (default: the config's listen)")
@click.option("--workers", default=None, type=int, help="gunicorn worker processes")
def serve(config_path: str, bind: str | None, workers: int | None) -> None:
    """Run the bridge under gunicorn (deploy/gunicorn.conf.py, gthread workers).

    Checks what check-config checks (keys included) first: a bridge that cannot sign never starts."""
    settings = settings_from(config_path)
    if problems := startup_problems(settings):
        fail(problems, f"{config_path}: cannot serve, {len(problems)} problem(s):")
    from bridge.runtime.app import asset_dir

    conf = asset_dir("deploy") / "gunicorn.conf.py"
    env = {**os.environ, "BRIDGE_CONFIG": str(Path(config_path).resolve()),
           "BRIDGE_BIND": bind or settings.listen}
    if settings.metrics.listen:
        # A second gunicorn listener; the app answers only /metrics there (bridge/runtime/app.py).
        if listen_port(settings.metrics.listen) == listen_port(env["BRIDGE_BIND"]):
            fail([f"metrics.listen {settings.metrics.listen} and --bind {env['BRIDGE_BIND']} share a port"],
                 "cannot serve:")
        env["BRIDGE_METRICS_BIND"] = settings.metrics.listen
    else:
        env.pop("BRIDGE_METRICS_BIND", None)
    if workers:
        env["BRIDGE_WORKERS"] = str(workers)
    threads = env.get("BRIDGE_THREADS", "")
    threads_n = int(threads) if threads.isdigit() else DEFAULT_THREADS
    if settings.aws.sts_max_concurrency > threads_n - SPARE_THREADS:
        click.echo(f"warning: aws.sts_max_concurrency {settings.aws.sts_max_concurrency} leaves fewer than "
                   f"{SPARE_THREADS} of the {threads_n} threads per worker (BRIDGE_THREADS) free: a stalled STS can "
                   "hold them all, and health checks and the JWKS then wait behind it", err=True)
    args = [sys.executable, "-m", "gunicorn", "-c", str(conf), "bridge.runtime.wsgi:app"]
    os.execvpe(args[0], args, env)  # noqa: S606 - replaces this process with gunicorn


@click.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--config", "config_path", default="config/demo.yaml", show_default=True)
@click.option("--smoke", is_flag=True, help="sign in once, fetch credentials, call STS, then stop")
def demo(port: int, config_path: str, smoke: bool) -> None:
    """Run the demo: Redis, local STS (moto), the demo IdP and the bridge. Ctrl-C stops all."""
    from bridge.runtime.demo import run_demo

    sys.exit(run_demo(Path(config_path), port, smoke=smoke))


@click.command()
@CONFIG
def metadata(config_path: str) -> None:
    """Print the bridge's SAML IdP metadata (for `aws iam create-saml-provider`)."""
    from bridge.aws.metadata import idp_metadata
    from bridge.keys.signing import load_keyring

    settings = settings_from(config_path)
    ring, problems = load_keyring(settings.keys_dir)
    ring = ring.view(time.time()) if ring is not None else None
    if ring is None or not ring.saml:
        fail(problems or ["no SAML signing key: run `bridge keys generate --kind saml`"], "cannot build metadata:")
    sys.stdout.buffer.write(idp_metadata(settings.saml_entity_id, ring.saml, f"{settings.base_url}/idp/sso"))
