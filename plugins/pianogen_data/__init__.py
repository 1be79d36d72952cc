"""Built-in PianoGen plugin: the data sources `maestro`, `folder`, `synthetic`, `rendered`, `salamander` and `mix`,
and the commands `pianogen data synth` (the synthetic corpus) and `pianogen data render` (MIDI played on a
sampled grand). The corpus writer (corpus.py), the composers and renderers and the Salamander recordings
(salamander_fetch.py) live here: the host knows corpora only as data sources.

Registered through the 'pianogen' entry-point group like any third-party plugin. Each source names its own
``[data]`` keys with a dataclass (``config=``), checked when a recipe is read; its factory gets them all.
"""

from __future__ import annotations

import math
from pathlib import Path

import pianogen
from pianogen.hookspecs import Register
from pianogen_data.sources import (
    MUSIC,
    FolderOptions,
    FolderSource,
    MaestroOptions,
    MaestroSource,
    MixOptions,
    MixSource,
    RenderedOptions,
    SalamanderOptions,
    SalamanderSource,
    SyntheticOptions,
    folder,
    maestro,
    mix,
    rendered,
    rendered_root,
    salamander,
    synthetic,
    synthetic_root,
)


@pianogen.hookimpl
def register_data_sources(register: Register) -> None:
    register("maestro", maestro, config=MaestroOptions)
    register("folder", folder, config=FolderOptions)
    register("synthetic", synthetic, config=SyntheticOptions)
    register("rendered", rendered, config=RenderedOptions)
    register("salamander", salamander, config=SalamanderOptions)
    register("mix", mix, config=MixOptions)


def _finite(ctx, param, value: float | None) -> float | None:
    """FloatRange lets nan and inf through (every comparison with nan is False): a corpus needs a length."""
    import click

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a finite number", ctx, param)
    return value


@pianogen.hookimpl
def register_commands(cli) -> None:
    import click

    @cli.commands["data"].command(name="synth")
    @click.argument("out_dir", type=click.Path(path_type=Path))
    @click.option("--minutes", default=6.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
                  callback=_finite, help="Length of the corpus (~80/10/10 % train/validation/test).")
    @click.option("--seed", default=0, show_default=True, help="Seeds the composer: the same seed, the same corpus.")
    def data_synth(out_dir: Path, minutes: float, seed: int) -> None:
        """Write a synthetic piano corpus in MAESTRO's layout to OUT_DIR."""
        from pianogen_data.synth import write_corpus

        click.echo(str(write_corpus(out_dir, minutes=minutes, seed=seed)))

    @cli.commands["data"].command(name="render")
    @click.argument("out_dir", type=click.Path(path_type=Path))
    @click.option("--midi", type=click.Path(path_type=Path, file_okay=False), default=None,
                  help="Render every .mid/.midi file under this folder (a MAESTRO CSV there keeps its splits).")
    @click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None, callback=_finite,
                  help="Or compose and render this many minutes of pieces.")
    @click.option("--seed", default=0, show_default=True, help="Seeds the composer and --humanize.")
    @click.option("--humanize", is_flag=True, help="Play MIDI files with small timing and velocity jitter.")
    @click.option("--music", type=click.Choice(list(MUSIC)), default="pieces", show_default=True,
                  help="What --minutes composes: pieces, or ring-outs (notes and chords let ring to silence).")
    @click.option("--all-layers", is_flag=True,
                  help="Also play velocity layer 10, which codec evaluation scores (left out by default).")
    @click.option("--soundfont", type=click.Path(path_type=Path, dir_okay=False), default=None,
                  help="Play with FluidSynth and this .sf2 instead of the Salamander grand: another piano, to "
                       "evaluate on (e.g. /usr/share/sounds/sf2/TimGM6mb.sf2).")
    def data_render(out_dir: Path, midi: Path | None, minutes: float | None, seed: int, humanize: bool,
                    music: str, all_layers: bool, soundfont: Path | None) -> None:
        """Render MIDI with a recorded grand (Salamander V3) into OUT_DIR, in MAESTRO's layout; resumable."""
        from pianogen_data.render import render_corpus
        from pianogen_data.sampler import SamplerConfig

        if (midi is None) == (minutes is None):
            raise click.UsageError("give either --midi DIR or --minutes M")
        config = SamplerConfig(skip_layer=None) if all_layers else None
        click.echo(str(render_corpus(out_dir, midi=midi, minutes=minutes, seed=seed, humanized=humanize,
                                     config=config, soundfont=soundfont, music=music)))


__all__ = ["FolderOptions", "FolderSource", "MaestroOptions", "MaestroSource", "MixOptions", "MixSource",
           "RenderedOptions", "SalamanderOptions", "SalamanderSource", "SyntheticOptions", "folder", "maestro", "mix",
           "rendered", "rendered_root", "salamander", "synthetic", "synthetic_root", "register_data_sources",
           "register_commands"]
