"""The ``bridge`` console script. Developer commands load without the server's heavy imports,
so `bridge credential-process` (run by AWS SDKs on every refresh) starts in tens of milliseconds."""

from __future__ import annotations

import sys

CLIENT_COMMANDS = {"login", "logout", "credential-process", "configure", "env", "local-server", "console"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in CLIENT_COMMANDS:
        import click

        from bridge.client_cli import COMMANDS

        group = click.Group("bridge", commands={c.name: c for c in COMMANDS if c.name})
        group()
        return
    from bridge.cli import main as admin

    admin()
