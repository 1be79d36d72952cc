"""``pianogen serve``'s page besides the job queue: its files, the example prompts that ship with the package, the
command line's limits and words, the Mel image's pitch axis, and RUN as a built-in run's name. The page itself is
driven in Chromium in test_serve.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch

import pianogen
from pianogen.errors import PianogenError
from tests.test_serve import get, raw, studio  # noqa: F401 (studio: the in-process server fixture)

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "pianogen" / "web"


@pytest.mark.parametrize("sample_rate", [16000, 22050, 44100])
def test_mel_axis_ticks_sit_on_the_bins_that_hear_their_pitch(sample_rate):
    """Each tick labelled C4 262 Hz (or 8 kHz) sits on the Mel bin whose torchaudio filter answers that frequency
    most, and the labels climb with the axis."""
    import torchaudio

    from pianogen.evaluation.plots import mel_axis_ticks

    n_mels = 80
    positions, labels = mel_axis_ticks(sample_rate, n_mels)
    assert len(labels) >= 5 and "C4 262 Hz" in labels and "C8 4186 Hz" in labels
    assert positions == sorted(positions) and 0 <= positions[0] and positions[-1] <= n_mels
    bank = torchaudio.functional.melscale_fbanks(sample_rate // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
    centres = torch.arange(n_mels, dtype=torch.float32) + 0.5  # bin m is drawn over [m, m+1]
    for y, label in zip(positions, labels):
        hz = float(label.split()[0]) * 1000 if label.endswith("kHz") else float(label.split()[1])
        if hz >= sample_rate / 2:  # Nyquist: the axis's top edge
            assert y == n_mels
            continue
        heard = bank[round(hz)]  # each filter's answer to a tone at hz (1 Hz grid)
        assert abs(float((heard * centres).sum() / heard.sum()) - y) < 0.1, label


def test_example_prompts_ship_small_stereo_and_playing_with_how_they_were_made():
    """Three clips of 6-8 s, under 1 MB together, readable as a take, not silent where the model continues, each
    with its seed, piece and offsets, the sound's license, and a pattern in package-data that ships them."""
    from pianogen.generation.takes import read_recording
    from pianogen.serving.serve_page import examples

    listed = json.loads((WEB / "examples" / "examples.json").read_text())
    assert "Salamander Grand Piano V3" in listed["license"] and "CC BY 3.0" in listed["license"]
    assert len(listed["examples"]) == 3 == len(examples()["clips"])
    assert sum((WEB / "examples" / e["file"]).stat().st_size for e in listed["examples"]) < 1_000_000
    for example in listed["examples"]:
        take = read_recording(WEB / "examples" / example["file"])
        assert 6 <= take.seconds <= 8 and abs(take.seconds - example["seconds"]) < 0.01 and take.channels == 2
        last_second = take.samples[:, -take.sample_rate:]
        assert 10 * np.log10(float(last_second.pow(2).mean())) > -40
        made = example["made_from"]
        assert made["seed"] == 7 and made["piece"].endswith(".wav") and made["end_s"] - made["start_s"] == 7.0
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pianogen"]
    for path in WEB.rglob("*"):
        if path.is_file():
            name = PurePosixPath(path.relative_to(ROOT / "pianogen").as_posix())
            assert any(name.match(p) for p in patterns), f"{name} would not be in the wheel"  # setuptools' globs


def test_the_page_its_favicon_and_examples_are_served_and_nothing_beside_them(studio):  # noqa: F811
    base = f"http://127.0.0.1:{studio.port}"
    status, icon = get(base + "/favicon.svg")
    assert status == 200 and ElementTree.fromstring(icon).tag.endswith("svg")
    for name in ("app.js", "style.css", "examples/example_1.ogg"):
        status, body = get(f"{base}/{name}")
        assert status == 200 and body == (WEB / name).read_bytes()
    status, part = get(base + "/examples/example_2.ogg", {"Range": "bytes=0-3"})
    assert status == 206 and part == b"OggS"
    for name in ("index.html", "serve.py", "examples/examples.json", "examples/nope.ogg", "examples/..%2Fapp.js",
                 "web/app.js"):
        assert get(f"{base}/{name}")[0] == 404, name
    page = get(base + "/")[1].decode()
    assert '<link rel="icon" href="/favicon.svg"' in page and '<script src="/app.js">' in page
    answer = json.loads(get(base + "/api/runs")[1])
    assert [clip["url"] for clip in answer["examples"]["clips"]] == [f"/examples/example_{i}.ogg" for i in (1, 2, 3)]
    assert answer["limits"]["max_seed_text"] == str(2**63 - 1) and answer["limits"]["max_upload_mib"] == 512
    assert json.loads(get(base + "/api/jobs")[1]) == {"jobs": []}


def test_the_page_says_in_its_own_words_what_the_command_line_says_with_flags(studio):  # noqa: F811
    """Every option the page offers has its label on the page, and the command line's checks reach the page with
    those labels in place of the flags."""
    from pianogen.serving.serve import FORM
    from pianogen.serving.serve_page import LABELS, in_page_words

    page = (WEB / "index.html").read_text()
    for field in FORM:
        assert f"<label>{LABELS['--' + field.replace('_', '-')]} " in page, field
    assert in_page_words("--prompt-seconds must be > 0, --top-p <= 1; keep-the --from") == \
        "Prompt length must be > 0, Top-p <= 1; keep-the From"
    request = lambda query: (f"POST /api/jobs?{query} HTTP/1.1\r\nHost: 127.0.0.1:{studio.port}\r\n"  # noqa: E731
                             f"X-Pianogen-Token: {studio.token}\r\nContent-Length: 4\r\n\r\nRIFF").encode()
    for query, words in (("run=run&prompt_seconds=0", "Prompt length must be > 0"),
                         ("run=run&top_p=2", "Top-p must be >= 0 and <= 1"),
                         ("run=run&prompt_prior=-1", "Keep to the prompt must be >= 0 and <= 100"),
                         ("run=run&from=x", "From must be a number, got 'x'"),
                         ("run=run&quiet_temperature_scale=-1", "Calm after a held sound must be >= 0 and <= 100"),
                         ("run=run&ring_out=maybe", "Let a held sound ring out must be on or off, got 'maybe'")):
        status, answer = raw(studio, request(query))
        assert status == 400 and answer["error"].startswith(words) and "--" not in answer["error"], answer


def test_a_builtin_run_is_served_by_name_and_its_takes_written_outside_it(fresh_registry, trained_run, tmp_path,
                                                                           monkeypatch):
    """RUN may be a built-in run's name, as for every command; its folder is read-only, so the page's
    generations go to <name>-generated in the current directory. Without RUN, the built-in ``piano``: where it is
    not installed, one line and exit 2."""
    from pianogen.runs import pack_run, resolve_run
    from pianogen.serving.serve_http import offered_runs

    packed = pack_run(trained_run, tmp_path / "shipped")

    class Shipped:
        @staticmethod
        @pianogen.hookimpl
        def register_runs(register):
            register("tiny", packed)

    fresh_registry.register_module(Shipped, "shipped-run")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert offered_runs("tiny") == ({"tiny": packed}, {"tiny": tmp_path / "work" / "tiny-generated"})
    assert offered_runs(trained_run) == ({trained_run.name: trained_run}, {trained_run.name: trained_run / "generated"})
    with pytest.raises(PianogenError, match="not a run directory, nor a built-in run"):
        offered_runs("tinny")
    from pianogen.runs import verify_sums
    from pianogen.serving.serve import Studio
    from tests.test_serve import stereo_take

    stereo_take(tmp_path / "mine.wav")
    runs, outputs = offered_runs("tiny")
    job = Studio(runs, "cpu", outputs).submit("tiny", "mine.wav", (tmp_path / "mine.wav").read_bytes(),
                                              {"seconds": "0.25", "num": "1"})
    deadline = time.monotonic() + 120
    while job.state in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.state == "done", job.error
    assert (tmp_path / "work" / "tiny-generated" / "mine-001" / "take_0.wav").is_file()
    verify_sums(packed)  # the built-in run's folder holds what it held: nothing was written into it
    assert not (packed / "generated").exists()
    try:
        resolve_run("piano")
    except PianogenError as err:  # a checkout without the trained files
        done = subprocess.run([sys.executable, "-m", "pianogen", "serve"], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path / "work")
        assert (done.returncode, done.stderr.strip()) == (2, f"error: {err}")
