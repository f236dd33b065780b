"""The ``bridge`` command: one click group whose subcommands load only when used.

Each command lives in a module of ``bridge.commands`` (one per area) and is imported when it runs,
or when help lists it — click's "lazily loading subcommands" pattern. So `bridge credential-process`,
which AWS SDKs run on every credential refresh, loads click and the standard-library client, never
the server's Flask, pydantic, boto3 or XML stack (and with credentials fresh in the cache,
bridge.__main__ answers it before click is even imported). This module imports only click.
`bridge --help` lists the developer commands first and the admin commands in their own section.

A new command: write it in the area's module and add its name here.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

DEVELOPER_COMMANDS: dict[str, str] = {
    # standard library and click only (bridge.commands.developer and .configure); in the order a developer
    # meets them
    "login": "bridge.commands.developer:login",
    "roles": "bridge.commands.developer:roles",
    "exec": "bridge.commands.developer:exec_",
    "env": "bridge.commands.developer:env",
    "console": "bridge.commands.developer:console",
    "configure": "bridge.commands.configure:configure",
    "credential-process": "bridge.commands.developer:credential_process",
    "local-server": "bridge.commands.developer:local_server",
    "logout": "bridge.commands.developer:logout",
}
ADMIN_COMMANDS: dict[str, str] = {
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
    "requests": "bridge.commands.requests:requests_group",
    "audit": "bridge.commands.audit:audit_group",
    "storage": "bridge.commands.storage:storage_group",
    "aws-setup": "bridge.commands.awssetup:aws_setup",
    "doctor": "bridge.commands.awssetup:doctor",
    "accounts": "bridge.commands.accounts:accounts_group",
    "rules": "bridge.commands.rulecases:rules_group",
}
COMMANDS: dict[str, str] = {**DEVELOPER_COMMANDS, **ADMIN_COMMANDS}
"""Command name → ``module:attribute`` of its click command."""


class LazyGroup(click.Group):
    """A group whose commands are named up front and imported on first use."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Two sections: the developer commands (in the order one meets them), then the admin ones."""
        width = formatter.width - 6 - max(len(n) for n in self.lazy_commands)
        for title, names in (("Developer commands", DEVELOPER_COMMANDS), ("Admin commands", ADMIN_COMMANDS)):
            rows = []
            for name in names:
                command = self.get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, command.get_short_help_str(width)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

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
