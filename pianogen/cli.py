"""The ``pianogen`` command line: a thin layer over the Python API.

Every user error ends in one line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

from pianogen.errors import PianogenError

overrides_argument = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="pianogen")
def cli(debug: bool) -> None:
    """PianoGen: continue piano performances from raw audio."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List registered plugins (and any that failed to load)."""
    from pianogen import plugins as registry

    rows = [
        {"kind": r.kind, "name": r.name, "plugin": r.plugin, "package": r.package, "version": r.version}
        for kind in registry.KINDS for r in registry.registered(kind).values()
    ]
    failed = [{"plugin": f.plugin, "package": f.package, "error": f.error} for f in registry.failures()]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": failed}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("kind", "name", "plugin", "package", "version")
    for row in rows:
        table.add_row(*row.values())
    console = Console()
    console.print(table)
    for f in failed:
        console.print(f"[red]failed[/red] {f['plugin']} ({f['package']}): {f['error']}")


@cli.command(name="ls")
def list_recipes() -> None:
    """List the built-in recipes."""
    from pianogen.recipe import builtin_recipes

    for name, path in builtin_recipes().items():
        first = path.read_text().splitlines()[0].lstrip("# ").strip()
        click.echo(f"{name:12s} {first}")


@cli.command(name="cp")
@click.argument("name")
@click.argument("dest", type=click.Path(path_type=Path))
def copy_recipe(name: str, dest: Path) -> None:
    """Copy built-in recipe NAME to DEST (a file or a directory) to edit it."""
    from pianogen.recipe import resolve_recipe_path

    source = resolve_recipe_path(name)
    target = dest / source.name if dest.is_dir() else dest
    if target.exists():
        raise PianogenError(f"{target} already exists; not overwriting it")
    shutil.copyfile(source, target)
    click.echo(str(target))


@cli.group()
def data() -> None:
    """Corpora."""


@data.command(name="synth")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--minutes", default=6.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", default=0, show_default=True)
def data_synth(out_dir: Path, minutes: float, seed: int) -> None:
    """Write a synthetic piano corpus in MAESTRO's layout to OUT_DIR."""
    from pianogen.data.synth import write_corpus

    click.echo(str(write_corpus(out_dir, minutes=minutes, seed=seed)))


@cli.command()
@click.argument("recipe")
@overrides_argument
def tokenize(recipe: str, overrides: tuple[str, ...]) -> None:
    """Encode the recipe's corpus into the shared token cache (idempotent, resumable)."""
    from pianogen import load_recipe
    from pianogen.pipeline import build_codec, build_token_cache

    loaded = load_recipe(recipe, overrides)
    cache = build_token_cache(loaded, build_codec(loaded))
    click.echo(str(cache.dir))


@cli.group()
def codec() -> None:
    """Codecs: train one on piano audio, import a reference checkpoint."""


@codec.command(name="train")
@click.argument("recipe")
@overrides_argument
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint.")
def codec_train(recipe: str, overrides: tuple[str, ...], resume: bool) -> None:
    """Train a codec on the recipe's corpus."""
    from pianogen import load_recipe
    from pianogen.codec_train import train_codec

    click.echo(str(train_codec(load_recipe(recipe, overrides), resume=resume)))


@codec.command(name="import")
@click.argument("kind", type=click.Choice(["soundstream"]))
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
def codec_import(kind: str, checkpoint: Path, out: Path) -> None:
    """Convert the reference SoundStream .pt CHECKPOINT to OUT (.safetensors)."""
    from pianogen_soundstream.convert import import_reference

    import_reference(checkpoint, out)
    click.echo(str(out))


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
    from pianogen.pipeline import pick_device

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


@cli.command()
@click.argument("recipe")
@overrides_argument
@click.option("--resume", is_flag=True, help="Continue exactly where the last checkpoint left off.")
def train(recipe: str, overrides: tuple[str, ...], resume: bool) -> None:
    """Train a token model (tokenizes the corpus first when needed)."""
    from pianogen import load_recipe
    from pianogen.train import train as run_training

    run_dir = run_training(load_recipe(recipe, overrides), resume=resume)
    click.echo(str(run_dir))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--prompt", required=True, help="Audio file (any rate, mono or stereo), or SPLIT:N of the run's corpus.")
@click.option("--seconds", type=float, default=None, help="Continuation length [recipe: generate.seconds].")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output directory [RUN_DIR/generated].")
@click.option("--prompt-seconds", type=float, default=None, help="Seconds of the prompt used [recipe].")
@click.option("--temperature", type=click.FloatRange(min=0), default=None, help="0 = argmax [recipe].")
@click.option("--top-k", type=click.IntRange(min=0), default=None, help="0 = off [recipe].")
@click.option("--top-p", type=click.FloatRange(0, 1), default=None, help="0 = off; wins over top-k [recipe].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--num", type=click.IntRange(min=1), default=1, show_default=True,
              help="Continuations of the prompt, sampled as one batch.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--postfilter", "postfilters", multiple=True, metavar="NAME[:KEY=VALUE,...]",
              help="Replace the recipe's post-filters (repeatable; 'none' for none).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="Token-model weights and KV cache; bf16 halves the memory read per frame.")
@click.option("--compile", "compile_decode", is_flag=True,
              help="torch.compile the one-frame decode (CUDA graphs on CUDA; on CPU it is slower).")
@click.option("--device", default="auto", show_default=True)
def generate(run_dir: Path, prompt: str, seconds: float | None, out: Path | None, prompt_seconds: float | None,
             temperature: float | None, top_k: int | None, top_p: float | None, seed: int, num: int,
             checkpoint: str, postfilters: tuple[str, ...], precision: str, compile_decode: bool,
             device: str) -> None:
    """Continue a piano prompt with a trained run; writes WAVs, Mel PNGs and generation.json."""
    from pianogen import load_recipe
    from pianogen.generate import GenerationRequest
    from pianogen.generate import generate as run_generation
    from pianogen.recipe import parse_override

    if not (run_dir / "recipe.toml").is_file():
        raise PianogenError(f"{run_dir} is not a run directory (no recipe.toml); train one with pianogen train")
    defaults = load_recipe(run_dir / "recipe.toml").generate
    specs = None
    if postfilters:
        specs = []
        for text in postfilters:
            name, _, options = text.partition(":")
            if name != "none":
                spec = {"name": name}
                for item in filter(None, options.split(",")):
                    (key,), value = parse_override(item)
                    spec[key] = value
                specs.append(spec)
    request = GenerationRequest(
        prompt=prompt, seconds=defaults.seconds if seconds is None else seconds,
        out=out or run_dir / "generated",
        prompt_seconds=defaults.prompt_seconds if prompt_seconds is None else prompt_seconds,
        temperature=defaults.temperature if temperature is None else temperature,
        top_k=defaults.top_k if top_k is None else top_k, top_p=defaults.top_p if top_p is None else top_p,
        seed=seed, num=num, checkpoint=checkpoint, postfilters=specs, precision=precision,
        compile=compile_decode)
    report = run_generation(run_dir, request, device=device)
    for note in report["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"{request.out}  ({report['frames']} frames, {report['realtime_factor']:.2f}x real time)")


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write eval.json, report.md and PNGs here [RUN_DIR/eval].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--prompts", type=click.IntRange(min=1), default=4, show_default=True,
              help="Held-out prompts continued for the drift curves.")
@click.option("--prompt-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Prompt length [recipe: generate.prompt_seconds].")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Continuation length scored [recipe: generate.seconds].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def evaluate(run_dir: Path, split: str, out: Path | None, as_json: bool, prompts: int, prompt_seconds: float | None,
             seconds: float | None, seed: int, device: str) -> None:
    """Token, codec and continuation metrics of a trained run, each next to a floor to beat."""
    import json

    from pianogen.evaluate import evaluate as run_evaluation

    out = out or run_dir / "eval"
    report = run_evaluation(run_dir, split, out=out, n_prompts=prompts, prompt_seconds=prompt_seconds,
                            seconds=seconds, seed=seed, device=device, progress=not as_json)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    levels = range(report["levels"])
    click.echo(f"NLL per level (nats): model {_numbers(report['nll_per_level'], levels)} | unigram "
               f"{_numbers(report['unigram_nll_per_level'], levels)} | repeat "
               f"{_numbers(report['repeat_nll_per_level'], levels)}")
    click.echo(f"bits/s: model {report['bits_per_second']:.0f} | unigram {report['unigram_bits_per_second']:.0f} | "
               f"repeat {report['repeat_bits_per_second']:.0f}")
    click.echo(f"report: {out / 'report.md'}")


def _numbers(values: list[float], index: range) -> str:
    return " ".join(f"{values[i]:.3f}" for i in index)


@cli.command()
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--frames", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Frames generated per measurement.")
@click.option("--prompt-frames", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True, default=(1, 8), show_default=True,
              help="Generation batch sizes (repeatable).")
@click.option("--audio-seconds", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Audio per codec, synthesis and tokenization measurement.")
@click.option("--train-steps", type=click.IntRange(min=1), default=3, show_default=True,
              help="Optimizer steps timed per model size (after one warm-up step).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def bench(device: str, frames: int, prompt_frames: int, batches: tuple[int, ...], audio_seconds: float,
          train_steps: int, as_json: bool) -> None:
    """Speed of every stage in one run: training, KV-cached vs recomputed generation, codec, data."""
    import json

    from pianogen.bench import run_bench, summary_rows

    result = run_bench(device, frames, prompt_frames, batches, train_steps, audio_seconds, progress=not as_json)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"device: {result['device']}")
    for what, value in summary_rows(result):
        click.echo(f"{what}: {value}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="pianogen", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except (PianogenError, click.ClickException, OSError) as err:
        if debug:
            raise
        message = err.format_message() if isinstance(err, click.ClickException) else str(err)
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
