"""Built-in runs: a plugin ships a trained run, RUN names it anywhere, continue_audio works in memory, and
nothing is ever written into the package; the shipped files are checked against SHA256SUMS."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

import pianogen
from pianogen.errors import PianogenError
from pianogen.runs import SUMS, pack_run, resolve_run, verify_sums


def snapshot(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def packed(trained_run, tmp_path_factory):
    """The tiny trained run, packed as a plugin ships one (recipe, codec, best weights, SHA256SUMS)."""
    return pack_run(trained_run, tmp_path_factory.mktemp("package") / "tiny")


@pytest.fixture
def builtin(packed, fresh_registry, monkeypatch, tmp_path):
    """``tiny`` (the packed run) and ``ghost`` (a folder that is not there) registered as built-in runs by an
    in-process plugin; the current directory is a scratch folder."""
    plugin = types.ModuleType("tiny_runs")

    @pianogen.hookimpl
    def register_runs(register):
        register("tiny", packed)
        register("ghost", lambda: packed.parent / "ghost")

    plugin.register_runs = register_runs
    fresh_registry.register_module(plugin, "tiny_runs", package="pianogen-tiny")
    monkeypatch.chdir(tmp_path)
    before = snapshot(packed)
    yield packed
    assert snapshot(packed) == before, "a built-in run's folder was written to"


def main(*args) -> tuple[int, str]:
    """The command line in this process (so the in-process plugin is seen): exit code and stderr."""
    import contextlib
    import io

    from pianogen.commands.cli import main as cli_main

    err, shown = io.StringIO(), warnings.showwarning
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            cli_main([str(a) for a in args])
        code = 0
    except SystemExit as done:
        code = done.code
    finally:
        warnings.showwarning = shown
    return code, err.getvalue()


def test_pack_run_ships_a_folder_that_loads_from_anywhere(packed, tmp_path):
    assert sorted(p.relative_to(packed).as_posix() for p in packed.rglob("*") if p.is_file()) == [
        SUMS, "checkpoints/best/meta.json", "checkpoints/best/model.safetensors", "codec.safetensors", "recipe.toml"]
    assert 'checkpoint = "$RUN/codec.safetensors"' in (packed / "recipe.toml").read_text()
    moved = shutil.copytree(packed, tmp_path / "elsewhere")  # $RUN is wherever the folder is
    from pianogen.pipeline import load_run

    recipe, codec, _, meta = load_run(moved)
    assert recipe.codec.options["checkpoint"] == str(moved / "codec.safetensors") and meta["step"] > 0
    with pytest.raises(PianogenError, match="already exists"):
        pack_run(moved, moved)


def test_a_changed_missing_or_unlisted_file_is_refused(packed, tmp_path):
    run = shutil.copytree(packed, tmp_path / "run")
    verify_sums(run)
    data = bytearray((run / "codec.safetensors").read_bytes())
    data[-1] ^= 1
    (run / "codec.safetensors").write_bytes(bytes(data))
    with pytest.raises(PianogenError, match=r"codec.safetensors has sha256 .* refusing to load"):
        pianogen.continue_audio(torch.zeros(8000), 8000, run=run)
    shutil.copyfile(packed / "codec.safetensors", run / "codec.safetensors")
    (run / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(PianogenError, match="extra.safetensors is not listed"):
        verify_sums(run)
    (run / "extra.safetensors").unlink()
    (run / "checkpoints/best/meta.json").unlink()
    with pytest.raises(PianogenError, match="meta.json is not listed|meta.json is missing"):
        verify_sums(run)


def test_resolving_run_names(builtin, tmp_path):
    assert resolve_run("tiny").builtin and resolve_run("tiny").path == builtin
    (tmp_path / "tiny").mkdir()  # a folder of that name wins: it is what the user pointed at
    assert not resolve_run("tiny").builtin
    with pytest.raises(PianogenError, match=r"nor a built-in run \(did you mean 'tiny'\?\); built-in runs: "):
        resolve_run("tinny")
    with pytest.raises(PianogenError, match="built-in run 'ghost' is not installed in this copy: .*ghost "
                                            r"\(registered by pianogen-tiny\) does not exist"):
        resolve_run("ghost")


def test_missing_or_misspelt_builtin_is_one_line_on_the_command_line(builtin):
    for args, message in [(["generate", "ghost", "--prompt", "test:0"], "built-in run 'ghost' is not installed"),
                          (["eval", "ghost"], "built-in run 'ghost' is not installed"),
                          (["generate", "tinny", "--prompt", "test:0"], "did you mean 'tiny'")]:
        code, err = main(*args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_the_shipped_piano_run_is_registered_and_checked(fresh_registry):
    from pianogen_pretrained import PIANO

    entry = fresh_registry.registered("run")["piano"]
    assert entry.package == "pianogen"
    if not (PIANO / "recipe.toml").is_file():  # a copy without the trained files: said in one line
        with pytest.raises(PianogenError, match="built-in run 'piano' is not installed in this copy"):
            resolve_run("piano")
        return
    verify_sums(PIANO)
    assert sum(p.stat().st_size for p in PIANO.rglob("*") if p.is_file()) <= 30 * 2**20


def test_generate_a_builtin_writes_to_the_current_folder_never_the_package(builtin, tmp_path):
    from pianogen.data.audio import save_audio
    from pianogen.generation.generate import GenerationRequest, generate

    save_audio(tmp_path / "mine.wav", np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32), 16000)
    code, err = main("generate", "tiny", "--prompt", "mine.wav", "--seconds", "0.2")
    assert code == 0, err
    out = tmp_path / "tiny-generated" / "mine-001"
    assert f"read-only: writing to {out}" in err and (out / "take_0.wav").is_file()
    report = json.loads((out / "generation.json").read_text())
    assert report["builtin_run"] == "tiny" and report["frames"] == 40
    with pytest.raises(PianogenError, match="built-in run 'tiny' is read-only"):
        generate("tiny", GenerationRequest(prompt="mine.wav", seconds=0.2, out=builtin / "generated"), progress=False)
    code, err = main("eval", "tiny", "--out", builtin / "eval")
    assert code == 2 and "built-in run 'tiny' is read-only" in err


def test_eval_a_builtin_by_name(builtin, tmp_path):
    code, err = main("eval", "tiny", "--prompts", "1", "--seconds", "1", "--prompt-seconds", "0.5")
    assert code == 0, err
    report = json.loads((tmp_path / "tiny-eval" / "eval.json").read_text())
    assert report["run_dir"] == str(builtin) and report["continuation"]["n_prompts"] == 1


def test_continue_audio_in_memory(builtin, tmp_path, monkeypatch):
    from pianogen.generation.continuation import LoadedRuns
    from pianogen.generation.generate import GenerationRequest, generate

    cache = LoadedRuns()
    monkeypatch.setattr("pianogen.generation.continuation.LOADED", cache)
    stereo = torch.from_numpy(np.random.default_rng(1).uniform(-0.3, 0.3, (2, 22050)).astype(np.float32))
    hot = dict(temperature=2.0, top_k=0)  # a flat distribution: two seeds surely differ
    wav, rate = pianogen.continue_audio(stereo, 44100, seconds=0.25, run="tiny", seed=5, **hot)
    assert rate == 8000 and wav.shape == (2, 50 * 40) and wav.dtype == torch.float32
    assert torch.equal(wav[0], wav[1]) and wav.abs().max() > 0
    again, _ = pianogen.continue_audio(stereo, 44100, seconds=0.25, run="tiny", seed=5, **hot)
    other, _ = pianogen.continue_audio(stereo, 44100, seconds=0.25, run="tiny", seed=6, **hot)
    assert torch.equal(wav, again) and not torch.equal(wav, other)
    assert cache.loads == 1  # loaded once, kept
    mono, rate = pianogen.continue_audio(stereo[0].numpy(), 44100, run=builtin)  # a path; the recipe's defaults
    assert mono.shape == (1, 100 * 40) and rate == 8000  # [generate] seconds = 0.5
    # what generate writes as continuation_0.wav for the same prompt, seed and sampling (16-bit rounding)
    sf.write(tmp_path / "stereo.wav", stereo.numpy().T, 44100, subtype="FLOAT")
    generate("tiny", GenerationRequest(prompt=str(tmp_path / "stereo.wav"), seconds=0.25, out=tmp_path / "g",
                                       prompt_seconds=0.5, seed=5, **hot), progress=False)
    written, _ = sf.read(tmp_path / "g/continuation_0.wav")
    np.testing.assert_allclose(written, wav[0].numpy(), atol=1 / 32768 + 1e-6)


@pytest.mark.parametrize("wav, rate, message", [
    (torch.zeros(4000, dtype=torch.int16), 8000, "must hold floats"),
    (torch.zeros(1, 2, 4000), 8000, "must be \\[channels, samples\\]"),
    (torch.zeros(4000, 2), 8000, "transpose"),
    (torch.full((4000,), float("nan")), 8000, "NaN"),
    (torch.zeros(4000), 100, "sample_rate must be an integer >= 4000"),
    ([0.0] * 4000, 8000, "got list"),
])
def test_continue_audio_refuses_bad_audio_in_one_line(wav, rate, message):
    with pytest.raises(PianogenError, match=message):
        pianogen.continue_audio(wav, rate, run="anything")


def test_a_third_party_package_ships_a_run_the_command_line_finds(packed, tmp_path):
    """A real installed distribution (dist-info + entry point), in a fresh process: ``generate NAME`` finds it."""
    site = tmp_path / "site"
    info = site / "pianogen_tinyrun-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pianogen-tinyrun\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pianogen]\ntinyrun = pianogen_tinyrun\n")
    (site / "pianogen_tinyrun.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        import pianogen

        @pianogen.hookimpl
        def register_runs(register):
            register("tinyrun", Path({str(packed)!r}))
    """))
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(packed)
    import os

    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-m", "pianogen", "generate", "tinyrun", "--prompt", "test:0",
                           "--seconds", "0.1", "--stream"], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (work / "tinyrun-generated" / "test_0-001" / "take_0.wav").is_file()
    assert snapshot(packed) == before


def test_pack_run_in_bf16_halves_the_weights_and_scores_alike(trained_run, packed, tmp_path):
    from pianogen.pipeline import load_run

    half = pack_run(trained_run, tmp_path / "half", weights_dtype="bf16")
    verify_sums(half)
    full_size = (packed / "checkpoints/best/model.safetensors").stat().st_size
    assert (half / "checkpoints/best/model.safetensors").stat().st_size < 0.6 * full_size
    _, _, model32, _ = load_run(packed, "best", torch.device("cpu"))
    _, _, model16, _ = load_run(half, "best", torch.device("cpu"))
    assert next(model16.parameters()).dtype == torch.float32  # cast back on loading
    codes = torch.randint(0, model32.vocab_size, (2, model32.n_levels, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model32(codes).log_softmax(-1), model16(codes).log_softmax(-1)
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.05)
    with pytest.raises(PianogenError, match="weights_dtype must be one of"):
        pack_run(trained_run, tmp_path / "int3", weights_dtype="int3")


def test_the_shipped_piano_continues_an_example_in_memory():
    from pianogen_pretrained import PIANO

    if not (PIANO / "recipe.toml").is_file():
        pytest.skip("this copy has no trained piano run")
    audio, rate = sf.read(str(pianogen.__path__[0] + "/web/examples/example_1.ogg"), dtype="float32", always_2d=True)
    take = torch.from_numpy(audio.T[:, : 2 * rate].copy())
    one, sr = pianogen.continue_audio(take, rate, seconds=1.0, seed=3)
    two, _ = pianogen.continue_audio(take, rate, seconds=1.0, seed=3)
    assert one.shape == (2, sr) and torch.equal(one, two) and one.abs().max() > 1e-3


def test_a_run_ships_with_its_codec_s_decoder_trained_again_but_not_with_another_codec(trained_run, tmp_path):
    from pianogen.pipeline import load_run

    recipe, codec, _, meta = load_run(trained_run)
    codes = torch.randint(0, codec.codebook_size, (1, recipe.codec.levels, 40))
    retuned = pianogen.get_codec("soundstream", checkpoint=recipe.codec.options["checkpoint"])
    with torch.no_grad():
        next(retuned.decoder.parameters()).mul_(0.5)  # a decoder trained again, the encoder and codebooks kept
    retuned.save(tmp_path / "retuned.safetensors")
    shipped = pack_run(trained_run, tmp_path / "shipped", codec_path=tmp_path / "retuned.safetensors")
    _, shipped_codec, _, shipped_meta = load_run(shipped)
    assert shipped_meta["codec"] == codec.identity() == shipped_codec.identity()
    assert not torch.equal(shipped_codec.decode(codes), codec.decode(codes))  # its own decoder
    assert shipped_meta["step"] == meta["step"]
    other = pianogen.get_codec("soundstream", checkpoint=recipe.codec.options["checkpoint"])
    with torch.no_grad():
        next(other.encoder.parameters()).add_(0.01)
    other.save(tmp_path / "other.safetensors")
    with pytest.raises(PianogenError, match="makes other tokens than"):
        pack_run(trained_run, tmp_path / "refused", codec_path=tmp_path / "other.safetensors")
    assert not (tmp_path / "refused").exists()


def test_a_run_recorded_under_the_former_identity_still_loads(trained_run, tmp_path):
    from pianogen.pipeline import load_run

    run = shutil.copytree(trained_run, tmp_path / "older")
    codec = load_run(run)[1]
    for meta_path in (run / "checkpoints").rglob("meta.json"):
        meta = json.loads(meta_path.read_text())
        meta["codec"] = codec.former_identities()[0]  # as pianogen 0.2 recorded it: config + the file's sha256
        meta_path.write_text(json.dumps(meta))
    assert load_run(run)[3]["codec"] == codec.former_identities()[0]
    meta["codec"] = {"name": "soundstream", "config_hash": "0" * 16}
    for meta_path in (run / "checkpoints").rglob("meta.json"):
        meta_path.write_text(json.dumps(meta))
    with pytest.raises(PianogenError, match="was trained with codec"):
        load_run(run)


def test_take_codes_load_through_a_retrained_decoder_or_a_former_identity_but_not_another_codec(trained_run,
                                                                                                  tmp_path):
    from pianogen.generation.take_codes import load_take_codes, save_take_codes
    from pianogen.paths import safetensors_bytes
    from pianogen.pipeline import load_run

    recipe, codec, _, _ = load_run(trained_run)
    levels = recipe.codec.levels
    codes = torch.randint(0, codec.codebook_size, (levels, 30))
    save_take_codes(tmp_path / "codes_1.safetensors", codes, codec, levels, "take_1.wav")
    retuned = pianogen.get_codec("soundstream", checkpoint=recipe.codec.options["checkpoint"])
    with torch.no_grad():
        next(retuned.decoder.parameters()).mul_(0.5)
    assert torch.equal(load_take_codes(tmp_path / "codes_1.safetensors", retuned, levels), codes)
    former = json.dumps(codec.former_identities()[0], sort_keys=True)  # as pianogen 0.2 recorded it
    (tmp_path / "codes_2.safetensors").write_bytes(safetensors_bytes(
        {"codes": codes}, {"codec": former, "levels": str(levels), "frame_rate": str(codec.frame_rate), "take": "x"}))
    assert torch.equal(load_take_codes(tmp_path / "codes_2.safetensors", codec, levels), codes)
    with torch.no_grad():
        next(retuned.encoder.parameters()).add_(0.01)
    with pytest.raises(PianogenError, match="was sampled with codec"):
        load_take_codes(tmp_path / "codes_1.safetensors", retuned, levels)
    (tmp_path / "codes_3.safetensors").write_bytes(safetensors_bytes(
        {"codes": codes}, {"codec": "not json", "levels": str(levels)}))
    with pytest.raises(PianogenError, match="was sampled with codec not json"):
        load_take_codes(tmp_path / "codes_3.safetensors", codec, levels)
