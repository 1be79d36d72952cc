"""``pianogen codec``: train a codec, fetch the weights plugins declare, score one; plugins add importers
under ``codec import``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pianogen.commands.cli_common import PluginCommands, overrides_argument
from pianogen.errors import PianogenError


@click.group(cls=PluginCommands)
def codec() -> None:
    """Codecs: fetch declared weights, import a reference checkpoint, train one on piano audio."""


@codec.command(name="train")
@click.argument("recipe")
@overrides_argument
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint (with the recorded settings).")
@click.option("--force", is_flag=True, help="Replace an existing codec file with a new training.")
def codec_train(recipe: str, overrides: tuple[str, ...], resume: bool, force: bool) -> None:
    """Train a codec on the recipe's corpus (with codec_train.train = "decoder", only the decoder of the codec
    the recipe's [codec] names, trained first from its train_recipe when missing)."""
    from pianogen import load_recipe
    from pianogen.training.codec_prepare import train_missing_codec
    from pianogen.training.codec_train import train_codec

    loaded = load_recipe(recipe, overrides)
    if loaded.codec_train.train == "decoder":
        train_missing_codec(loaded)
    click.echo(str(train_codec(loaded, resume=resume, force=force)))


@codec.group(name="import")
def codec_import() -> None:
    """Convert a foreign checkpoint to a codec's .safetensors (plugins add one command per format)."""


@codec.command(name="get")
@click.argument("name", required=False)
@click.argument("source", required=False)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write it  [default: under $PIANOGEN_HOME/codecs/]")
@click.option("--json", "as_json", is_flag=True, help="List as JSON.")
def codec_get(name: str | None, source: str | None, out: Path | None, as_json: bool) -> None:
    """Fetch the codec weights registered as NAME, checksum-verified, to $PIANOGEN_HOME/codecs/; SOURCE, a local
    file, does the same offline. Without NAME: list the weights plugins declare."""
    from pianogen.fetch.weights import get_codec_weights

    if name is None:
        if source is not None or out is not None:
            raise PianogenError("name the weights to get (`pianogen codec get` alone lists them)")
        _list_weights(as_json)
        return
    import sys

    # the bar only on a terminal: piped, stdout carries the path alone (`$(pianogen codec get NAME)`)
    click.echo(str(get_codec_weights(name, source, out, progress=sys.stdout.isatty())))


def _list_weights(as_json: bool) -> None:
    from pianogen.fetch.weights import default_path, registered_weights

    rows = [{"name": name, "codec": spec.codec, "file": str(default_path(name)),
             "present": default_path(name).is_file(), "size": spec.size, "sha256": spec.sha256,
             "license": spec.license, "source": spec.source, "description": spec.description}
            for name, spec in registered_weights().items()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no plugin declares codec weights")
    for row in rows:
        size = f", {row['size'] / 1e6:.1f} MB" if row["size"] else ""
        pin = f"sha256 {row['sha256']}..." if row["sha256"] else "not pinned"
        click.echo(f"{row['name']}  (codec {row['codec']}{size}, {row['license'] or 'license not stated'}, {pin})"
                   f"\n    {row['description']}\n    from {row['source']}"
                   f"\n    {'have' if row['present'] else 'to'} {row['file']}")


def codec_reading(checkpoint: Path) -> str:
    """The registered codec that reads ``checkpoint``: the one its safetensors metadata names (``codec``), else
    the one whose declared weights bear its file name; a one-line error asking for --codec otherwise."""
    from pianogen.fetch.weights import registered_weights
    from pianogen.registry import registered

    if not checkpoint.is_file():
        raise PianogenError(f"codec checkpoint not found: {checkpoint}")
    try:
        from safetensors import safe_open

        with safe_open(str(checkpoint), framework="pt") as f:
            named = (f.metadata() or {}).get("codec", "")
    except Exception:  # not a safetensors file: its name may still say
        named = ""
    if named in registered("codec"):
        return named
    for spec in registered_weights().values():
        if spec.file == checkpoint.name:
            return spec.codec
    raise PianogenError(f"cannot tell which codec reads {checkpoint}: name it with --codec "
                        f"({', '.join(sorted(registered('codec')))})")


@codec.command(name="eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("audio", nargs=-1, type=click.Path(path_type=Path))
@click.option("--codec", "codec_name", default=None,
              help="Registered codec that reads it  [default: the one its metadata or file name says]")
@click.option("--recipe", help="Score this recipe's corpus (its [data]) instead of AUDIO files.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Recipe override, e.g. data.seed=1.")
@click.option("--split", default="test", show_default=True, help="Split of the recipe's corpus.")
@click.option("--pieces", default=8, show_default=True, type=click.IntRange(min=1), help="Pieces of the split.")
@click.option("--seconds", default=4.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds from the start of each piece or file (0 = all).")
@click.option("--no-opus", is_flag=True, help="Skip the Opus anchor.")
@click.option("--opus-kbps", default="6,8,12,16", show_default=True, help="Opus bitrates (opusenc --bitrate).")
@click.option("--opus-mode", type=click.Choice(["vbr", "cvbr", "hard-cbr"]), default="vbr", show_default=True,
              help="opusenc's rate control (vbr: its default; the measured rate is shown either way).")
@click.option("--no-notes", is_flag=True, help="Skip transcription (note F1).")
@click.option("--transcriber", default="basic_pitch", show_default=True, help="Registered transcriber for note F1.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Also write codec_eval.json, rate_distortion.md and rate_distortion.png here.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def codec_eval(checkpoint: Path, audio: tuple[Path, ...], codec_name: str | None, recipe: str | None,
               overrides: tuple[str, ...], split: str, pieces: int, seconds: float, no_opus: bool, opus_kbps: str,
               opus_mode: str, no_notes: bool, transcriber: str, out_dir: Path | None, device: str,
               as_json: bool) -> None:
    """Score codec CHECKPOINT on AUDIO files or a recipe's split: reconstruction and note F1 by levels, codebook
    use, Opus (opusenc from 48 kHz) at the same metrics, and the rate-distortion table."""
    import sys

    import pianogen
    from pianogen.device import pick_device
    from pianogen.evaluation.codec_metrics import clip, evaluate_codec, markdown_tables, recipe_paths
    from pianogen.evaluation.codec_notes import clip_midi_notes
    from pianogen.evaluation.rate_distortion import rate_distortion_table, write_rate_distortion

    if bool(audio) == bool(recipe):
        raise PianogenError("give AUDIO files or --recipe, not both and not neither")
    try:
        kbps = [float(k) for k in opus_kbps.split(",") if k.strip()]
    except ValueError:
        raise PianogenError(f"--opus-kbps takes numbers separated by commas, not '{opus_kbps}'") from None
    if not kbps or not all(6 <= k <= 256 for k in kbps):
        raise PianogenError(f"--opus-kbps: opusenc takes 6 to 256 kbps, not '{opus_kbps}'")
    codec_name = codec_name or codec_reading(checkpoint)
    codec = pianogen.get_codec(codec_name, checkpoint=str(checkpoint)).to(pick_device(device)).eval()
    paths = recipe_paths(pianogen.load_recipe(recipe, overrides), split, pieces) if recipe else list(audio)
    wavs = [clip(path, codec.sample_rate, seconds) for path in paths]
    midi = None if no_notes else [clip_midi_notes(path, seconds) for path in paths]
    result = {"checkpoint": str(checkpoint), "codec": codec.identity(),
              **evaluate_codec(codec, wavs, opus=not no_opus, opus_kbps=kbps, opus_mode=opus_mode,
                               notes=not no_notes, transcriber=transcriber, midi=midi,
                               progress=sys.stdout.isatty() and not as_json)}
    for line in result["warnings"]:
        click.echo(f"warning: {line}", err=True)
    name, digest = result["codec"]["name"], result["codec"]["config_hash"]
    if out_dir is not None:
        write_rate_distortion(result, out_dir, f"{name} {digest} against Opus ({result['seconds']:.1f} s of audio)")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"# Codec {name} {digest} ({result['seconds']:.1f} s of audio)\n")
    click.echo("\n".join(markdown_tables(result, codec.codebook_size)))
    click.echo("## Rate against distortion\n")
    click.echo("\n".join(rate_distortion_table(result)))
    if out_dir is not None:
        click.echo(f"written: {out_dir / 'rate_distortion.png'}, rate_distortion.md, codec_eval.json")
