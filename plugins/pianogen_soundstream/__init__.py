"""Built-in PianoGen plugin: the ``soundstream`` codec (registered through the 'pianogen' entry-point group)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pianogen
from pianogen.interfaces import WeightsSpec
from pianogen_soundstream.checkpoint import load_soundstream
from pianogen_soundstream.convert import import_reference
from pianogen_soundstream.model import SoundStream, SoundStreamConfig


@dataclass
class SoundStreamOptions(SoundStreamConfig):
    checkpoint: str = ""  # .safetensors to load (weights AND architecture); "" = fresh random weights


def soundstream(checkpoint: str = "", **arch: Any) -> SoundStream:
    """``get_codec("soundstream", checkpoint=..., **arch)``: arch keys build a fresh codec or must match the file."""
    if checkpoint:
        return load_soundstream(checkpoint, **arch)
    return SoundStream(SoundStreamConfig(**arch))


# The checkpoint the reference ``soundstream`` package's from_pretrained loads (soundstream 0.0.1:
# repo_id="haydenshively/SoundStream"), imported to safetensors. Not pinned: its digest is not published, and
# the hub's ETag (the LFS file's sha256) checks the transfer; the import checks every tensor's name and shape.
REFERENCE_WEIGHTS = WeightsSpec(
    codec="soundstream", file="soundstream_variant_naturalspeech2.safetensors",
    source="hf://haydenshively/SoundStream/soundstream_variant_naturalspeech2.pt", sha256="",
    license="MIT (the soundstream package)", convert=import_reference,
    description="the reference SoundStream (NaturalSpeech 2 variant, 16 kHz), imported to safetensors",
)


@pianogen.hookimpl
def register_codecs(register) -> None:
    register("soundstream", soundstream, config=SoundStreamOptions)


@pianogen.hookimpl
def register_codec_weights(register) -> None:
    register("soundstream", REFERENCE_WEIGHTS)


@pianogen.hookimpl
def register_codec_importers(register) -> None:
    register("soundstream", import_reference)


@pianogen.hookimpl
def register_commands(cli) -> None:
    import click

    @cli.commands["codec"].commands["import"].command(name="soundstream")
    @click.argument("checkpoint", type=click.Path(path_type=Path))
    @click.argument("out", type=click.Path(path_type=Path))
    def import_soundstream(checkpoint: Path, out: Path) -> None:
        """Convert the reference SoundStream .pt CHECKPOINT to OUT (.safetensors)."""
        import_reference(checkpoint, out)
        click.echo(str(out))
