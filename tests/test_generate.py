"""Generation from a trained run: files, determinism, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from pianogen.errors import PianogenError
from pianogen.generation.generate import GenerationRequest, generate


def request(out, **kw) -> GenerationRequest:
    settings = dict(prompt="test:0", seconds=0.5, out=out, prompt_seconds=0.4, top_k=20, seed=3)
    settings.update(kw)
    return GenerationRequest(**settings)


def test_generate_writes_audio_figure_and_report(trained_run, tmp_path):
    report = generate(trained_run, request(tmp_path / "g", num=2), progress=False)
    assert report["frames"] == 100 and report["prompt_frames"] == 80  # 200 frames/s
    for i in range(2):
        full, sr = sf.read(tmp_path / f"g/full_{i}.wav")
        cont, _ = sf.read(tmp_path / f"g/continuation_{i}.wav")
        assert sr == 8000 and len(full) == 180 * 40 and len(cont) == 100 * 40
        assert np.isfinite(full).all() and np.abs(cont).max() > 0
        assert (tmp_path / f"g/mel_{i}.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "g/generation.json").read_text())
    assert saved["settings"]["seed"] == 3 and saved["realtime_factor"] > 0
    assert saved["continuation_is"].startswith("mono 8 kHz audio from the codec (nothing above 4 kHz)")
    heard = saved["note_metrics"]["takes"]  # each take as the transcriber hears it, beside the drone floor
    assert len(heard) == 2 and heard[0]["transcriber"] == "basic_pitch"
    for take in heard:
        for metrics in (take["continuation"], take["floors"]["drone"]):
            assert {"notes_per_second", "struck_notes_per_second", "distinct_pitches", "pitch_class_correlation",
                    "key_agreement"} <= set(metrics)
            assert all(np.isfinite(metrics[k]) for k in ("notes_per_second", "struck_notes_per_second",
                                                         "distinct_pitches"))
            assert metrics["struck_notes_per_second"] <= metrics["notes_per_second"]


def test_a_transcriber_that_cannot_load_leaves_the_generation_standing():
    import torch

    from pianogen.generation.generate import hear_notes

    heard = hear_notes(torch.zeros(1, 1, 8000), 4000, 8000, transcriber="no_such_transcriber")
    assert "no_such_transcriber" in heard["unavailable"]


def test_bf16_generation_writes_audio(trained_run, tmp_path):
    report = generate(trained_run, request(tmp_path / "g", precision="bf16"), progress=False)
    cont, _ = sf.read(tmp_path / "g/continuation_0.wav")
    assert report["settings"]["precision"] == "bf16" and np.isfinite(cont).all() and np.abs(cont).max() > 0
    with pytest.raises(PianogenError, match="--precision must be one of fp32, bf16"):
        generate(trained_run, request(tmp_path / "h", precision="fp16"), progress=False)


def test_same_seed_same_audio_cache_or_not(trained_run, tmp_path):
    hot = dict(temperature=2.0, top_k=0)  # a flat distribution, so two seeds surely differ
    generate(trained_run, request(tmp_path / "a", **hot), progress=False)
    generate(trained_run, request(tmp_path / "b", use_cache=False, **hot), progress=False)
    generate(trained_run, request(tmp_path / "c", seed=4, **hot), progress=False)
    a, b, c = (sf.read(tmp_path / f"{d}/continuation_0.wav")[0] for d in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_short_prompt_is_used_whole_and_said(trained_run, tmp_path):
    from pianogen.data.audio import save_audio

    stereo_44k = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 4410)).astype(np.float32)  # 0.1 s stereo
    save_audio(tmp_path / "short.wav", stereo_44k, 44100)
    report = generate(trained_run, request(tmp_path / "g", prompt=str(tmp_path / "short.wav")), progress=False)
    assert report["prompt_frames"] == 20 and "shorter" in report["notes"][0]


@pytest.mark.parametrize("make, message", [
    (lambda run, tmp: request(tmp / "o", prompt=str(tmp / "missing.wav")), "prompt not found"),
    (lambda run, tmp: request(tmp / "o", prompt="test:99"), "test split has"),
    (lambda run, tmp: request(tmp / "o", seconds=0), "--seconds must be > 0"),
])
def test_bad_requests(trained_run, tmp_path, make, message):
    with pytest.raises(PianogenError, match=message):
        generate(trained_run, make(trained_run, tmp_path), progress=False)


def test_corrupt_prompt_and_missing_checkpoints_are_one_line_errors(trained_run, tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    cases = [
        (["generate", str(trained_run), "--prompt", str(tmp_path / "corrupt.wav"), "--out", str(tmp_path / "o")],
         "cannot read audio file"),
        (["generate", str(tmp_path), "--prompt", "test:0"], "not a run directory"),
        (["generate", str(trained_run), "--prompt", "test:0", "--seconds", "-1"], "Invalid value for '--seconds'"),
    ]
    for args, message in cases:
        done = subprocess.run([sys.executable, "-m", "pianogen", *args], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_checkpoint_from_another_codec_is_refused(trained_run, tmp_path, tiny_corpus):
    import shutil

    import torch
    from pianogen_soundstream.model import SoundStream, SoundStreamConfig

    from tests.conftest import TINY_CODEC

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    torch.manual_seed(1)  # same architecture, different weights: different tokens
    other = tmp_path / "other.safetensors"
    SoundStream(SoundStreamConfig(**TINY_CODEC)).save(other)
    text = (run / "recipe.toml").read_text()
    import re

    (run / "recipe.toml").write_text(re.sub(r'checkpoint = ".*"', f'checkpoint = "{other}"', text))
    with pytest.raises(PianogenError, match="was trained with codec soundstream"):
        generate(run, request(tmp_path / "g"), progress=False)


def test_the_prompt_prior_sends_each_change_of_code_to_the_prompts_codes(trained_run, tmp_path):
    """The model decides whether a level's code changes; the prior, which code it changes to. A flat draw
    (temperature 2) leaves the prompt's codes at once and wanders; under the prior every change away from a code
    the prompt never used goes back to one it did."""
    from safetensors.torch import load_file

    def changes(folder: str, **kw):
        report = generate(trained_run, request(tmp_path / folder, temperature=2.0, top_k=0, **kw), progress=False)
        saved = load_file(str(tmp_path / folder / "codes_0.safetensors"))["codes"]  # [K, prompt + continuation]
        frames = report["frames"]
        prompt, continuation = saved[:, -frames - report["prompt_frames"]:-frames], saved[:, -frames - 1:]
        back = moves = 0
        for level, used in zip(continuation.tolist(), (set(p.tolist()) for p in prompt)):
            for before, after in zip(level, level[1:]):
                if before != after and before not in used:  # a change away from a code the prompt never used
                    moves, back = moves + 1, back + (after in used)
        return report, back / max(moves, 1), moves

    free_report, free, free_moves = changes("free")
    kept_report, kept, kept_moves = changes("kept", prompt_prior=20.0)
    assert free_report["settings"]["prompt_prior"] == 0.0 and kept_report["settings"]["prompt_prior"] == 20.0
    assert free_moves >= 20 and kept_moves >= 20, (free_moves, kept_moves)
    assert kept > 0.98 and free < 0.5, (kept, free)
    with pytest.raises(PianogenError, match="--prompt-prior must be >= 0"):
        generate(trained_run, request(tmp_path / "bad", prompt_prior=-1.0), progress=False)
