"""The ``pianogen`` command line: a thin layer over the Python API.

Every user error ends in one line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import click

from pianogen.errors import PianogenError

overrides_argument = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
MAX_SECONDS = 3600.0  # a continuation longer than an hour is a typo far more often than a wish


class Finite(click.FloatRange):
    """A FloatRange that also refuses nan and inf (nan passes every range check: all comparisons are False)."""

    name = "finite number"

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
        if command is None and _add_plugin_commands():
            command = super().get_command(ctx, name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        _add_plugin_commands()
        return super().list_commands(ctx)


def _add_plugin_commands() -> int:
    from pianogen import registry

    return registry.add_commands(cli)


@click.group(cls=PluginCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="pianogen")
def cli(debug: bool) -> None:
    """PianoGen: continue piano performances from raw audio."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List registered plugins (and any that failed to load)."""
    from pianogen import registry

    rows = [
        {"kind": r.kind, "name": r.name, "plugin": r.plugin, "package": r.package, "version": r.version,
         "use_as": r.name if registry.registered(kind).get(r.name) == r else qualified}
        for kind in registry.KINDS for qualified, r in registry.every_registration(kind).items()
    ]
    failed = [{"plugin": f.plugin, "package": f.package, "error": f.error} for f in registry.failures()]
    clashes = [{"kind": c.kind, "name": c.name, "winner": c.winner, "shadowed": c.shadowed}
               for c in registry.clashes()]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": failed, "clashes": clashes}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("kind", "name", "plugin", "package", "version", "use as")
    for row in rows:
        table.add_row(*row.values())
    console = Console()
    console.print(table)
    for f in failed:
        console.print(f"[red]failed[/red] {f['plugin']} ({f['package']}): {f['error']}")
    for c in clashes:
        console.print(f"[yellow]clash[/yellow] {c['kind']} '{c['name']}' is registered by {c['winner']} and "
                      f"{c['shadowed']}: '{c['name']}' selects {c['winner']}'s, '{c['shadowed']}:{c['name']}' "
                      f"the other")


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
@click.option("--minutes", default=6.0, show_default=True, type=Finite(min=0, min_open=True))
@click.option("--seed", default=0, show_default=True)
def data_synth(out_dir: Path, minutes: float, seed: int) -> None:
    """Write a synthetic piano corpus in MAESTRO's layout to OUT_DIR."""
    from pianogen.data.synth import write_corpus

    click.echo(str(write_corpus(out_dir, minutes=minutes, seed=seed)))


@data.command(name="get")
@click.argument("dataset", type=click.Choice(["maestro"]))
@click.argument("more_years", nargs=-1, metavar="")  # so `--years 2017 2018` works as well as 2017,2018
@click.option("--version", "version", type=click.Choice(["3.0.0"]), default="3.0.0", show_default=True)
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


@cli.command()
@click.argument("recipe")
@overrides_argument
def tokenize(recipe: str, overrides: tuple[str, ...]) -> None:
    """Encode the recipe's corpus into the shared token cache (idempotent, resumable)."""
    from pianogen import load_recipe
    from pianogen.codec_prepare import train_missing_codec
    from pianogen.pipeline import build_codec, build_token_cache

    loaded = load_recipe(recipe, overrides)
    train_missing_codec(loaded)
    cache = build_token_cache(loaded, build_codec(loaded))
    click.echo(str(cache.dir))


@cli.group()
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


@cli.command()
@click.argument("recipe")
@overrides_argument
@click.option("--resume", is_flag=True, help="Continue exactly where the last checkpoint left off.")
@click.option("--fetch", is_flag=True, help="First fetch the MAESTRO audio and codec weights the recipe lacks.")
def train(recipe: str, overrides: tuple[str, ...], resume: bool, fetch: bool) -> None:
    """Train a token model (tokenizes the corpus first when needed)."""
    from pianogen import load_recipe
    from pianogen.fetch.needs import ensure
    from pianogen.train import train as run_training

    loaded = load_recipe(recipe, overrides)
    ensure(loaded, fetch=fetch)  # one line with the exact fetch command when data or weights are missing
    run_dir = run_training(loaded, resume=resume)
    click.echo(str(run_dir))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--prompt", default=None,
              help="Your recording (any format soundfile reads, any rate and channels), or SPLIT:N of the corpus.")
@click.option("--from", "window_start", type=Finite(), default=None,
              help="Prompt window start, seconds (negative = from the end) [the end minus --prompt-seconds].")
@click.option("--to", "window_end", type=Finite(), default=None,
              help="Prompt window end = where the take continues, seconds (negative = from the end) [the end].")
@click.option("--extend", type=click.Path(path_type=Path), default=None,
              help="Continue OUT/take_<i>.wav of an earlier generation from its saved codes (instead of --prompt).")
@click.option("--seconds", type=SECONDS, default=None, help="Continuation length [recipe: generate.seconds].")
@click.option("--out", type=click.Path(path_type=Path), default=None, callback=output_dir,
              help="Output directory [RUN_DIR/generated/<prompt>-NNN; with --extend, beside the take].")
@click.option("--prompt-seconds", type=SECONDS, default=None, help="Prompt length in seconds [recipe].")
@click.option("--crossfade", type=Finite(0, 1), default=0.05, show_default=True,
              help="Seconds of equal-power crossfade into the continuation, ending where the prompt ends.")
@click.option("--temperature", type=Finite(min=0), default=None, help="0 = argmax [recipe].")
@click.option("--top-k", type=click.IntRange(min=0), default=None, help="0 = off [recipe].")
@click.option("--top-p", type=Finite(0, 1), default=None, help="0 = off; wins over top-k [recipe].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--num", type=click.IntRange(min=1), default=1, show_default=True,
              help="Continuations of the prompt, sampled as one batch.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--postfilter", "postfilters", multiple=True, metavar="NAME[:KEY=VALUE,...]",
              help="Replace the recipe's post-filters (repeatable; 'none' for none).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8"]), default="fp32", show_default=True,
              help="Token-model weights: bf16 halves the memory read per frame, int8 (CPU) quarters it.")
@click.option("--compile", "compile_decode", is_flag=True,
              help="torch.compile the one-frame decode (CUDA graphs on CUDA; on CPU it is slower).")
@click.option("--stream", is_flag=True,
              help="Write the continuation WAVs chunk by chunk while sampling (no post-filters).")
@click.option("--device", default="auto", show_default=True)
def generate(run_dir: Path, prompt: str | None, window_start: float | None, window_end: float | None,
             extend: Path | None, seconds: float | None, out: Path | None, prompt_seconds: float | None,
             crossfade: float, temperature: float | None, top_k: int | None, top_p: float | None, seed: int,
             num: int, checkpoint: str, postfilters: tuple[str, ...], precision: str, compile_decode: bool,
             stream: bool, device: str) -> None:
    """Continue your recording (or an earlier take) with a trained run.

    Writes take_<i>.wav (your recording up to the prompt's end, then the continuation, at its own rate
    and channels), continuation_<i>.wav, full_<i>.wav (codec re-synthesis), codes_<i>.safetensors,
    mel_<i>.png and generation.json.
    """
    from pianogen.generate import GenerationRequest, next_free_dir
    from pianogen.generate import generate as run_generation
    from pianogen.generate_options import postfilter_specs, with_recipe_defaults

    if (prompt is None) == (extend is None):
        raise PianogenError("give either --prompt (a recording to continue) or --extend (a take to continue)")
    sampling = with_recipe_defaults(run_dir, dict(seconds=seconds, prompt_seconds=prompt_seconds,
                                                  temperature=temperature, top_k=top_k, top_p=top_p))
    if out is None:  # a fresh folder each time: an earlier take is never overwritten
        out = (next_free_dir(extend.parent, f"{extend.stem}-extended") if extend else
               next_free_dir(run_dir / "generated", Path(prompt).stem.replace(":", "_")))
    request = GenerationRequest(
        prompt=prompt or "", out=out, **sampling, seed=seed, num=num, checkpoint=checkpoint,
        postfilters=postfilter_specs(postfilters), precision=precision, compile=compile_decode,
        start=window_start, end=window_end, extend=str(extend) if extend else None, crossfade=crossfade)
    if stream:
        from pianogen.stream import stream_generate

        report = stream_generate(run_dir, request, device=device)
        click.echo(f"first audio after {report['time_to_first_audio_s']:.2f} s", err=True)
    else:
        report = run_generation(run_dir, request, device=device)
    for note in report["notes"]:
        click.echo(f"note: {note}", err=True)
    start_s, end_s = report["prompt_window_s"]
    click.echo(f"{request.out}  (prompt {start_s:.2f}-{end_s:.2f} s, {report['frames']} frames, "
               f"{report['realtime_factor']:.2f}x real time)")


@cli.command()
@click.argument("runs", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (keep it local).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port.")
@click.option("--device", default="auto", show_default=True)
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve(runs: Path, host: str, port: int, device: str, verbose: bool) -> None:
    """A web page to continue your recording: RUNS is a run directory or a folder of them."""
    from pianogen.device import pick_device
    from pianogen.serve import serve as run_server

    pick_device(device)  # a bad --device is a one-line error now, not on the first generation
    run_server(runs, host, port, device, verbose)


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, callback=output_dir,
              help="Write eval.json, report.md and PNGs here [RUN_DIR/eval].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--prompts", type=click.IntRange(min=1), default=4, show_default=True,
              help="Held-out prompts continued for the drift curves.")
@click.option("--prompt-seconds", type=SECONDS, default=None,
              help="Prompt length [recipe: generate.prompt_seconds].")
@click.option("--seconds", type=Finite(min=1, max=MAX_SECONDS), default=None,
              help="Continuation length scored, in 1 s drift bins [recipe: generate.seconds].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8"]), default="fp32", show_default=True,
              help="Also score the tokens at this precision beside fp32 (its NLL cost); continuations use it.")
@click.option("--device", default="auto", show_default=True)
def evaluate(run_dir: Path, split: str, out: Path | None, as_json: bool, prompts: int, prompt_seconds: float | None,
             seconds: float | None, seed: int, precision: str, device: str) -> None:
    """Token, codec and continuation metrics of a trained run, each next to a floor to beat."""
    import json

    from pianogen.evaluate import evaluate as run_evaluation

    out = out or run_dir / "eval"
    report = run_evaluation(run_dir, split, out=out, n_prompts=prompts, prompt_seconds=prompt_seconds,
                            seconds=seconds, seed=seed, device=device, progress=not as_json, precision=precision)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    levels = range(report["levels"])
    click.echo(f"NLL per level (nats): model {_numbers(report['nll_per_level'], levels)} | unigram "
               f"{_numbers(report['unigram_nll_per_level'], levels)} | repeat "
               f"{_numbers(report['repeat_nll_per_level'], levels)}")
    click.echo(f"bits/s: model {report['bits_per_second']:.0f} | unigram {report['unigram_bits_per_second']:.0f} | "
               f"repeat {report['repeat_bits_per_second']:.0f}")
    if "precision" in report:
        p = report["precision"]
        click.echo(f"NLL per level at {p['name']}: {_numbers(p['nll_per_level'], levels)} | fp32 "
                   f"{_numbers(p['fp32_nll_per_level'], levels)} ({p['nll_change']:+.2%})")
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
@click.option("--audio-seconds", type=Finite(min=1), default=30.0, show_default=True,
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)  # one line, without the source line Python adds


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    warnings.showwarning = _show_warning
    try:
        cli.main(args=args, prog_name="pianogen", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort as aborted:
        # click turns any EOFError into Abort; one from reading a file is a bug to show, not a Ctrl-C
        if isinstance(aborted.__context__, EOFError):
            if debug:
                raise aborted.__context__ from None
            click.echo(f"error: unexpected end of data: {aborted.__context__} (--debug shows where)", err=True)
            sys.exit(1)
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except (PianogenError, click.ClickException, OSError) as err:
        if debug:
            raise
        message = err.format_message() if isinstance(err, click.ClickException) else str(err)
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
