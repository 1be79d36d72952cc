"""The ``pianogen`` command line: a thin layer over the Python API.

The root group and the run commands (train, generate, eval, serve, bench) are here; the ``codec``
and ``data`` groups live in cli_codec.py and cli_data.py, the shared option types in cli_common.py.
Every user error ends in one line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import click

from pianogen.commands.cli_codec import codec
from pianogen.commands.cli_common import (
    MAX_PROMPT_PRIOR,
    MAX_SECONDS,
    MAX_TEMPERATURE,
    NUM,
    SECONDS,
    SEED,
    Finite,
    PluginCommands,
    output_dir,
    overrides_argument,
)
from pianogen.commands.cli_data import data
from pianogen.errors import PianogenError


@click.group(cls=PluginCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="pianogen")
def cli(debug: bool) -> None:
    """PianoGen: continue piano performances from raw audio."""


cli.add_command(codec)
cli.add_command(data)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List registered plugins (and any that failed to load)."""
    from pianogen import registry

    registry.add_commands(click.get_current_context().find_root().command)  # so command clashes are listed too
    rows = [
        {"kind": r.kind, "name": r.name, "plugin": r.plugin, "package": r.package, "version": r.version,
         "use_as": r.name if registry.registered(kind).get(r.name) == r else qualified}
        for kind in registry.KINDS for qualified, r in registry.every_registration(kind).items()
    ]
    failed = [{"plugin": f.plugin, "package": f.package, "error": f.error} for f in registry.failures()]
    clashes = [{"kind": c.kind, "name": c.name, "winner": c.winner, "shadowed": c.shadowed, "use_other": c.use_other}
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
                      f"{c['shadowed']}: '{c['name']}' selects {c['winner']}'s, '{c['use_other']}' the other")


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
    """Copy built-in recipe NAME (or a recipe file) to DEST (a file or a directory) to edit it."""
    from pianogen.paths import atomic_path
    from pianogen.recipe import load_recipe, resolve_recipe_path

    source = resolve_recipe_path(name)
    try:
        load_recipe(source)  # a recipe, or nothing: `cp /etc/passwd x.toml` must not make one of any file
    except PianogenError as err:
        raise PianogenError(f"not copying {name}: it is not a recipe ({err})") from None
    target = dest / source.name if dest.is_dir() else dest
    if target.exists():
        raise PianogenError(f"{target} already exists; not overwriting it")
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    click.echo(str(target))


@cli.command()
@click.argument("recipe")
@overrides_argument
def tokenize(recipe: str, overrides: tuple[str, ...]) -> None:
    """Encode the recipe's corpus into the shared token cache (idempotent, resumable)."""
    from pianogen import load_recipe
    from pianogen.pipeline import build_codec, build_token_cache
    from pianogen.training.codec_prepare import train_missing_codec

    loaded = load_recipe(recipe, overrides)
    train_missing_codec(loaded)
    cache = build_token_cache(loaded, build_codec(loaded))
    click.echo(str(cache.dir))


@cli.command()
@click.argument("recipe")
@overrides_argument
@click.option("--resume", is_flag=True, help="Continue exactly where the last checkpoint left off.")
@click.option("--fetch", is_flag=True, help="First fetch the MAESTRO audio and codec weights the recipe lacks.")
def train(recipe: str, overrides: tuple[str, ...], resume: bool, fetch: bool) -> None:
    """Train a token model (tokenizes the corpus first when needed)."""
    from pianogen import load_recipe
    from pianogen.fetch.needs import ensure
    from pianogen.training.precheck import check_train, next_command
    from pianogen.training.resume import follow_moved_run
    from pianogen.training.train import train as run_training

    loaded = load_recipe(recipe, overrides)
    if resume:
        loaded = follow_moved_run(loaded, overrides)
    check_train(loaded, fetch=fetch)  # every problem it can see, at once, before any work
    ensure(loaded, fetch=fetch)  # one line with the exact fetch command when data or weights are missing
    run_dir = run_training(loaded, resume=resume)
    click.echo(str(run_dir))
    click.echo(f"next: {next_command(run_dir)}", err=True)


@cli.command()
@click.argument("run_dir", metavar="RUN")
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
              help="Output directory [RUN/generated/<prompt>-NNN (a built-in run: ./<name>-generated/...); "
                   "with --extend, beside the take].")
@click.option("--prompt-seconds", type=SECONDS, default=None, help="Prompt length in seconds [recipe].")
@click.option("--crossfade", type=Finite(0, 1), default=0.05, show_default=True,
              help="Seconds of equal-power crossfade into the continuation, ending where the prompt ends.")
@click.option("--temperature", type=Finite(0, MAX_TEMPERATURE), default=None, help="0 = argmax [recipe].")
@click.option("--top-k", type=click.IntRange(min=0), default=None, help="0 = off [recipe].")
@click.option("--top-p", type=Finite(0, 1), default=None, help="0 = off; wins over top-k [recipe].")
@click.option("--prompt-prior", type=Finite(0, MAX_PROMPT_PRIOR), default=None,
              help="How strongly the continuation keeps to the sounds (notes, chords) the prompt used: where the "
                   "model changes a code, the weight of the prompt's own code frequencies in which code it changes "
                   "to; 0 = the model alone [recipe].")
@click.option("--quiet-temperature-scale", type=Finite(0, MAX_TEMPERATURE), default=None,
              help="The temperature's factor after a prompt whose last 3 s strike no note (a sound left ringing), "
                   "rising to 1 at one note a second; 1 = every prompt alike [recipe].")
@click.option("--ring-out/--no-ring-out", default=None,
              help="After a prompt whose last seconds strike no note, fade the continuation as the prompt's sound "
                   "was dying: a piano string nobody strikes again only decays [recipe].")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Makes the takes reproducible.")
@click.option("--num", type=NUM, default=1, show_default=True,
              help="Continuations of the prompt, sampled as one batch.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="best: the lowest validation loss; last: the latest saved.")
@click.option("--postfilter", "postfilters", multiple=True, metavar="NAME[:KEY=VALUE,...]",
              help="Replace the recipe's post-filters (repeatable; 'none' for none).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8"]), default="fp32", show_default=True,
              help="Token-model weights: bf16 halves the memory read per frame, int8 (CPU) quarters it.")
@click.option("--compile", "compile_decode", is_flag=True,
              help="torch.compile the one-frame decode. CUDA: CUDA graphs, 2.8-3.9x eager at batch 1 on an H100 "
                   "(fp32 and bf16); CPU: 0.99-1.07x eager, rarely worth its 5-15 s compile.")
@click.option("--stream", is_flag=True,
              help="Write the continuation WAVs chunk by chunk while sampling (post-filtered as it streams when the "
                   "filters are causal), then the same files as one-shot generation.")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda when there is one), cpu, cuda or cuda:N.")
def generate(run_dir: str, prompt: str | None, window_start: float | None, window_end: float | None,
             extend: Path | None, seconds: float | None, out: Path | None, prompt_seconds: float | None,
             crossfade: float, temperature: float | None, top_k: int | None, top_p: float | None,
             prompt_prior: float | None, quiet_temperature_scale: float | None, ring_out: bool | None, seed: int,
             num: int,
             checkpoint: str, postfilters: tuple[str, ...],
             precision: str, compile_decode: bool, stream: bool, device: str) -> None:
    """Continue your recording (or an earlier take) with a trained run: RUN is its folder, or the name of a
    built-in run (piano).

    Writes take_<i>.wav (your recording up to the prompt's end, then the continuation, at its own rate
    and channels), continuation_<i>.wav, full_<i>.wav (codec re-synthesis), codes_<i>.safetensors,
    mel_<i>.png and generation.json.
    """
    from pianogen.generation.generate import GenerationRequest, next_free_dir
    from pianogen.generation.generate import generate as run_generation
    from pianogen.generation.generate_options import postfilter_specs, with_recipe_defaults
    from pianogen.runs import resolve_run

    if (prompt is None) == (extend is None):
        raise PianogenError("give either --prompt (a recording to continue) or --extend (a take to continue)")
    run = resolve_run(run_dir)
    sampling = with_recipe_defaults(run.path, dict(seconds=seconds, prompt_seconds=prompt_seconds,
                                                  temperature=temperature, top_k=top_k, top_p=top_p,
                                                  prompt_prior=prompt_prior,
                                                  quiet_temperature_scale=quiet_temperature_scale,
                                                  ring_out=ring_out))
    if out is None:  # a fresh folder each time: an earlier take is never overwritten
        out = (next_free_dir(extend.parent, f"{extend.stem}-extended") if extend else
               next_free_dir(run.default_out("generated"), Path(prompt).stem.replace(":", "_")))
        if run.builtin and not extend:
            click.echo(f"note: built-in run '{run.name}' is read-only: writing to {out}", err=True)
    request = GenerationRequest(
        prompt=prompt or "", out=out, **sampling, seed=seed, num=num, checkpoint=checkpoint,
        postfilters=postfilter_specs(postfilters), precision=precision, compile=compile_decode,
        start=window_start, end=window_end, extend=str(extend) if extend else None, crossfade=crossfade)
    if stream:
        from pianogen.generation.stream import stream_generate

        report = stream_generate(run, request, device=device)
        click.echo(f"first audio after {report['stream']['time_to_first_audio_s']:.2f} s", err=True)
    else:
        report = run_generation(run, request, device=device)
    for note in report["notes"]:
        click.echo(f"note: {note}", err=True)
    if report["continuation_is"]:
        click.echo(f"the continuation is {report['continuation_is']}", err=True)
    for line in heard_lines(report.get("note_metrics")):
        click.echo(line, err=True)
    start_s, end_s = report["prompt_window_s"]
    click.echo(f"{request.out}  (prompt {start_s:.2f}-{end_s:.2f} s, {report['frames']} frames, "
               f"{report['realtime_factor']:.2f}x real time)")


def heard_lines(metrics: dict | None) -> list[str]:
    """One line per take: what the transcriber heard in the continuation, beside the drone floor."""
    if not metrics:
        return []
    if "unavailable" in metrics:
        return [f"note: notes not measured: {metrics['unavailable']}"]
    lines = []
    for i, take in enumerate(metrics["takes"]):
        c, d = take["continuation"], take["floors"]["drone"]
        lines.append(f"take {i}: {c['notes_per_second']:.1f} notes/s ({c['struck_notes_per_second']:.1f} struck), "
                     f"{c['distinct_pitches']:.0f} distinct pitches, "
                     f"pitch classes {c['pitch_class_correlation']:+.2f} with the prompt's, key {c['key']} (prompt "
                     f"{take['prompt']['key']}); a drone on the prompt: {d['notes_per_second']:.1f} notes/s, "
                     f"{d['distinct_pitches']:.0f} pitches")
    return lines


@cli.command()
@click.argument("runs", default="piano")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (keep it local).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port.")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda when there is one), cpu, cuda or cuda:N.")
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve(runs: str, host: str, port: int, device: str, verbose: bool) -> None:
    """A web page to continue your recording: RUNS is a run directory, a folder of them, or a built-in run's
    name [piano, the model that ships with the package]."""
    from pianogen.device import pick_device
    from pianogen.serving.serve_http import serve as run_server

    pick_device(device)  # a bad --device is a one-line error now, not on the first generation
    run_server(runs, host, port, device, verbose)


MAX_EVAL_PROMPTS = 256  # each is a generation and a transcription: more is hours of CPU, never what was meant


@cli.command(name="eval")
@click.argument("run_dir", metavar="RUN")
@click.option("--split", type=click.Choice(["train", "validation", "test", "all"]), default="test",
              show_default=True, help="The corpus split whose pieces are scored (all: every piece, with --corpus).")
@click.option("--corpus", default=None, metavar="DIR|SOURCE",
              help="Score on another corpus than the run's: a folder (MAESTRO layout, as `data render` writes, or "
                   "plain audio) or a data source's name (salamander); tokens cached under $PIANOGEN_HOME.")
@click.option("--out", type=click.Path(path_type=Path), default=None, callback=output_dir,
              help="Write eval.json, report.md and PNGs here [RUN/eval, RUN/eval-<corpus>; a built-in run: "
                   "./<name>-eval...].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--prompts", type=click.IntRange(min=1, max=MAX_EVAL_PROMPTS), default=4, show_default=True,
              help="Held-out prompts continued for the drift curves (fewer if the split holds fewer: said).")
@click.option("--prompt-seconds", type=SECONDS, default=None,
              help="Prompt length [recipe: generate.prompt_seconds].")
@click.option("--seconds", type=Finite(min=1, max=MAX_SECONDS), default=None,
              help="Continuation length scored, in 1 s drift bins [recipe: generate.seconds].")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the sampling and the noise floors.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8"]), default="fp32", show_default=True,
              help="Also score the tokens at this precision beside fp32 (its NLL cost); continuations use it.")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda when there is one), cpu, cuda or cuda:N.")
def evaluate(run_dir: str, split: str, corpus: str | None, out: Path | None, as_json: bool, prompts: int,
             prompt_seconds: float | None, seconds: float | None, seed: int, precision: str, device: str) -> None:
    """Token, codec and continuation metrics of a trained run (RUN: its folder, or a built-in run's name), each
    next to a floor to beat."""
    import json

    from pianogen.evaluation.evaluate import evaluate as run_evaluation
    from pianogen.runs import resolve_run

    run = resolve_run(run_dir)
    if corpus is not None:
        from pianogen.evaluation.eval_corpus import corpus_table, default_out_name

        out = out or run.default_out(default_out_name(corpus_table(corpus)))
    out = out or run.default_out("eval")
    report = run_evaluation(run_dir, split, out=out, n_prompts=prompts, prompt_seconds=prompt_seconds,
                            seconds=seconds, seed=seed, device=device, progress=not as_json, precision=precision,
                            corpus=corpus)
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
@click.option("--prompt-frames", type=click.IntRange(min=1), default=250, show_default=True,
              help="Frames of prompt before the timed generation.")
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
