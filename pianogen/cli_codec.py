"""``pianogen codec``: train a codec, fetch the report's weights, score one; plugins add importers
under ``codec import``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pianogen.cli_common import PluginCommands, overrides_argument
from pianogen.errors import PianogenError


@click.group(cls=PluginCommands)
def codec() -> None:
    """Codecs: fetch the report's weights, import a reference checkpoint, train one on piano audio."""


@codec.command(name="train")
@click.argument("recipe")
@overrides_argument
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint.")
def codec_train(recipe: str, overrides: tuple[str, ...], resume: bool) -> None:
    """Train a codec on the recipe's corpus."""
    from pianogen import load_recipe
    from pianogen.codec_train import train_codec

    click.echo(str(train_codec(load_recipe(recipe, overrides), resume=resume)))


@codec.group(name="import")
def codec_import() -> None:
    """Convert a foreign checkpoint to a codec's .safetensors (plugins add one command per format)."""


@codec.command(name="get")
@click.argument("name", type=click.Choice(["soundstream", "encodec"]))
@click.argument("source", required=False)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write it  [default: under $PIANOGEN_HOME/codecs/]")
def codec_get(name: str, source: str | None, out: Path | None) -> None:
    """The report's SoundStream (model hub, imported to safetensors) or EnCodec 24 kHz (checksum-verified);
    SOURCE, a local file, does the same offline."""
    from pianogen.fetch.weights import get_codec_weights

    click.echo(str(get_codec_weights(name, source, out)))


@codec.command(name="eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("audio", nargs=-1, type=click.Path(path_type=Path))
@click.option("--codec", "codec_name", default="soundstream", show_default=True, help="Registered codec that reads it.")
@click.option("--recipe", help="Score this recipe's corpus (its [data]) instead of AUDIO files.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Recipe override, e.g. data.seed=1.")
@click.option("--split", default="test", show_default=True, help="Split of the recipe's corpus.")
@click.option("--pieces", default=8, show_default=True, type=click.IntRange(min=1), help="Pieces of the split.")
@click.option("--seconds", default=4.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds from the start of each piece or file (0 = all).")
@click.option("--no-opus", is_flag=True, help="Skip the Opus anchor.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def codec_eval(checkpoint: Path, audio: tuple[Path, ...], codec_name: str, recipe: str | None,
               overrides: tuple[str, ...], split: str, pieces: int, seconds: float, no_opus: bool, device: str,
               as_json: bool) -> None:
    """Score codec CHECKPOINT on AUDIO files or a recipe's split: reconstruction by levels, codebook use, Opus."""
    import pianogen
    from pianogen.codec_metrics import clip, evaluate_codec, markdown_tables, recipe_audio
    from pianogen.device import pick_device

    if bool(audio) == bool(recipe):
        raise PianogenError("give AUDIO files or --recipe, not both and not neither")
    codec = pianogen.get_codec(codec_name, checkpoint=str(checkpoint)).to(pick_device(device)).eval()
    if recipe:
        wavs = recipe_audio(pianogen.load_recipe(recipe, overrides), split, codec.sample_rate, seconds, pieces)
    else:
        wavs = [clip(path, codec.sample_rate, seconds) for path in audio]
    result = {"checkpoint": str(checkpoint), "codec": codec.identity(), **evaluate_codec(codec, wavs, opus=not no_opus)}
    for line in result["warnings"]:
        click.echo(f"warning: {line}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    name, digest = result["codec"]["name"], result["codec"]["config_hash"]
    click.echo(f"# Codec {name} {digest} ({result['seconds']:.1f} s of audio)\n")
    click.echo("\n".join(markdown_tables(result, codec.codebook_size)))
