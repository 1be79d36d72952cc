"""The CLI under hostile-but-realistic input, on the tiny trained run of conftest.

Every failing case must end with exit 2, exactly one ``error:`` line on stderr, no traceback, and the
run directory byte for byte as it was. Commands run in-process (click's CliRunner around
``pianogen.commands.cli.main``); a subprocess is used only where a second process is the point.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import pianogen
from pianogen.commands import cli


class _Entry:
    """What CliRunner needs to call ``pianogen.commands.cli.main`` (exit codes and one-line errors included)."""

    name = "pianogen"

    def main(self, args, prog_name=None, **extra):
        cli.main(list(args))


def run_cli(*args: str):
    import warnings

    shown = warnings.showwarning
    try:
        return CliRunner().invoke(_Entry(), [str(a) for a in args])
    finally:
        warnings.showwarning = shown  # main() installs the one-line format; give pytest its own back


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_line_error(result, message: str, code: int = 2) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a run whose saved recipe points at the copy (the recipe records an absolute run.dir)."""
    shutil.copytree(run, dest)
    text = (dest / "recipe.toml").read_text()
    (dest / "recipe.toml").write_text(re.sub(r'(?m)^dir = ".*"$', f'dir = "{dest}"', text, count=1))
    return dest


def nan_wav(path: Path) -> Path:
    wav = np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32)
    wav[1234] = np.nan
    sf.write(path, wav, 8000, subtype="FLOAT")
    return path


def low_rate_wav(path: Path, rate: int = 100) -> Path:
    """Two seconds at ``rate`` Hz: readable audio far below any codec's rate."""
    sf.write(path, np.random.default_rng(0).uniform(-0.3, 0.3, 2 * rate).astype(np.float32), rate)
    return path


def pickle_pt(path: Path) -> Path:
    torch.save({"weight": torch.zeros(2), "hook": print}, path)  # unpickling it would import and call code
    return path


def codec_with_config(path: Path, config: str) -> Path:
    """A codec file whose metadata ``config`` is ``config``."""
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path), metadata={"codec": "soundstream", "config": config})
    return path


def text_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# (name, argv builder(run, tmp), message in the error line)
def one_sample_wav(path: Path) -> Path:
    sf.write(path, np.zeros(1, dtype=np.float32), 16000)
    return path


def run_codec(run: Path) -> str:
    """The codec file a trained run records in codec.json."""
    return json.loads((run / "codec.json").read_text())["path"]


READ_ONLY_CASES = [
    ("codec eval a one-sample file", lambda r, t: ["codec", "eval", run_codec(r), one_sample_wav(t / "one.wav"),
                                                   "--no-opus", "--no-notes"], "codec evaluation needs at least"),
    ("eval prompts 1000", lambda r, t: ["eval", r, "--prompts", "1000", "--out", t / "e"],
     "Invalid value for '--prompts': 1000 is not in the range 1<=x<=256"),
    ("prompt-seconds negative", lambda r, t: ["generate", r, "--prompt", "test:0", "--prompt-seconds", "-2"],
     "Invalid value for '--prompt-seconds'"),
    ("prompt-seconds zero", lambda r, t: ["generate", r, "--prompt", "test:0", "--prompt-seconds", "0"],
     "Invalid value for '--prompt-seconds'"),
    ("prompt-seconds nan", lambda r, t: ["generate", r, "--prompt", "test:0", "--prompt-seconds", "nan"],
     "not a finite number"),
    ("seconds nan", lambda r, t: ["generate", r, "--prompt", "test:0", "--seconds", "nan"], "not a finite number"),
    ("seconds huge", lambda r, t: ["generate", r, "--prompt", "test:0", "--seconds", "100000"],
     "not in the range 0<x<=3600"),
    ("temperature inf", lambda r, t: ["generate", r, "--prompt", "test:0", "--temperature", "inf"],
     "Invalid value for '--temperature': inf is not in the range 0<=x<=100"),
    ("top-p above 1", lambda r, t: ["generate", r, "--prompt", "test:0", "--top-p", "1.5"],
     "Invalid value for '--top-p'"),
    ("device banana", lambda r, t: ["generate", r, "--prompt", "test:0", "--device", "banana", "--out", t / "o"],
     "unknown device 'banana'"),
    ("out under a file", lambda r, t: ["generate", r, "--prompt", "test:0", "--out", r / "recipe.toml" / "o"],
     "cannot be created"),
    ("postfilter option type", lambda r, t: ["generate", r, "--prompt", "test:0", "--out", t / "o",
                                             "--postfilter", "lowpass:cutoff=abc"], "postfilter.cutoff must be float"),
    ("postfilter unknown", lambda r, t: ["generate", r, "--prompt", "test:0", "--out", t / "o",
                                         "--postfilter", "lowpas"], "did you mean 'lowpass'"),
    ("nan prompt", lambda r, t: ["generate", r, "--prompt", nan_wav(t / "nan.wav"), "--out", t / "o"],
     "1 NaN or infinite samples (the first at 0.154 s)"),
    ("eval seconds below a bin", lambda r, t: ["eval", r, "--seconds", "0.5"], "Invalid value for '--seconds'"),
    ("eval device banana", lambda r, t: ["eval", r, "--device", "banana", "--out", t / "e"], "unknown device"),
    ("model option type", lambda r, t: ["train", r / "recipe.toml", "--resume", 'model.d_model="abc"'],
     "model.d_model must be int, got 'abc'"),
    ("model option bare word", lambda r, t: ["train", r / "recipe.toml", "--resume", "model.dropout=high"],
     "model.dropout must be float, got 'high'"),
    ("lr nan", lambda r, t: ["train", r / "recipe.toml", "--resume", "train.lr=nan"], "train.lr must be a finite"),
    ("override a table", lambda r, t: ["train", r / "recipe.toml", "--resume", "run=3"],
     "must name a key inside a table"),
    ("override into a value", lambda r, t: ["train", r / "recipe.toml", "--resume", "train.lr.x=3"],
     "train.lr is a value, not a table"),
    ("binary recipe", lambda r, t: ["train", Path(sys.executable).resolve()], "is not a text file"),
    ("extend a finished run", lambda r, t: ["train", r / "recipe.toml", "--resume", "train.epochs=4"],
     "train.epochs 2 -> 4; a run's learning-rate schedule"),
    ("resume with another window", lambda r, t: ["train", r / "recipe.toml", "--resume", "data.window=64"],
     "data.window 32 -> 64"),
    ("huge window on a fresh run", lambda r, t: ["train", r / "recipe.toml", f"run.dir={t / 'fresh'}",
                                                 "data.window=100000"], "longer than the longest train piece"),
    ("seed 10^23", lambda r, t: ["generate", r, "--prompt", "test:0", "--seed", str(10**23), "--out", t / "o"],
     "Invalid value for '--seed': 100000000000000000000000 is not in the range 0<=x<=9223372036854775807"),
    ("seed negative", lambda r, t: ["generate", r, "--prompt", "test:0", "--seed", "-1", "--out", t / "o"],
     "Invalid value for '--seed'"),
    ("num 10^20", lambda r, t: ["generate", r, "--prompt", "test:0", "--num", str(10**20), "--out", t / "o"],
     "is not in the range 1<=x<=64"),
    ("num a million", lambda r, t: ["generate", r, "--prompt", "test:0", "--num", "1000000", "--out", t / "o"],
     "Invalid value for '--num': 1000000 is not in the range 1<=x<=64"),
    ("temperature 1000", lambda r, t: ["generate", r, "--prompt", "test:0", "--temperature", "1000"],
     "Invalid value for '--temperature'"),
    ("prompt-seconds over an hour", lambda r, t: ["generate", r, "--prompt", "test:0", "--prompt-seconds", "3601"],
     "not in the range 0<x<=3600"),
    ("eval seed 10^23", lambda r, t: ["eval", r, "--seed", str(10**23), "--out", t / "e"],
     "Invalid value for '--seed'"),
    ("run.seed 10^23", lambda r, t: ["train", r / "recipe.toml", "--resume", f"run.seed={10**23}"],
     "run.seed must be <= 9223372036854775807, got 100000000000000000000000"),
    ("run.seed negative", lambda r, t: ["train", r / "recipe.toml", f"run.dir={t / 'fresh'}", "run.seed=-5"],
     "run.seed must be >= 0, got -5"),
    ("betas above 1", lambda r, t: ["train", r / "recipe.toml", f"run.dir={t / 'fresh'}", "train.betas=[1.5,0.95]"],
     "train.betas must be 2 numbers, each >= 0 and < 1, got [1.5, 0.95]"),
    ("one beta", lambda r, t: ["train", r / "recipe.toml", f"run.dir={t / 'fresh'}", "train.betas=[0.9]"],
     "train.betas must be 2 numbers, each >= 0 and < 1, got [0.9]"),
    ("betas of text", lambda r, t: ["train", r / "recipe.toml", f"run.dir={t / 'fresh'}", "train.betas=['a','b']"],
     "train.betas must be list[float]"),
    ("a 100 Hz prompt", lambda r, t: ["generate", r, "--prompt", low_rate_wav(t / "low.wav"), "--out", t / "o"],
     "low.wav is sampled at 100 Hz; a take needs at least 4000 Hz"),
    ("a 1 Hz prompt", lambda r, t: ["generate", r, "--prompt", low_rate_wav(t / "low.wav", 1), "--out", t / "o"],
     "is sampled at 1 Hz"),
    ("cp /etc/passwd", lambda r, t: ["cp", "/etc/passwd", t / "o"], "not copying /etc/passwd: it is not a recipe"),
    ("cp a binary", lambda r, t: ["cp", Path(sys.executable).resolve(), t / "o"], "is not a text file"),
    ("cp a TOML that is no recipe", lambda r, t: ["cp", text_file(t / "x.toml", "[server]\nport = 80\n"), t / "o"],
     "it is not a recipe"),
    ("cp onto the run's recipe", lambda r, t: ["cp", "demo", r / "recipe.toml"], "already exists; not overwriting"),
    ("import a pickle with code", lambda r, t: ["codec", "import", "soundstream", pickle_pt(t / "evil.pt"), t / "o"],
     "refusing to load"),
    ("codec config not JSON", lambda r, t: ["tokenize", r / "recipe.toml", f"run.dir={t / 'fresh'}",
                                            f"codec.checkpoint={codec_with_config(t / 'c.safetensors', '{no')}"],
     "its metadata 'config' is not JSON"),
    ("codec config of bad types", lambda r, t: [
        "tokenize", r / "recipe.toml", f"run.dir={t / 'fresh'}",
        "codec.checkpoint=" + str(codec_with_config(t / "c.safetensors", '{"channels": "many"}'))],
     "its metadata config 'channels' must be int, got 'many'"),
    ("codec config a list", lambda r, t: ["tokenize", r / "recipe.toml", f"run.dir={t / 'fresh'}",
                                          f"codec.checkpoint={codec_with_config(t / 'c.safetensors', '[1]')}"],
     "is not a JSON object"),
    ("crossfade 2 s", lambda r, t: ["generate", r, "--prompt", "test:0", "--crossfade", "2"],
     "Invalid value for '--crossfade'"),
    ("top-k negative", lambda r, t: ["generate", r, "--prompt", "test:0", "--top-k", "-1"],
     "Invalid value for '--top-k'"),
    ("checkpoint middle", lambda r, t: ["generate", r, "--prompt", "test:0", "--checkpoint", "middle"],
     "Invalid value for '--checkpoint'"),
    ("precision fp8", lambda r, t: ["generate", r, "--prompt", "test:0", "--precision", "fp8"],
     "Invalid value for '--precision'"),
    ("from nan", lambda r, t: ["generate", r, "--prompt", "test:0", "--from", "nan"], "not a finite number"),
    ("seconds zero", lambda r, t: ["generate", r, "--prompt", "test:0", "--seconds", "0"],
     "Invalid value for '--seconds'"),
    ("prompt and extend", lambda r, t: ["generate", r, "--prompt", "test:0", "--extend", r / "recipe.toml"],
     "give either --prompt (a recording to continue) or --extend"),
    ("neither prompt nor extend", lambda r, t: ["generate", r, "--out", t / "o"], "give either --prompt"),
    ("extend a non-take", lambda r, t: ["generate", r, "--extend", r / "recipe.toml", "--out", t / "o"],
     "--extend wants a take_<i>.wav written by pianogen generate"),
    ("prompt piece out of range", lambda r, t: ["generate", r, "--prompt", "test:999", "--out", t / "o"],
     "prompt test:999: the test split has"),
    ("prompt file missing", lambda r, t: ["generate", r, "--prompt", t / "nope.wav", "--out", t / "o"],
     "prompt not found"),
    ("generate from a non-run", lambda r, t: ["generate", t, "--prompt", "test:0", "--out", t / "o"],
     "is not a run directory (no recipe.toml)"),
    ("lr negative", lambda r, t: ["train", r / "recipe.toml", f"run.dir={t / 'fresh'}", "train.lr=-1"],
     "train.lr must be > 0"),
    ("schedule typo", lambda r, t: ["train", r / "recipe.toml", f"run.dir={t / 'fresh'}", "train.schedule=cosin"],
     "did you mean 'cosine'"),
    ("beta of exactly 1", lambda r, t: ["train", r / "recipe.toml", f"run.dir={t / 'fresh'}",
                                        "train.betas=[0.9,1.0]"], "each >= 0 and < 1, got [0.9, 1.0]"),
    ("data.seed negative", lambda r, t: ["tokenize", "demo", f"run.dir={t / 'fresh'}", "data.seed=-1"],
     "data.seed must be >= 0"),
    ("serve port 70000", lambda r, t: ["serve", r, "--port", "70000"], "Invalid value for '--port'"),
    ("cp an unknown recipe", lambda r, t: ["cp", "demi", t / "o"], "recipe not found: demi"),
    ("encodec file missing", lambda r, t: ["codec", "get", "encodec", t / "nope.th", "--out", t / "o"],
     "weights file not found"),
    ("encodec named by its own hash", lambda r, t: [
        "codec", "get", "encodec", text_file(t / f"evilenc-{hashlib.sha256(b'evil').hexdigest()}.th", "evil"),
        "--out", t / "o"], "a hash in a file's name does not verify it"),
]


@pytest.mark.parametrize("build, message", [c[1:] for c in READ_ONLY_CASES], ids=[c[0] for c in READ_ONLY_CASES])
def test_bad_input_is_one_line_and_changes_nothing(trained_run, tmp_path, monkeypatch, build, message):
    monkeypatch.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))  # the run's token cache, no re-encoding
    before = snapshot(trained_run)
    assert_one_line_error(run_cli(*build(trained_run, tmp_path)), message)
    assert snapshot(trained_run) == before
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "o").exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickle_with_code(path: Path) -> None:
    torch.save({"optimizer": {}, "hook": print}, path)  # unpickling it would import and call code


# (name, damage(run), argv builder(run, tmp), message)
DAMAGED_CASES = [
    ("truncated weights", lambda r: _truncate(r / "checkpoints/best/model.safetensors"),
     lambda r, t: ["generate", r, "--prompt", "test:0", "--out", t / "o"],
     "best/model.safetensors is damaged"),
    ("random weights file", lambda r: (r / "checkpoints/best/model.safetensors").write_bytes(bytes(range(256)) * 9),
     lambda r, t: ["eval", r, "--out", t / "o"], "use the 'last' checkpoint instead"),
    ("truncated meta", lambda r: _truncate(r / "checkpoints/last/meta.json"),
     lambda r, t: ["generate", r, "--prompt", "test:0", "--checkpoint", "last", "--out", t / "o"],
     "last/meta.json is damaged"),
    ("truncated trainer state", lambda r: _truncate(r / "checkpoints/last/trainer_state.pt"),
     lambda r, t: ["train", r / "recipe.toml", "--resume"], "last/trainer_state.pt is damaged"),
    ("pickle with code", lambda r: _pickle_with_code(r / "checkpoints/last/trainer_state.pt"),
     lambda r, t: ["train", r / "recipe.toml", "--resume"], "refusing to load"),
    ("recipe.toml moved away, resumed with a new lr", lambda r: (r / "recipe.toml").rename(r / "moved.toml"),
     lambda r, t: ["train", r / "moved.toml", "--resume", "train.lr=5e-3"], "recipe.toml is missing: --resume"),
    ("another model size", lambda r: (r / "recipe.toml").write_text(
        (r / "recipe.toml").read_text().replace("d_model = 32", "d_model = 64")),
     lambda r, t: ["generate", r, "--prompt", "test:0", "--out", t / "o"],
     "another model size (d_model 32 vs 64"),
]


@pytest.mark.parametrize("damage, build, message", [c[1:] for c in DAMAGED_CASES], ids=[c[0] for c in DAMAGED_CASES])
def test_damaged_run_files_are_named_with_the_way_out(trained_run, tmp_path, monkeypatch, damage, build, message):
    monkeypatch.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))
    run = copy_run(trained_run, tmp_path / "run")
    damage(run)
    before = snapshot(run)
    result = run_cli(*build(run, tmp_path))
    assert_one_line_error(result, message)
    assert "weights_only" not in result.stderr  # torch's advice to unpickle anyway is not passed on
    assert snapshot(run) == before
    assert not (tmp_path / "o").exists()


class BadFilters:
    """Post-filters that fail each way a plugin's can: in its factory, in its call, with another shape, with NaN."""

    @staticmethod
    @pianogen.hookimpl
    def register_postfilters(register):
        def broken_factory(**options):
            raise ValueError("cannot build this filter")

        def raising(**options):
            def call(wav, sample_rate):
                raise ZeroDivisionError("division by zero inside the filter")
            return call

        register("broken_factory", broken_factory)
        register("raising", raising)
        register("reshaping", lambda **options: lambda wav, sample_rate: wav[..., ::2])
        register("nan", lambda **options: lambda wav, sample_rate: wav * float("nan"))
        register("not_a_tensor", lambda **options: lambda wav, sample_rate: wav.numpy())


POSTFILTER_CASES = [
    ("factory raises", "broken_factory", "post-filter 'broken_factory' could not be built: ValueError: cannot build"),
    ("call raises", "raising", "post-filter 'raising' failed: ZeroDivisionError: division by zero inside the filter"),
    ("another shape", "reshaping", "post-filter 'reshaping' returned [1, 1, "),
    ("NaN samples", "nan", "post-filter 'nan' returned "),
    ("not a tensor", "not_a_tensor", "post-filter 'not_a_tensor' returned ndarray for audio [1, 1, "),
]


@pytest.mark.parametrize("name, message", [c[1:] for c in POSTFILTER_CASES], ids=[c[0] for c in POSTFILTER_CASES])
def test_a_failing_post_filter_is_one_line_and_writes_nothing(trained_run, tmp_path, monkeypatch, fresh_registry,
                                                               name, message):
    monkeypatch.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))
    fresh_registry.register_module(BadFilters, "bad-filters")
    before = snapshot(trained_run)
    result = run_cli("generate", trained_run, "--prompt", "test:0", "--out", tmp_path / "o", "--postfilter", name)
    assert_one_line_error(result, message)
    if name == "nan":
        assert "NaN or infinite samples of " in result.stderr and "nothing was written" in result.stderr
    assert snapshot(trained_run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, no temp folder beside it


def test_resume_trims_a_cut_metrics_line_and_works_from_another_directory(tmp_path, monkeypatch, tiny_codec_path,
                                                                          tiny_corpus):
    from tests.conftest import tiny_recipe

    recipe = tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus, run={"dir": "rel/run"},
                         train={"epochs": 1, "max_steps": 4, "log_every": 1, "save_every": 2})
    monkeypatch.chdir(tmp_path)
    assert run_cli("train", recipe).exit_code == 0
    run = tmp_path / "rel/run"
    assert f'dir = "{run}"' in (run / "recipe.toml").read_text()  # recorded absolute
    lines = (run / "metrics.jsonl").read_text().splitlines()
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 0, "step": 5, "spl')  # what a kill mid-append leaves
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # settings that cannot change the trajectory may differ on resume
    result = run_cli("train", run / "recipe.toml", "--resume", "train.log_every=2", "generate.seconds=1.0")
    assert result.exit_code == 0, result.output
    assert (run / "metrics.jsonl").read_text().splitlines() == lines
    assert not (elsewhere / "runs").exists()


def _wait_for_owner(lock: Path, timeout: float = 120.0) -> None:
    """Until the lock file names its owner (it is created empty, then filled)."""
    deadline = time.monotonic() + timeout
    while not (lock.read_text() if lock.exists() else "").endswith("}"):
        assert time.monotonic() < deadline, f"{lock} never named its owner"
        time.sleep(0.05)


def test_a_second_training_of_a_run_dir_is_refused(tmp_path, tiny_codec_path, tiny_corpus):
    from tests.conftest import tiny_recipe

    recipe = tiny_recipe(tmp_path, tiny_codec_path, tiny_corpus, train={"epochs": 1, "log_every": 1})
    first = subprocess.Popen([sys.executable, "-m", "pianogen", "train", str(recipe)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_owner(tmp_path / "run/.lock")
        second = run_cli("train", recipe)
        assert_one_line_error(second, f"{tmp_path / 'run'} is in use by another training (pid {first.pid} on ")
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    steps = [line for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(steps) == len(set(steps)) > 0  # every step logged once, by the one training
    assert not (tmp_path / "run/.lock").exists()


LOCK_HOLDER = """
import sys
from pianogen.training.runlock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_the_lock_of_a_killed_training_is_taken_over(tmp_path):
    import json
    import os
    import signal

    from pianogen.errors import PianogenError
    from pianogen.training.runlock import run_lock

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "locked"
    assert json.loads((run / ".lock").read_text())["pid"] == holder.pid
    with pytest.raises(PianogenError, match=f"pid {holder.pid}"), run_lock(run):
        pass
    os.kill(holder.pid, signal.SIGKILL)  # no clean-up runs: the lock file stays, naming a dead process
    holder.wait()
    assert (run / ".lock").exists()
    with run_lock(run):
        assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    assert not (run / ".lock").exists()


def test_damaged_cached_tokens_are_encoded_again_and_a_complete_cache_is_only_read(trained_run, tmp_path,
                                                                                   monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(trained_run.parent / "home", home)
    monkeypatch.setenv("PIANOGEN_HOME", str(home))
    # the run's own cache (other tests may have cached other corpora in the shared home: eval --corpus)
    (cache,) = [c for c in (home / "tokens").iterdir()
                if json.loads((c / "manifest.json").read_text())["data"].get("source") == "maestro"]
    files = sorted(cache.glob("*.npy"))
    originals = {f: f.read_bytes() for f in files}
    manifest = (cache / "manifest.json").stat()
    files[0].write_bytes(b"")  # was: 'error: aborted', exit 130, as if Ctrl-C
    _truncate(files[1])
    result = run_cli("tokenize", trained_run / "recipe.toml")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("is damaged") == 2 and "Traceback" not in result.stderr
    assert {f: f.read_bytes() for f in files} == originals  # re-encoded to the very same tokens
    again = (cache / "manifest.json").stat()
    assert (again.st_ino, again.st_mtime_ns) == (manifest.st_ino, manifest.st_mtime_ns)  # not rewritten


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root writes through read-only permissions")
def test_tokenize_works_on_a_read_only_cache(trained_run, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(trained_run.parent / "home", home)
    monkeypatch.setenv("PIANOGEN_HOME", str(home))
    for path in (home / "tokens").rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    (home / "tokens").chmod(0o555)
    try:
        assert run_cli("tokenize", trained_run / "recipe.toml").exit_code == 0
    finally:
        for path in [home / "tokens", *(home / "tokens").rglob("*")]:
            path.chmod(0o755)
