"""train_codec on a few seconds of piano-like audio: it improves, resumes, and stops cleanly on NaN."""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

import pianogen
import pianogen.training.codec_segments as codec_segments
import pianogen.training.codec_train as codec_train
from pianogen.errors import PianogenError
from pianogen.training.codec_train import checkpoint_root, legacy_state_path, metrics_path, train_codec, trained_steps
from pianogen.training.metrics import codec_reconstruction

SR = 8000

pytestmark = pytest.mark.usefixtures("one_thread")


def piano_like(seconds: float, seed: int) -> np.ndarray:
    """Notes made of decaying harmonic partials, one new note every 0.25 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for onset in np.arange(0, seconds, 0.25):
        f0 = 110 * 2 ** (rng.integers(0, 30) / 12)
        env = np.where(t >= onset, np.exp(-(t - onset) * 4), 0.0)
        for h in range(1, 6):
            if h * f0 < SR / 2:
                out += env * np.sin(2 * math.pi * h * f0 * (t - onset)) / h**1.5
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture
def recipe_file(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"piece{i}.wav", piano_like(2.0, i), SR)
    path = tmp_path / "codec_tiny.toml"
    path.write_text(f"""
[data]
source = "folder"
root = "{audio}"
split_ratios = [1.0, 0.0, 0.0]

[codec]
name = "soundstream"
checkpoint = "$PIANOGEN_HOME/codecs/tiny.safetensors"
sample_rate = {SR}
channels = 4
dim = 16
strides = [2, 4, 5]
n_levels = 4
codebook_size = 16
kmeans_iters = 5

[codec_train]
steps = 30
batch_size = 4
segment_seconds = 0.25
lr = 3e-3
log_every = 10
save_every = 10
""")
    return path


def _quality(path, wavs) -> dict[str, dict[str, float]]:
    return codec_reconstruction(pianogen.get_codec("soundstream", checkpoint=str(path)), wavs, levels=(1, "all"))


def test_training_improves_reconstruction_and_resumes(recipe_file, isolated_home):
    wavs = [torch.from_numpy(piano_like(1.0, 7))[None]]
    recipe = pianogen.load_recipe(str(recipe_file))
    recipe.codec_train.steps = 0  # writes the seeded initial weights: the "untrained" baseline
    untrained = train_codec(recipe, progress=False)
    before = _quality(untrained, wavs)
    out = train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=20"]), progress=False, force=True)
    assert out == isolated_home / "codecs" / "tiny.safetensors"
    out = train_codec(pianogen.load_recipe(str(recipe_file)), resume=True, progress=False)
    after = _quality(out, wavs)
    assert after["all"]["mel_l1"] < before["all"]["mel_l1"]
    assert after["all"]["stft"] < before["all"]["stft"]
    assert after["all"]["mel_l1"] <= after["1"]["mel_l1"] + 0.05  # more levels never hurt much
    rows = [json.loads(line) for line in metrics_path(out).read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30]  # the resumed run appended
    assert out.with_name("tiny.loss.png").stat().st_size > 1000
    assert trained_steps(out) == 30
    # every level count decodes after quantizer-dropout training
    codec = pianogen.get_codec("soundstream", checkpoint=str(out))
    codes = codec.encode(wavs[0][None])
    for k in range(1, 5):
        assert torch.isfinite(codec.decode(codes[:, :k])).all()


def test_nan_loss_stops_and_keeps_last_checkpoint(recipe_file, monkeypatch):
    calls = {"n": 0}
    real_mel = codec_train.mel_l1

    def mel_then_nan(*args, **kwargs):
        calls["n"] += 1
        value = real_mel(*args, **kwargs)
        return value * float("nan") if calls["n"] > 12 else value

    monkeypatch.setattr(codec_train, "mel_l1", mel_then_nan)
    recipe = pianogen.load_recipe(str(recipe_file), ["codec_train.save_every=5"])
    with pytest.raises(PianogenError, match="diverged.*step 12.*step 10\\) is kept"):
        train_codec(recipe, progress=False)
    out = pianogen.paths.home() / "codecs" / "tiny.safetensors"
    assert trained_steps(out) == 10
    pianogen.get_codec("soundstream", checkpoint=str(out))


def test_resume_and_output_path_errors(recipe_file):
    with pytest.raises(PianogenError, match="nothing to resume"):
        train_codec(pianogen.load_recipe(str(recipe_file)), resume=True, progress=False)
    recipe = pianogen.load_recipe(str(recipe_file))
    recipe.codec.options = {}
    with pytest.raises(PianogenError, match="codec_train.out or codec.checkpoint"):
        train_codec(recipe, progress=False)


def test_a_recipe_trains_its_missing_codec_and_finishes_a_killed_one(recipe_file, tmp_path, tiny_corpus):
    from pianogen.pipeline import build_codec
    from pianogen.training.codec_prepare import train_missing_codec
    from tests.conftest import tiny_recipe

    token_recipe = tiny_recipe(tmp_path, "$PIANOGEN_HOME/codecs/tiny.safetensors", tiny_corpus,
                               codec={"train_recipe": str(recipe_file)})
    out = pianogen.paths.home() / "codecs" / "tiny.safetensors"
    with pytest.raises(PianogenError, match=r"codec checkpoint .* does not exist yet: train it with `pianogen codec "
                                            r"train .*`"):
        build_codec(pianogen.load_recipe(token_recipe))  # builders only build: eval/generate never train
    train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=10"]), progress=False)  # "killed"
    train_missing_codec(pianogen.load_recipe(token_recipe), progress=False)
    codec = build_codec(pianogen.load_recipe(token_recipe))
    assert trained_steps(out) == 30
    assert codec.identity() == pianogen.get_codec("soundstream", checkpoint=str(out)).identity()
    stamp = out.stat().st_mtime_ns
    train_missing_codec(pianogen.load_recipe(token_recipe), progress=False)  # finished: reused as it is
    assert out.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("pool_seconds", [None, 1.0])
def test_resume_continues_exactly_like_an_unbroken_run(recipe_file, isolated_home, monkeypatch, pool_seconds):
    """Python, NumPy and torch RNGs, the audio pool, optimizer and codebook buffers all come back; with a pool
    of one of the two pieces (1.0 s), the pool rotates every step and its period comes back too."""
    if pool_seconds is not None:
        monkeypatch.setattr(codec_segments, "POOL_SECONDS", pool_seconds)
    straight = train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=20",
                                                                   "codec_train.out=$PIANOGEN_HOME/a.safetensors"]),
                           progress=False)
    broken = ["codec_train.out=$PIANOGEN_HOME/b.safetensors"]
    train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=10", *broken]), progress=False)
    resumed = train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=20", *broken]), resume=True,
                          progress=False)
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed run differs"
    rows = [json.loads(line) for line in metrics_path(resumed).read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20]
    assert len(rows[-1]["codes_used"]) == 4 and all(1 <= n <= 16 for n in rows[-1]["codes_used"])
    assert all(p >= 1 for p in rows[-1]["perplexity"])
    state = torch.load(checkpoint_root(resumed) / "last" / "trainer_state.pt", weights_only=True)
    assert len(state["pool"][""]) == (1 if pool_seconds else 2) and state["rotation_periods"] == {"": 1}


def test_a_cosine_schedule_decays_the_lr_to_zero(recipe_file, isolated_home):
    """The lr is a function of the step alone (nothing to restore on resume); the default stays constant."""
    cosine = ["codec_train.schedule=cosine", "codec_train.warmup=0.1", "codec_train.log_every=5"]
    straight = train_codec(pianogen.load_recipe(str(recipe_file), [
        *cosine, "codec_train.steps=20", "codec_train.out=$PIANOGEN_HOME/a.safetensors"]), progress=False)
    lrs = [json.loads(line)["lr"] for line in metrics_path(straight).read_text().splitlines()]
    assert lrs == sorted(lrs, reverse=True) and len(set(lrs)) == 4
    assert lrs[0] < 3e-3 and lrs[-1] < 0.05 * 3e-3  # below the peak after warm-up, near zero at the end
    constant = train_codec(pianogen.load_recipe(str(recipe_file), [
        "codec_train.steps=10", "codec_train.log_every=5", "codec_train.out=$PIANOGEN_HOME/c.safetensors"]),
        progress=False)
    assert {json.loads(line)["lr"] for line in metrics_path(constant).read_text().splitlines()} == {3e-3}


def test_ddp_two_gloo_processes_train_in_step(recipe_file, isolated_home):
    """torchrun, 2 CPU processes: each draws half the batch; codebook statistics are all-reduced, and the
    trainer checks at the end that both processes hold the same weights and codebooks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIANOGEN_HOME": str(isolated_home)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29531", "-m", "pianogen", "codec", "train", str(recipe_file), "codec_train.steps=12",
                           "codec_train.log_every=6"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = isolated_home / "codecs" / "tiny.safetensors"
    rows = [json.loads(line) for line in metrics_path(out).read_text().splitlines()]
    assert [r["step"] for r in rows] == [6, 12] and all(math.isfinite(r["loss"]) for r in rows)
    assert trained_steps(out) == 12
    odd = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29532", "-m", "pianogen", "codec", "train", str(recipe_file), "codec_train.batch_size=3",
                          "--force"],
                         env=env, capture_output=True, text=True)
    assert odd.returncode != 0 and "does not split over 2 processes" in odd.stderr


def test_loss_weights_from_the_recipe_make_the_logged_loss(recipe_file, isolated_home):
    """The logged loss is the recipe's weighted sum of the logged parts, for weights other than 1."""
    weights = {"wav": 0.1, "mel": 2.0, "stft": 0.5, "commit": 3.0}
    out = train_codec(pianogen.load_recipe(str(recipe_file), [
        "codec_train.steps=10", *(f"codec_train.{k}_weight={v}" for k, v in weights.items())]), progress=False)
    row = json.loads(metrics_path(out).read_text().splitlines()[-1])
    expected = weights["wav"] * row["wav_l1"] + sum(weights[k] * row[k] for k in ("mel", "stft", "commit"))
    assert row["loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(row["loss"] - (row["wav_l1"] + row["mel"] + row["stft"] + row["commit"])) > 1e-2  # not unit weights


@pytest.mark.parametrize("layout", ["0.1", "0.2"])
def test_a_trainer_state_file_of_an_older_version_resumes_exactly(recipe_file, isolated_home, layout):
    """Before the checkpoint folder, a codec's trainer state was one file beside it, ``<stem>.trainer.pt``, the
    weights inside; pianogen 0.1 kept the random generators under keys of their own (torch_rng, python_rng, ...).
    Either resumes bit-exact, and the first checkpoint then replaces the file by the folder."""
    straight = train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=20",
                                                                   "codec_train.out=$PIANOGEN_HOME/a.safetensors"]),
                           progress=False)
    broken = ["codec_train.out=$PIANOGEN_HOME/b.safetensors"]
    killed = train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=10", *broken]), progress=False)
    folder = checkpoint_root(killed) / "last"
    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    meta = json.loads((folder / "meta.json").read_text())
    rng, weights = state["rng"], load_file(folder / "model.safetensors")
    if layout == "0.1":
        old = {"step": state["step"], "opt": state["opt"], "seed": state["seed"], "torch_rng": rng["torch"],
               "python_rng": rng["python"], "numpy_rng": rng["numpy"], "pool": state["pool"]}
    else:
        old = {**state, "codec": weights, "settings": json.dumps(meta["settings"])}
    torch.save(old, legacy_state_path(killed))
    shutil.rmtree(checkpoint_root(killed))
    assert trained_steps(killed) == 10
    with pytest.raises(PianogenError, match=r"--resume would change .*codec_train.lr"):
        if layout == "0.2":
            train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.lr=0.5", *broken]), resume=True,
                        progress=False)
        else:
            raise PianogenError("--resume would change codec_train.lr (0.1 states kept no settings)")
    resumed = train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=20", *broken]), resume=True,
                          progress=False)
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed run differs"
    assert not legacy_state_path(resumed).exists() and trained_steps(resumed) == 20


def _files(out) -> dict[str, bytes]:
    """Every file a codec's training wrote, by name."""
    return {str(p.relative_to(out.parent)): p.read_bytes() for p in sorted(out.parent.rglob("*")) if p.is_file()}


def test_a_trained_codec_is_never_overwritten_unasked_nor_resumed_with_other_settings(recipe_file, isolated_home):
    out = train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=10"]), progress=False)
    before = _files(out)
    assert {"tiny.safetensors", "tiny.metrics.jsonl", "tiny.checkpoints/last/model.safetensors",
            "tiny.checkpoints/last/trainer_state.pt", "tiny.checkpoints/last/meta.json"} <= set(before)
    with pytest.raises(PianogenError, match=r"already holds a codec trained for 10 steps: --resume .* --force"):
        train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=2"]), progress=False)
    with pytest.raises(PianogenError, match=r"--resume would change .*codec_train.lr 0.003 -> 0.5"):
        train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.lr=0.5"]), resume=True, progress=False)
    cosine = ["codec_train.schedule=cosine", "codec_train.steps=20"]  # a schedule laid out for another length
    with pytest.raises(PianogenError, match=r"--resume would change .*codec_train.schedule"):
        train_codec(pianogen.load_recipe(str(recipe_file), cosine), resume=True, progress=False)
    assert _files(out) == before
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out.with_name(f".tiny.safetensors.tmp{int(dead.stdout)}")  # a killed writer's 0-byte temp file
    stale.write_bytes(b"")
    train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=2"]), progress=False, force=True)
    assert not stale.exists()
    assert trained_steps(out) == 2


def test_a_second_training_of_the_same_codec_is_refused_while_the_first_runs(recipe_file, isolated_home):
    from pianogen.training.runlock import file_lock

    out = isolated_home / "codecs" / "tiny.safetensors"
    out.parent.mkdir(parents=True)
    with file_lock(out.with_name("tiny.safetensors.lock")):  # as a training in another process holds it
        with pytest.raises(PianogenError, match=r"tiny.safetensors is being trained by another process \(pid "):
            train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=2"]), progress=False)
    assert not out.exists()


class Killed(BaseException):
    """What a kill looks like to the training: it stops where it is (not an Exception: nothing catches it)."""


def _kill_at_write(patch: pytest.MonkeyPatch, n: int) -> dict[str, list[str]]:
    """Make the ``n``-th write of the training's files (a file written, renamed or removed; the codec file
    exported) raise ``Killed`` before it happens; returns the list of writes seen so far."""
    import shutil as shutil_module

    from pianogen_soundstream.model import SoundStream

    from pianogen.training import checkpoint

    seen: dict[str, list[str]] = {"writes": []}

    def counted(what, real):
        def write(*args, **kwargs):
            seen["writes"].append(what)
            if len(seen["writes"]) == n:
                raise Killed
            return real(*args, **kwargs)
        return write

    patch.setattr(checkpoint, "save_file", counted("model.safetensors", checkpoint.save_file))
    patch.setattr(checkpoint.torch, "save", counted("trainer_state.pt", torch.save))
    patch.setattr(pathlib.Path, "write_text", counted("meta.json", pathlib.Path.write_text))
    patch.setattr(pathlib.Path, "rename", counted("rename", pathlib.Path.rename))
    patch.setattr(shutil_module, "rmtree", counted("rmtree", shutil_module.rmtree))
    patch.setattr(SoundStream, "save", counted("codec file", SoundStream.save))
    return seen


def test_a_kill_between_any_two_writes_of_a_checkpoint_resumes_exactly(recipe_file, isolated_home):
    """A checkpoint is a folder written beside the last one and swapped in, then the codec file is exported from
    it. A kill before each of those writes in turn (those of the second checkpoint, the first being complete)
    leaves a training that --resume finishes bit-exact, the codec file and the checkpoint agreeing."""
    settings = ["codec_train.steps=4", "codec_train.save_every=2", "codec_train.log_every=1"]
    straight = load_file(train_codec(pianogen.load_recipe(str(recipe_file), [
        *settings, "codec_train.out=$PIANOGEN_HOME/a.safetensors"]), progress=False))
    broken = pianogen.load_recipe(str(recipe_file), [*settings, "codec_train.out=$PIANOGEN_HOME/b.safetensors"])
    with pytest.MonkeyPatch.context() as patch:  # count the writes of an unbroken training
        seen = _kill_at_write(patch, 0)
        train_codec(broken, progress=False, force=True)
    writes = seen["writes"]
    first = writes.index("codec file") + 1  # the first checkpoint is whole; the second one's writes follow
    assert writes[first:] == ["rmtree", "model.safetensors", "trainer_state.pt", "meta.json", "rmtree", "rename",
                              "rename", "rmtree", "codec file"], writes
    broken_out = pianogen.paths.expand(broken.codec_train.out)
    for n in range(first + 1, len(writes) + 1):
        shutil.rmtree(checkpoint_root(broken_out))
        with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
            _kill_at_write(patch, n)
            train_codec(broken, progress=False, force=True)
        resumed = train_codec(broken, resume=True, progress=False)
        b = load_file(resumed)
        assert straight.keys() == b.keys() and all(torch.equal(straight[k], b[k]) for k in b), \
            f"killed before write {n} ({writes[n - 1]}): the resumed run differs"
        assert trained_steps(broken_out) == 4
        assert [r["step"] for r in map(json.loads, metrics_path(resumed).read_text().splitlines())] == [1, 2, 3, 4]


def test_a_decoder_trained_alone_keeps_the_codes_and_the_identity(recipe_file, isolated_home):
    base = train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.steps=10"]), progress=False)
    before = base.read_bytes()
    out = isolated_home / "codecs" / "tiny_decoder.safetensors"
    decoder_recipe = pianogen.load_recipe(str(recipe_file), ["codec_train.train=decoder", f"codec_train.out={out}",
                                                             "codec_train.steps=20"])
    assert train_codec(decoder_recipe, progress=False) == out
    assert base.read_bytes() == before  # the codec it started from is never written
    old, new = (pianogen.get_codec("soundstream", checkpoint=str(path)) for path in (base, out))
    old_state, new_state = old.state_dict(), new.state_dict()
    token_keys = [k for k in old_state if k.startswith(("encoder.", "quantizer."))]
    assert token_keys and all(torch.equal(old_state[k], new_state[k]) for k in token_keys)
    assert any(not torch.equal(old_state[k], new_state[k]) for k in old_state if k.startswith("decoder."))
    wav = torch.from_numpy(piano_like(1.0, 7))[None, None]
    assert torch.equal(old.encode(wav), new.encode(wav)) and old.identity() == new.identity()
    assert new.recognizes(old.identity()) and not new.recognizes(old.former_identities()[0])
    wavs = [wav[0]]
    assert _quality(out, wavs)["all"]["mel_l1"] < _quality(base, wavs)["all"]["mel_l1"]
    assert trained_steps(out) == 20
    # resumed with the recorded settings only; the recorded settings of a whole-codec training never name it
    with pytest.raises(PianogenError, match="codec_train.train 'decoder' -> 'unset'"):
        train_codec(pianogen.load_recipe(str(recipe_file), [f"codec_train.out={out}", "codec_train.steps=20"]),
                    resume=True, progress=False)


def test_a_decoder_training_needs_a_trained_codec_and_another_file(recipe_file, isolated_home):
    with pytest.raises(PianogenError, match="codec.checkpoint must name one"):
        train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.train=decoder",
                                                            "codec_train.out=/tmp/x.safetensors"]), progress=False)
    recipe = pianogen.load_recipe(str(recipe_file))
    recipe.codec_train.steps = 0  # the seeded initial weights: a codec file to start from
    train_codec(recipe, progress=False)
    with pytest.raises(PianogenError, match="set codec_train.out to another path"):
        train_codec(pianogen.load_recipe(str(recipe_file), ["codec_train.train=decoder"]), progress=False)
    with pytest.raises(PianogenError, match="codec_train.train must be one of"):
        pianogen.load_recipe(str(recipe_file), ["codec_train.train=encoder"])


def test_a_missing_decoder_codec_trains_the_codec_it_starts_from_first(recipe_file, isolated_home):
    from pianogen.training.codec_prepare import train_missing_codec

    base = isolated_home / "codecs" / "tiny.safetensors"
    decoder_file = recipe_file.with_name("decoder.toml")
    decoder_out = base.with_name("tiny_dec.safetensors")
    decoder_file.write_text(recipe_file.read_text().replace(
        'checkpoint = "$PIANOGEN_HOME/codecs/tiny.safetensors"',
        f'checkpoint = "$PIANOGEN_HOME/codecs/tiny.safetensors"\ntrain_recipe = "{recipe_file}"').replace(
        "[codec_train]\nsteps = 30", f'[codec_train]\ntrain = "decoder"\nout = "{decoder_out}"\nsteps = 10'))
    token_recipe = pianogen.load_recipe(str(decoder_file))  # stands for a token recipe: only its [codec] is read
    token_recipe.codec.options["checkpoint"] = str(decoder_out)
    token_recipe.codec.train_recipe = str(decoder_file)
    train_missing_codec(token_recipe, progress=False)
    assert trained_steps(base) == 30 and trained_steps(decoder_out) == 10
    trained = [pianogen.get_codec("soundstream", checkpoint=str(p)) for p in (base, decoder_out)]
    assert trained[0].identity() == trained[1].identity()
    looping = decoder_file.with_name("looping.toml")
    looping.write_text(decoder_file.read_text().replace(f'train_recipe = "{recipe_file}"',
                                                        f'train_recipe = "{looping}"'))
    token_recipe.codec.train_recipe = str(looping)
    with pytest.raises(PianogenError, match="needs itself to be trained first"):
        train_missing_codec(token_recipe, progress=False)
