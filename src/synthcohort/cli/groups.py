"""A click group whose subcommands live in their own modules, imported only when used."""

from __future__ import annotations

import importlib

import click


class SubcommandGroup(click.Group):
    """Subcommands come from ``subcommands`` (name -> module defining ``command``) plus any added directly.

    Adding a subcommand (say ``fhir``) is one entry in the owning group's mapping and one new module.
    """

    def __init__(self, *args: object, subcommands: dict[str, str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.subcommands = subcommands if subcommands is not None else {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.subcommands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        module = self.subcommands.get(cmd_name)
        if module is None:
            return None
        cmd = importlib.import_module(f"synthcohort.cli.{module}").command
        assert isinstance(cmd, click.Command)
        return cmd
