"""End-to-end `pianogen eval` on the tiny trained run of conftest (random-init codec, 2 levels)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pianogen.errors import PianogenError
from pianogen.evaluation.evaluate import evaluate


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
        assert {"mel_l1", "stft", "si_sdr", "kbps"} <= set(metrics)
        assert finite(metrics[k] for k in ("mel_l1", "stft", "si_sdr", "kbps"))
        assert 0 <= metrics["note_f1"]["f1"] <= 1  # the decoded audio's notes against the input's
    assert len(report["codec"]["codebooks"]) == 4  # codes used and perplexity per level
    assert "6 kbps" in report["codec"]["opus"] or "unavailable" in report["codec"]["opus"]  # opusenc at 6..16 kbps


def test_continuation_drift_curve_by_second(evaluated):
    c = evaluated[0]["continuation"]
    assert c["n_prompts"] == 2 and len(c["prompts"]) == 2
    assert c["seconds_after_prompt"] == [1.0, 2.0]
    floors = {"other_piece", "white_noise", "pink_noise", "drone"}
    assert set(c["signals"]) == {"generated", "resynth", "raw"} | floors and set(c["floors"]) == floors
    compared = {"mel_l1_vs_resynth", "spectral_convergence_vs_resynth", "mel_l1_vs_raw",
                "spectral_convergence_vs_raw", "chroma_similarity", "bad_frame_fraction"}
    assert all(set(c[name]) == compared for name in ("generated", *floors))  # every number has its floors
    assert set(c["raw"]) == {"chroma_similarity", "bad_frame_fraction"}
    for signal in c["signals"]:
        for values in c[signal].values():
            assert len(values) == 2 and finite(values)
    # the test split holds one piece: the other piece comes from the training split
    assert all(o["audio_filename"] != p["audio_filename"] for o, p in zip(c["other_pieces"], c["prompts"]))
    assert all(0 <= v <= 1 for v in c["raw"]["bad_frame_fraction"])
    assert all(v > 0.5 for v in c["raw"]["chroma_similarity"])  # the true music stays in its key
    assert c["white_noise"]["bad_frame_fraction"] == c["pink_noise"]["bad_frame_fraction"] == [1.0, 1.0]
    assert c["drone"]["bad_frame_fraction"] == [0.0, 0.0]  # a held chord is neither noise nor silence...
    assert all(v > 0.5 for v in c["drone"]["chroma_similarity"])  # ...and in the prompt's key: drift misses it
    assert all(v == 0.0 for v in c["other_piece"]["bad_frame_fraction"])  # music is never a bad frame


def test_report_files(evaluated):
    report, out = evaluated
    assert json.loads((out / "eval.json").read_text()) == json.loads(json.dumps(report))
    text = (out / "report.md").read_text()
    assert "unigram NLL" in text and "SI-SDR" in text and "Continuation drift" in text
    chroma_table = text.split("### Chroma similarity")[1].split("###")[0]
    assert "| second | generated | resynth | raw | other piece | white noise | pink noise | drone |" in chroma_table
    notes_table = text.split("## Notes heard in the continuation")[1].split("###")[0]
    assert ("| signal | notes/s | struck notes/s | distinct pitches | pitch-class corr. to prompt | key agreement |"
            in notes_table)
    assert all(f"| {name} |" in notes_table for name in ("model", "true", "other piece", "noise", "drone"))
    assert "### Notes by second: notes/s" in text
    for name in ("drift.png", "mel_0_generated.png", "mel_0_resynth.png", "mel_1_generated.png"):
        assert (out / name).stat().st_size > 1000, name


def test_the_continuation_notes_have_every_floor(evaluated):
    notes = evaluated[0]["continuation"]["notes"]
    assert notes["transcriber"] == "basic_pitch" and notes["seconds_after_prompt"] == [1.0, 2.0]
    assert notes["signals"] == ["model", "true", "codec", "other_piece", "noise", "pink_noise", "drone"]
    metrics = {"notes_per_second", "struck_notes_per_second", "pitch_class_correlation", "key_agreement",
               "distinct_pitches"}
    for name in notes["signals"]:
        assert set(notes[name]) == metrics | {"per_second", "level_db_per_second"}
        assert finite(notes[name][m] for m in [*metrics, "level_db_per_second"])
        assert set(notes[name]["per_second"]) == metrics
        assert all(len(v) == 2 and finite(v) for v in notes[name]["per_second"].values())
        assert notes[name]["notes_per_second"] == pytest.approx(sum(notes[name]["per_second"]["notes_per_second"]) / 2)
        assert notes[name]["struck_notes_per_second"] <= notes[name]["notes_per_second"]
    # the true continuation plays notes; the drone strikes one chord and holds it, the noises are no music
    assert notes["true"]["notes_per_second"] > notes["drone"]["notes_per_second"]
    assert notes["true"]["notes_per_second"] > max(notes["noise"]["notes_per_second"],
                                                   notes["pink_noise"]["notes_per_second"])
    assert notes["true"]["distinct_pitches"] > notes["drone"]["distinct_pitches"]
    # the noise floors keep the prompt's loudness throughout: their level holds
    assert abs(notes["noise"]["level_db_per_second"]) < 0.5 and abs(notes["pink_noise"]["level_db_per_second"]) < 0.5


def test_an_unavailable_transcriber_is_one_warning_and_the_rest_runs(trained_run, monkeypatch, capsys):
    """The continuation part alone (tokens and codec do not depend on the transcriber): drift and every floor
    still measured, the drone's key taken from the prompt's chroma, one warning line for the notes."""
    from pianogen import pipeline
    from pianogen.evaluation.eval_report import notes_markdown
    from pianogen.evaluation.evaluate import continuation_metrics

    monkeypatch.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))
    recipe, codec, model, _ = pipeline.load_run(trained_run, "best", torch.device("cpu"))
    cache = pipeline.build_token_cache(recipe, codec, progress=False)
    c, _ = continuation_metrics(recipe, codec, model, cache, "test", 1, 0.5, 1.0, 0, torch.device("cpu"), False,
                                transcriber="no_such_transcriber")
    assert set(c["notes"]) == {"unavailable"} and "no_such_transcriber" in c["notes"]["unavailable"]
    assert "drone" in c["floors"] and len(c["drone"]["chroma_similarity"]) == 1
    assert c["drone"]["chroma_similarity"][0] > 0.5  # the chroma's key is the prompt's
    lines = [line for line in notes_markdown(c["notes"]) if "warning" in line]
    assert len(lines) == 1 and "notes not measured: transcriber 'no_such_transcriber' unavailable" in lines[0]
    assert capsys.readouterr().err.count("warning: notes:") == 1


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


class UnigramAsModel(torch.nn.Module):
    """A "model" whose logits are the unigram floor's log-probabilities at every position."""

    def __init__(self, logp: torch.Tensor) -> None:
        super().__init__()
        self.logp = logp  # [K, V]

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        B, K, T = codes.shape
        return self.logp[None, :, None, :].expand(B, K, T, -1)


def test_every_target_is_scored_once(trained_run, monkeypatch):
    """Scoring a model that outputs the unigram floor reproduces the unigram NLL over every next-frame
    target of the split, each counted once (frames 1..F-1 of each piece, levels apart)."""
    import numpy as np

    from pianogen import pipeline
    from pianogen.evaluation.evaluate import ReferenceModels, token_metrics

    monkeypatch.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))
    recipe, codec, _, _ = pipeline.load_run(trained_run, "best", torch.device("cpu"))
    cache = pipeline.build_token_cache(recipe, codec, progress=False)
    K, V = recipe.codec.levels, codec.codebook_size
    refs = ReferenceModels.fit((cache.codes(p) for p in cache.pieces("train")), K, V)
    pieces = [np.asarray(cache.codes(p)[:K], dtype=np.int64) for p in cache.pieces("test")]
    logp = refs.unigram_logp.double().numpy()
    targets = np.concatenate([c[:, 1:] for c in pieces], axis=1)  # [K, sum(F - 1)]
    expected = [-logp[k, targets[k]].mean() for k in range(K)]
    window = recipe.data.window
    assert any(c.shape[1] % window not in (0, 1) for c in pieces)  # a piece's end does not fit the windows
    scored = token_metrics(UnigramAsModel(refs.unigram_logp), cache, "test", K, window, refs, torch.device("cpu"))
    assert scored["targets_per_level"] == targets.shape[1]
    assert scored["unigram_nll_per_level"] == pytest.approx(expected, rel=1e-9)
    assert scored["nll_per_level"] == pytest.approx(expected, rel=1e-6)


def test_more_prompts_than_the_split_holds_is_said_and_recorded(trained_run, monkeypatch, capsys):
    from pianogen import pipeline
    from pianogen.evaluation.evaluate import continuation_metrics

    monkeypatch.setenv("PIANOGEN_HOME", str(trained_run.parent / "home"))
    recipe, codec, model, _ = pipeline.load_run(trained_run, "best", torch.device("cpu"))
    cache = pipeline.build_token_cache(recipe, codec, progress=False)
    c, _ = continuation_metrics(recipe, codec, model, cache, "test", 1000, 0.5, 1.0, 0, torch.device("cpu"), False,
                                transcriber=None)
    assert c["n_prompts_asked"] == 1000 and 1 <= c["n_prompts"] < 1000
    warned = [line for line in capsys.readouterr().err.splitlines() if "of the 1000 asked" in line]
    assert len(warned) == 1 and f"scoring {c['n_prompts']} of the 1000 asked" in warned[0]


def test_eval_samples_and_fades_each_prompt_as_generate_would(trained_run, tmp_path, monkeypatch):
    """With the quiet temperature and ring-out in the run's [generate], eval reads each prompt's end and samples
    and fades every row as generate would: after notes left ringing the continuation changes, the truth does not."""
    import shutil

    import soundfile as sf

    from pianogen.generation.prompt_end import scaled_temperature
    from pianogen.generation.ring_out import BANDS

    corpus = tmp_path / "ringing"
    corpus.mkdir()
    t = torch.arange(4 * 16000) / 16000
    for i, hz in enumerate((220.0, 330.0, 440.0)):  # lone notes dying away at 6 dB a second, struck before 0
        tone = sum(torch.sin(2 * math.pi * hz * h * t) / h for h in range(1, 4)) * torch.pow(10.0, -6 * t / 20)
        sf.write(corpus / f"note_{i}.wav", (0.3 * tone).numpy(), 16000, subtype="FLOAT")
    run = shutil.copytree(trained_run, tmp_path / "run")
    recipe = (run / "recipe.toml").read_text()
    assert recipe.count("[generate]") == 1
    (run / "recipe.toml").write_text(recipe.replace("[generate]", "[generate]\nquiet_temperature_scale = 0.25\n"
                                                    "ring_out = true"))
    monkeypatch.setenv("PIANOGEN_HOME", str(tmp_path / "home"))
    options = dict(corpus=corpus, n_prompts=2, prompt_seconds=1.5, seconds=1.0, codec_seconds=1.0, codec_pieces=1,
                   device="cpu", progress=False, transcriber=None)
    plain = evaluate(trained_run, "all", out=tmp_path / "plain", **options)["continuation"]
    ringing = evaluate(run, "all", out=tmp_path / "ringing_eval", **options)["continuation"]
    sampling = ringing["sampling"]
    assert sampling["ring_out"] and sampling["prompt_onset_rates"] == [0.0, 0.0]
    assert sampling["temperatures"] == pytest.approx([scaled_temperature(1.0, 0.25, 0.0)] * 2) == [0.25, 0.25]
    assert all(len(d) == BANDS and min(d) < -3 for d in sampling["prompt_decays_db_per_s"])
    assert plain["sampling"]["prompt_onset_rates"] is None  # the run as trained: every prompt alike
    # the drift curves by signal: the truth and its resynthesis the same, the model's continuation not
    assert ringing["raw"] == plain["raw"] and ringing["resynth"] == plain["resynth"]
    assert ringing["generated"] != plain["generated"]
