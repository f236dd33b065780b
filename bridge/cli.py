"""The ``bridge`` command: one click group whose subcommands load only when used.

Each command lives in a module of ``bridge.commands`` (one per area) and is imported when it runs,
or when help lists it — click's "lazily loading subcommands" pattern. So `bridge credential-process`,
which AWS SDKs run on every credential refresh, loads click and the standard-library client, never
the server's Flask, pydantic, boto3 or XML stack. This module imports only click.

A new command: write it in the area's module and add its name here.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

COMMANDS: dict[str, str] = {
    # developer commands: standard library only (bridge.commands.developer)
    "login": "bridge.commands.developer:login",
    "logout": "bridge.commands.developer:logout",
    "credential-process": "bridge.commands.developer:credential_process",
    "configure": "bridge.commands.developer:configure",
    "env": "bridge.commands.developer:env",
    "local-server": "bridge.commands.developer:local_server",
    "console": "bridge.commands.developer:console",
    # admin commands
    "check-config": "bridge.commands.admin:check_config",
    "serve": "bridge.commands.admin:serve",
    "demo": "bridge.commands.admin:demo",
    "metadata": "bridge.commands.admin:metadata",
    "explain": "bridge.commands.rules:explain",
    "rules-schema": "bridge.commands.rules:rules_schema",
    "preview": "bridge.commands.tokens:preview",
    "verify": "bridge.commands.tokens:verify",
    "keys": "bridge.commands.keys:keys",
    "sessions": "bridge.commands.sessions:sessions_group",
    "audit": "bridge.commands.audit:audit_group",
    "aws-setup": "bridge.commands.awssetup:aws_setup",
    "doctor": "bridge.commands.awssetup:doctor",
    "rules": "bridge.commands.rulecases:rules_group",
}
"""Command name → ``module:attribute`` of its click command."""


class LazyGroup(click.Group):
    """A group whose commands are named up front and imported on first use."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, cmd_name: str) -> click.Command:
        module, _, attribute = self.lazy_commands[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise TypeError(f"{self.lazy_commands[cmd_name]} is not the click command {cmd_name!r}")
        return command


@click.group(cls=LazyGroup, lazy_commands=COMMANDS)
@click.version_option(package_name="federation-bridge")
def main() -> None:
    """Federation Bridge: sign in with your IdP, get AWS access decided by rules."""


if __name__ == "__main__":
    main()
