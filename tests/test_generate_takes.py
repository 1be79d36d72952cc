"""generate on a pianist's own file: the prompt window, the continued take, saved codes and --extend."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from pianogen.errors import PianogenError
from pianogen.generation.generate import GenerationRequest, generate

RATE = 22050  # not the codec's 8000 Hz


@pytest.fixture
def my_take(tmp_path):
    """2 s of stereo 16-bit audio at 22.05 kHz: int16 samples [S, 2] and the file."""
    t = np.arange(2 * RATE) / RATE
    music = np.stack([0.3 * np.sin(2 * np.pi * 330 * t) * np.exp(-(t % 0.5) * 4),
                      0.2 * np.sin(2 * np.pi * 495 * t)], axis=1)
    path = tmp_path / "my take.wav"
    sf.write(path, music, RATE, subtype="PCM_16")
    return sf.read(path, dtype="int16")[0], path


def request(out, **kw) -> GenerationRequest:
    settings = dict(prompt="", seconds=0.5, out=out, prompt_seconds=0.4, top_k=20, seed=3)
    settings.update(kw)
    return GenerationRequest(**settings)


def test_take_is_my_recording_then_the_continuation(trained_run, tmp_path, my_take):
    original, path = my_take
    report = generate(trained_run, request(tmp_path / "g", prompt=str(path), num=2), progress=False)
    assert report["prompt_window_s"] == pytest.approx([1.6, 2.0], abs=1e-3)  # the last 0.4 s: where I stopped
    assert report["prompt_frames"] == 80 and report["take_sample_rate"] == RATE and report["take_channels"] == 2
    for name in report["files"]:
        assert (tmp_path / "g" / name).is_file(), name
    fade = round(0.05 * RATE)
    for i in range(2):
        take, rate = sf.read(tmp_path / f"g/take_{i}.wav", dtype="int16")
        assert rate == RATE and take.shape == (len(original) + round(0.5 * RATE), 2)
        assert np.array_equal(take[: len(original) - fade], original[:-fade])  # my samples, untouched
        assert np.abs(take[len(original):]).max() > 0  # and then something new
        entry = report["takes"][i]
        assert entry["take"] == f"take_{i}.wav" and entry["codes"] == f"codes_{i}.safetensors"
        assert np.isfinite(entry["gain_db"])
    assert json.loads((tmp_path / "g/generation.json").read_text())["files"] == report["files"]


def test_window_from_to_sets_where_the_take_continues(trained_run, tmp_path, my_take):
    original, path = my_take
    report = generate(trained_run, request(tmp_path / "g", prompt=str(path), start=0.5, end=-0.5), progress=False)
    start, end = report["prompt_window_s"]
    assert end == pytest.approx(1.5, abs=1e-3) and start == pytest.approx(0.5, abs=0.005)
    assert report["prompt_frames"] == 200
    take, _ = sf.read(tmp_path / "g/take_0.wav", dtype="int16")
    assert len(take) == round(1.5 * RATE) + round(0.5 * RATE)  # my first 1.5 s, then 0.5 s of continuation
    assert np.array_equal(take[: round(1.45 * RATE)], original[: round(1.45 * RATE)])


def test_extend_continues_a_take_from_its_codes_reproducibly(trained_run, tmp_path, my_take):
    _, path = my_take
    generate(trained_run, request(tmp_path / "g", prompt=str(path), num=2), progress=False)
    first, _ = sf.read(tmp_path / "g/take_1.wav", dtype="int16")
    extend = dict(extend=str(tmp_path / "g/take_1.wav"), seconds=0.25)
    report = generate(trained_run, request(tmp_path / "e1", **extend), progress=False)
    generate(trained_run, request(tmp_path / "e2", **extend), progress=False)
    generate(trained_run, request(tmp_path / "e3", temperature=2.0, top_k=0, seed=9, **extend), progress=False)
    longer, rate = sf.read(tmp_path / "e1/take_0.wav", dtype="int16")
    assert rate == RATE and abs(len(longer) - len(first) - 0.25 * RATE) <= 1  # 5512.5 samples, rounded
    fade = round(0.05 * RATE)
    assert np.array_equal(longer[: len(first) - fade], first[:-fade])  # the chosen take, then more
    same = (tmp_path / "e1/take_0.wav").read_bytes() == (tmp_path / "e2/take_0.wav").read_bytes()
    assert same and (tmp_path / "e1/take_0.wav").read_bytes() != (tmp_path / "e3/take_0.wav").read_bytes()
    assert report["prompt_window_s"][1] == pytest.approx(len(first) / RATE)
    # the new codes are the old ones plus the new frames: the prompt was not re-encoded
    from safetensors.torch import load_file

    old = load_file(tmp_path / "g/codes_1.safetensors")["codes"]
    new = load_file(tmp_path / "e1/codes_0.safetensors")["codes"]
    assert new.shape[-1] == old.shape[-1] + 50 and (new[:, : old.shape[-1]] == old).all()


def test_extend_never_overwrites_the_take_it_continues(trained_run, tmp_path, my_take):
    _, path = my_take
    generate(trained_run, request(tmp_path / "g", prompt=str(path)), progress=False)
    before = (tmp_path / "g/take_0.wav").read_bytes()
    with pytest.raises(PianogenError, match="would overwrite"):
        generate(trained_run, request(tmp_path / "g", extend=str(tmp_path / "g/take_0.wav")), progress=False)
    with pytest.raises(PianogenError, match="would overwrite"):
        generate(trained_run, request(tmp_path / "g", prompt=str(tmp_path / "g/take_0.wav")), progress=False)
    assert (tmp_path / "g/take_0.wav").read_bytes() == before
    (tmp_path / "h").mkdir()
    (tmp_path / "h/take_0.wav").write_bytes(before)  # a take without its codes
    with pytest.raises(PianogenError, match="no codes_0.safetensors beside the take"):
        generate(trained_run, request(tmp_path / "o", extend=str(tmp_path / "h/take_0.wav")), progress=False)
    (tmp_path / "h/codes_0.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with pytest.raises(PianogenError, match="cannot read take codes"):  # data, never unpickled
        generate(trained_run, request(tmp_path / "o", extend=str(tmp_path / "h/take_0.wav")), progress=False)


def test_cli_default_out_is_a_fresh_folder_and_bad_options_are_one_line(trained_run, tmp_path, my_take):
    _, path = my_take

    def pianogen(*args):
        return subprocess.run([sys.executable, "-m", "pianogen", "generate", str(trained_run), *args],
                              capture_output=True, text=True)

    outs = []
    for _ in range(2):
        done = pianogen("--prompt", str(path), "--seconds", "0.25")
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout.strip().splitlines()[-1].split()[0])  # after the progress bar
        assert re.search(r"take 0: [\d.]+ notes/s \([\d.]+ struck\), ", done.stdout + done.stderr)  # what was heard
    assert outs[0].endswith("generated/my_take-001") and outs[1].endswith("generated/my_take-002")
    done = pianogen("--extend", f"{outs[0]}/take_0.wav", "--seconds", "0.25")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].split()[0].endswith("my_take-001/take_0-extended-001")
    for args, message in [
        (["--prompt", str(path), "--from", "nan"], "Invalid value for '--from': 'nan' is not a finite number"),
        (["--prompt", str(path), "--to", "3"], "not inside the 2.00 s recording"),
        (["--prompt", str(path), "--crossfade", "2"], "Invalid value for '--crossfade'"),
        (["--prompt", str(path), "--prompt-seconds", "inf"], "Invalid value for '--prompt-seconds'"),
        (["--prompt", str(path), "--extend", f"{outs[0]}/take_0.wav"], "give either --prompt"),
        (["--extend", f"{outs[0]}/take_0.wav", "--from", "1"], "--from/--to choose a window"),
        (["--extend", f"{outs[0]}/full_0.wav"], "--extend wants a take_<i>.wav"),
    ]:
        done = pianogen(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
