"""A click group whose subcommands live in their own modules, imported only when used."""

from __future__ import annotations

import importlib
import os
import shlex

import click


class SubcommandGroup(click.Group):
    """Subcommands come from ``subcommands`` (name -> module defining ``command``) plus any added directly.

    Adding a subcommand (say ``fhir``) is one entry in the owning group's mapping and one new module.
    A path where the subcommand belongs (``synthcohort extract ./data``) is told as a forgotten subcommand.
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

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if not ctx.resilient_parsing and _looks_like_path(args[0]) and self.get_command(ctx, args[0]) is None:
            raise click.UsageError(self._what_to_type(ctx, args), ctx)
        return super().resolve_command(ctx, args)

    def _what_to_type(self, ctx: click.Context, args: list[str]) -> str:
        """The commands meant when a path stands where the subcommand belongs: it was left out, or given
        before the group's own arguments (``export omop COHORT TARGET``), which took it as one of them."""
        own = [p for p in self.params if isinstance(p, click.Argument) and p.name]
        given = [str(ctx.params[p.name]) for p in own if p.name]
        misplaced = next((word for word in given if self.get_command(ctx, word) is not None), None)
        if misplaced is not None:
            rest = [*given, *args]
            rest.remove(misplaced)
            fixed = shlex.join([*rest[: len(given)], misplaced, *rest[len(given) :]])
            names = " ".join(p.human_readable_name for p in own)
            return f"`{ctx.command_path}` takes {names} before the command, as in `{ctx.command_path} {fixed}`"
        examples = " or ".join(f"`{ctx.command_path} {line}`" for line in self.meant(ctx, given, args))
        where = f", as in {examples}" if examples else f" (`{ctx.command_path} --help` lists them)"
        return (
            f"{shlex.quote(args[0])} is not a command of `{ctx.command_path}`: name one of its commands before it"
            f"{where}"
        )

    def meant(self, ctx: click.Context, given: list[str], args: list[str]) -> list[str]:
        """What to type after the group's name when the path ``args[0]`` stands where the command belongs,
        after the group's own arguments ``given``: each command before the path."""
        return [shlex.join([*given, sub, *args]) for sub in self.list_commands(ctx)]


def _looks_like_path(name: str) -> bool:
    """Whether a word given where a subcommand belongs is a path rather than a mistyped command name."""
    # os.path, not pathlib: a word too long to be a file name is not one (pathlib raises)
    return not name.startswith("-") and ("/" in name or "." in name or os.path.exists(name))
