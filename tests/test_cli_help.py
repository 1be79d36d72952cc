"""Every option of every command says what it does, and --help never prints a range it does not have."""

from __future__ import annotations

import click

from pianogen import registry
from pianogen.commands.cli import cli


def _commands(group: click.Command, path: tuple[str, ...] = ("pianogen",)):
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


def test_every_option_has_help_and_no_empty_range():
    registry.add_commands(cli)  # the plugins' commands (data render, codec import ...) too
    lacking, ranges = [], []
    for path, command in _commands(cli):
        lacking += [f"{' '.join(path)} {p.opts[0]}" for p in command.params
                    if isinstance(p, click.Option) and not p.hidden and not p.help]
        text = command.get_help(click.Context(command, info_name=" ".join(path)))
        ranges += [f"{' '.join(path)}: {line.strip()}" for line in text.splitlines() if "None]" in line]
    assert len(list(_commands(cli))) > 15
    assert lacking == [] and ranges == []
