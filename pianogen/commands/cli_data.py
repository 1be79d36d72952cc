"""``pianogen data``: fetch MAESTRO; the data plugin adds ``synth`` and ``render`` (register_commands)."""

from __future__ import annotations

from pathlib import Path

import click

from pianogen.commands.cli_common import PluginCommands
from pianogen.errors import PianogenError


@click.group(cls=PluginCommands)
def data() -> None:
    """Corpora."""


@data.command(name="get")
@click.argument("dataset", type=click.Choice(["maestro"]))
@click.argument("more_years", nargs=-1, metavar="")  # so `--years 2017 2018` works as well as 2017,2018
@click.option("--version", "version", type=click.Choice(["3.0.0"]), default="3.0.0", show_default=True,
              help="MAESTRO version.")
@click.option("--years", "years", multiple=True, metavar="YEAR[,YEAR...]|all",
              help="Years whose audio to fetch: 2018, 2017,2018 or 2017 2018  [default: 2018, the report's]")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Where to put it  [default: $PIANOGEN_HOME/data/maestro-v3.0.0]")
@click.option("--url", default=None, help="A mirror URL or a local path of the zip  [$PIANOGEN_MAESTRO_URL, "
                                          "else the official one]")
@click.option("--dry-run", is_flag=True, help="Print the files and bytes a fetch would download, fetch nothing.")
def data_get(dataset: str, more_years: tuple[str, ...], version: str, years: tuple[str, ...], root: Path | None,
             url: str | None, dry_run: bool) -> None:
    """Fetch MAESTRO's CSV and only the chosen years' audio (HTTP ranges on the official zip; resumable)."""
    from pianogen.fetch.maestro import DEFAULT_YEARS, get_maestro

    years = years + more_years
    get_maestro(root, _parse_years(years) if years else DEFAULT_YEARS, version, url, dry_run=dry_run,
                log=click.echo)


def _parse_years(texts: tuple[str, ...]) -> list[int]:
    items = [item.strip() for text in texts for item in text.split(",") if item.strip()]
    if "all" in items:
        return []
    if not all(item.isdigit() for item in items):
        raise PianogenError(f"--years takes years like 2018 or 2017,2018 (or 'all'), got {', '.join(texts)}")
    return [int(item) for item in items]
