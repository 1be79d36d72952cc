"""What the ``pianogen`` command modules share: option types that refuse bad input before any work,
and the command group that lets plugins add commands."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from pianogen.generation.generate_options import (  # noqa: F401 (cli imports them here)
    MAX_NUM,
    MAX_PROMPT_PRIOR,
    MAX_SECONDS,
    MAX_SEED,
    MAX_TEMPERATURE,
)

overrides_argument = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
SEED = click.IntRange(0, MAX_SEED)
NUM = click.IntRange(1, MAX_NUM)


class Finite(click.FloatRange):
    """A FloatRange that also refuses nan and inf (nan passes every range check: all comparisons are False)."""

    name = "finite number"

    def _describe_range(self) -> str:
        """No bounds, no range in --help (click would print ``[x<=None]``)."""
        return super()._describe_range() if self.min is not None or self.max is not None else ""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


SECONDS = Finite(min=0, min_open=True, max=MAX_SECONDS)


def output_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Check that an output directory can be created before any work is done, not after all of it."""
    if value is None:
        return None
    probe = value.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise click.BadParameter(f"{probe} is not a directory, so {value} cannot be created", ctx, param)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{probe} is not writable", ctx, param)
    return value


class PluginCommands(click.Group):
    """A group that lets plugins add their commands (``register_commands``) only when a name is not a
    built-in one or the commands are listed: ``pianogen ls`` or ``data get`` load no plugin (nor torch)."""

    group_class = type  # its subgroups (codec, data, codec import) are PluginCommands too

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and _add_plugin_commands(ctx):
            command = super().get_command(ctx, name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        _add_plugin_commands(ctx)
        return super().list_commands(ctx)


def _add_plugin_commands(ctx: click.Context) -> int:
    from pianogen import registry

    return registry.add_commands(ctx.find_root().command)  # the root group: plugins reach every group from it
