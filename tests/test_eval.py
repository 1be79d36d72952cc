"""End-to-end `pianogen eval` on the tiny trained run of conftest (random-init codec, 2 levels)."""

from __future__ import annotations

import json
import math

import pytest

from pianogen.errors import PianogenError
from pianogen.evaluate import evaluate


def finite(values) -> bool:
    return all(math.isfinite(v) for v in values)


@pytest.fixture(scope="module")
def evaluated(trained_run, tmp_path_factory):
    # reuse the token cache the run was trained with instead of tokenizing again
    mp = pytest.MonkeyPatch()
    mp.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))
    out = tmp_path_factory.mktemp("eval")
    try:
        yield evaluate(trained_run, "test", out=out, n_prompts=2, prompt_seconds=0.5, seconds=2.0,
                       device="cpu", progress=False), out
    finally:
        mp.undo()


def test_token_metrics_have_a_value_per_level_and_floors(evaluated):
    report, _ = evaluated
    K = report["levels"]
    assert K == 2
    for key in ("nll_per_level", "unigram_nll_per_level", "repeat_nll_per_level", "perplexity_per_level",
                "accuracy_per_level", "unigram_accuracy_per_level", "repeat_accuracy_per_level"):
        assert len(report[key]) == K and finite(report[key]), key
    assert all(0 <= a <= 1 for a in report["accuracy_per_level"])
    assert report["perplexity_per_level"] == pytest.approx([math.exp(v) for v in report["nll_per_level"]])
    for prefix in ("", "unigram_", "repeat_"):
        bits = sum(report[f"{prefix}nll_per_level"]) / math.log(2) * report["frame_rate"]
        assert report[f"{prefix}bits_per_second"] == pytest.approx(bits)
    # a uniform guess over 64 codes costs ln 64 nats; the add-one unigram can only do better on average
    assert all(0 < v < math.log(64) + 0.5 for v in report["unigram_nll_per_level"])
    assert report["targets_per_level"] > 0


def test_codec_metrics_by_number_of_levels(evaluated):
    report, _ = evaluated
    by_levels = report["codec"]["by_levels"]
    assert set(by_levels) == {"1", "2", "4", "all"}  # the tiny codec has 4 levels: 8 is skipped
    for metrics in by_levels.values():
        assert set(metrics) == {"mel_l1", "stft", "si_sdr", "kbps"} and finite(metrics.values())
    assert len(report["codec"]["codebooks"]) == 4  # codes used and perplexity per level
    assert "codec bitrate" in report["codec"]["opus"] or "unavailable" in report["codec"]["opus"]


def test_continuation_drift_curve_by_second(evaluated):
    c = evaluated[0]["continuation"]
    assert c["n_prompts"] == 2 and len(c["prompts"]) == 2
    assert c["seconds_after_prompt"] == [1.0, 2.0]
    assert set(c["signals"]) == {"generated", "resynth", "raw"}
    assert set(c["generated"]) == {"mel_l1_vs_resynth", "spectral_convergence_vs_resynth", "mel_l1_vs_raw",
                                   "spectral_convergence_vs_raw", "chroma_similarity", "bad_frame_fraction"}
    assert set(c["raw"]) == {"chroma_similarity", "bad_frame_fraction"}
    for signal in c["signals"]:
        for values in c[signal].values():
            assert len(values) == 2 and finite(values)
    assert all(0 <= v <= 1 for v in c["raw"]["bad_frame_fraction"])
    assert all(v > 0.5 for v in c["raw"]["chroma_similarity"])  # the true music stays in its key


def test_report_files(evaluated):
    report, out = evaluated
    assert json.loads((out / "eval.json").read_text()) == json.loads(json.dumps(report))
    text = (out / "report.md").read_text()
    assert "unigram NLL" in text and "SI-SDR" in text and "Continuation drift" in text
    for name in ("drift.png", "mel_0_generated.png", "mel_0_resynth.png", "mel_1_generated.png"):
        assert (out / name).stat().st_size > 1000, name


def test_too_long_a_continuation_is_a_user_error(trained_run, monkeypatch):
    monkeypatch.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))
    with pytest.raises(PianogenError, match="longer than"):
        evaluate(trained_run, "test", seconds=600.0, device="cpu", progress=False)


def test_eval_cli_prints_json_and_writes_the_report(trained_run, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PIANOGEN_HOME": str(trained_run.parent / "home")}
    args = [sys.executable, "-m", "pianogen", "eval", str(trained_run), "--json", "--out", str(tmp_path / "e"),
            "--prompts", "1", "--prompt-seconds", "0.5", "--seconds", "1", "--device", "cpu"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert len(report["nll_per_level"]) == len(report["repeat_nll_per_level"]) == 2
    assert report["continuation"]["seconds_after_prompt"] == [1.0]
    assert (tmp_path / "e" / "report.md").is_file()
