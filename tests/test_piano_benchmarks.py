"""Issue #28 items 3-4's measuring tools: the verdict's checks on constructed reports, and smoke runs of
benchmarks/piano_model.py and benchmarks/piano_speed.py on the tiny trained run of conftest."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pianogen.evaluation.eval_verdict import RESULTS_HEADER, piano_verdict, results_row

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def notes(pcc: float, nps: float, pitches: float, struck: float | None = None) -> dict[str, float]:
    """Note metrics; every note struck unless ``struck`` (notes/s) says fewer."""
    return {"pitch_class_correlation": pcc, "notes_per_second": nps, "distinct_pitches": pitches,
            "struck_notes_per_second": nps if struck is None else struck}


def report(model: dict[str, float], n_prompts: int = 8) -> dict:
    """An eval report's shape with a true continuation, its floors and a model."""
    return {
        "levels": 4, "nll_per_level": [3.0, 3.5, 4.0, 4.2], "unigram_nll_per_level": [4.0, 4.5, 4.8, 5.0],
        "repeat_nll_per_level": [5.0, 5.0, 5.1, 5.2],
        "codec": {"by_levels": {"4": {"mel_l1": 0.6, "kbps": 2.56, "note_f1": {"f1": 0.7}}},
                  "opus": {"6 kbps": {"mel_l1": 0.8, "kbps": 6.1, "note_f1": {"f1": 0.6}}}},
        "continuation": {"n_prompts": n_prompts, "n_prompts_asked": 8, "prompt_seconds": 5.0, "seconds": 8.0,
                         "notes": {"model": model, "true": notes(0.8, 4.0, 6.0), "other_piece": notes(0.2, 4.0, 6.0),
                                   "drone": notes(0.9, 0.4, 3.0), "noise": notes(0.0, 1.0, 2.0),
                                   "pink_noise": notes(0.05, 0.5, 1.0)}},
    }


def statuses(verdict: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in verdict["checks"]}


def test_a_model_that_plays_like_the_true_continuation_passes_but_the_drone_is_undecided_on_its_own_floor():
    verdict = piano_verdict(report(notes(0.8, 4.0, 6.0)))
    s = statuses(verdict)
    assert s["pitch_class_correlation halfway"] == "pass" and s["notes_per_second ratio to true"] == "pass"
    assert s["NLL per level below unigram and repeat"] == "pass" and s["prompts"] == "pass"
    # the drone scores 0.9 pitch-class correlation, above the true 0.8: that floor cannot judge anyone
    assert s["pitch_class_correlation above drone"] == "n/a"
    assert s["notes_per_second above drone"] == "pass" and s["codec at 4 levels beside Opus 6 kbps"] == "info"
    assert verdict["verdict"] == "undecided"  # nothing failed, one check could not be judged


def test_a_drone_like_model_fails_on_notes_though_its_chroma_passes():
    verdict = piano_verdict(report(notes(0.9, 0.4, 2.0)))  # a drone: few onsets on few pitches
    s = statuses(verdict)
    assert s["pitch_class_correlation halfway"] == "pass"  # 0.9 >= 0.2 + 0.5 x 0.6
    assert s["notes_per_second ratio to true"] == "fail" and s["distinct_pitches ratio to true"] == "fail"
    assert s["notes_per_second above drone"] == "fail" and verdict["verdict"] == "fail"
    halfway = next(c for c in verdict["checks"] if c["name"] == "pitch_class_correlation halfway")
    assert halfway["numbers"]["threshold"] == pytest.approx(0.5)


def test_a_held_wash_heard_as_notes_fails_on_struck_notes():
    # as many notes and pitches as the true continuation, in its key, but few of them struck
    s = statuses(piano_verdict(report(notes(0.8, 4.0, 6.0, struck=1.5))))
    assert s["notes_per_second ratio to true"] == s["distinct_pitches ratio to true"] == "pass"
    assert s["struck_notes_per_second ratio to true"] == "fail" and s["struck_notes_per_second above drone"] == "pass"
    # a report from before struck notes were measured is judged without them
    older = report(notes(0.8, 4.0, 6.0))
    for metrics in older["continuation"]["notes"].values():
        del metrics["struck_notes_per_second"]
    assert not any(name.startswith("struck") for name in statuses(piano_verdict(older)))


def test_the_ratio_band_and_the_clear_margin_are_inclusive_and_a_silent_truth_admits_only_silence():
    s = statuses(piano_verdict(report(notes(0.8, 2.0, 12.0))))  # exactly 0.5x and 2x
    assert s["notes_per_second ratio to true"] == s["distinct_pitches ratio to true"] == "pass"
    s = statuses(piano_verdict(report(notes(0.8, 1.99, 12.1))))
    assert s["notes_per_second ratio to true"] == s["distinct_pitches ratio to true"] == "fail"
    silent = report(notes(0.8, 0.0, 6.0))
    silent["continuation"]["notes"]["true"]["notes_per_second"] = 0.0
    assert statuses(piano_verdict(silent))["notes_per_second ratio to true"] == "pass"
    silent["continuation"]["notes"]["model"]["notes_per_second"] = 0.1
    assert statuses(piano_verdict(silent))["notes_per_second ratio to true"] == "fail"


def test_a_truth_that_strikes_nothing_is_judged_against_the_codecs_own_rendition_of_it():
    # after a lone note the true continuation strikes none; the codec's resynthesis of it hears 0.4 a second
    lone = report(notes(0.8, 4.0, 6.0, struck=0.7))
    lone["continuation"]["notes"]["true"]["struck_notes_per_second"] = 0.0
    lone["continuation"]["notes"]["codec"] = notes(0.8, 4.0, 6.0, struck=0.4)
    check = next(c for c in piano_verdict(lone)["checks"] if c["name"] == "struck_notes_per_second ratio to true")
    assert check["status"] == "pass" and check["numbers"]["codec"] == 0.4  # 0.7 <= 2 x 0.4
    lone["continuation"]["notes"]["model"]["struck_notes_per_second"] = 0.81
    assert statuses(piano_verdict(lone))["struck_notes_per_second ratio to true"] == "fail"
    lone["continuation"]["notes"]["codec"]["struck_notes_per_second"] = 0.0  # a codec that strikes none: only 0
    lone["continuation"]["notes"]["model"]["struck_notes_per_second"] = 0.05
    assert statuses(piano_verdict(lone))["struck_notes_per_second ratio to true"] == "fail"


def test_a_held_note_where_the_truth_fades_fails_on_the_level_trend_though_every_note_count_passes():
    def with_levels(model: float, true: float) -> dict:
        r = report(notes(0.8, 4.0, 6.0))
        r["continuation"]["notes"]["model"]["level_db_per_second"] = model
        r["continuation"]["notes"]["true"]["level_db_per_second"] = true
        return r

    held = piano_verdict(with_levels(0.0, -3.0))  # the prompt's last level held for 8 s: a drone
    s = statuses(held)
    assert s["level trend like true"] == "fail" and s["notes_per_second ratio to true"] == "pass"
    assert held["verdict"] == "fail" and "| 0 / -3 fail |" in results_row("salamander (test)", held)
    assert statuses(piano_verdict(with_levels(-2.0, -3.0)))["level trend like true"] == "pass"  # within 1.5 dB/s
    assert statuses(piano_verdict(with_levels(-7.0, -3.0)))["level trend like true"] == "fail"  # faded too fast
    # a steady truth (a performance) admits a level within 1 dB/s of it
    assert statuses(piano_verdict(with_levels(0.9, 0.0)))["level trend like true"] == "pass"
    assert statuses(piano_verdict(with_levels(-1.2, 0.0)))["level trend like true"] == "fail"
    assert "level trend like true" not in statuses(piano_verdict(report(notes(0.8, 4.0, 6.0))))  # older reports


def test_nll_above_a_floor_at_one_level_fewer_prompts_and_no_notes_fail():
    r = report(notes(0.8, 4.0, 6.0), n_prompts=7)
    r["nll_per_level"][3] = 5.1  # above unigram (5.0), below repeat (5.2)
    s = statuses(piano_verdict(r))
    assert s["NLL per level below unigram and repeat"] == "fail" and s["prompts"] == "fail"
    deaf = copy.deepcopy(report(notes(0.8, 4.0, 6.0)))
    deaf["continuation"]["notes"] = {"unavailable": "basic_pitch: onnxruntime missing"}
    verdict = piano_verdict(deaf)
    assert statuses(verdict)["notes heard"] == "fail" and verdict["verdict"] == "fail"


def test_the_codec_ceiling_names_the_checks_its_own_resynthesis_fails_and_leaves_the_verdict_alone():
    r = report(notes(0.8, 4.0, 6.0))
    # the codec renders the true continuation's tail as a hum: few of the prompt's pitch classes, onsets at 2.5x
    r["continuation"]["notes"]["codec"] = notes(0.1, 10.0, 6.0, struck=4.0)
    verdict = piano_verdict(r)
    ceiling = next(c for c in verdict["checks"] if c["name"] == "codec ceiling")
    assert ceiling["status"] == "info"
    assert ceiling["numbers"]["fails_too"] == ["pitch_class_correlation halfway", "notes_per_second ratio to true"]
    assert ceiling["numbers"]["notes_per_second ratio to true"] == 10.0
    assert verdict["verdict"] == piano_verdict(report(notes(0.8, 4.0, 6.0)))["verdict"]
    row = results_row("salamander (test)", verdict)
    assert "| pitch_class_correlation (0.1), notes_per_second (10) |" in row
    r["continuation"]["notes"]["codec"] = notes(0.8, 4.0, 6.0)  # a transparent codec fails nothing
    assert "| none |" in results_row("x", piano_verdict(r))
    assert "| n/a |" in results_row("x", piano_verdict(report(notes(0.8, 4.0, 6.0))))  # a report without it


def test_the_results_row_has_a_cell_per_header_column():
    row = results_row("other_piano (all)", piano_verdict(report(notes(0.7, 3.0, 5.0))))
    assert row.count("|") == RESULTS_HEADER.splitlines()[0].count("|")
    assert "0.7 / 0.8 / 0.2 (0.5) pass" in row and "0.6, 0.7 vs 0.8, 0.6" in row


def needs_fluidsynth() -> None:
    from pianogen_data.fluidsynth import DEFAULT_SOUNDFONT

    if shutil.which("fluidsynth") is None or not DEFAULT_SOUNDFONT.is_file():
        if os.environ.get("CI"):
            pytest.fail("fluidsynth and timgm6mb-soundfont must be installed in CI (make system)")
        pytest.skip("needs Debian's fluidsynth and timgm6mb-soundfont")


def test_piano_model_renders_the_other_piano_evaluates_and_writes_its_verdict(trained_run, tmp_path, isolated_home):
    needs_fluidsynth()
    out = tmp_path / "verdict"
    args = [sys.executable, str(BENCHMARKS / "piano_model.py"), str(trained_run), "--out", str(out), "--corpora",
            "other_piano", "--minutes", "0.5", "--prompts", "2", "--prompt-seconds", "0.5", "--seconds", "1",
            "--device", "cpu"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "piano_model.json").read_text())
    other = result["corpora"]["other_piano"]
    assert other["split"] == "all" and other["corpus"]["source"] == "maestro"
    assert Path(other["corpus"]["root"]).is_relative_to(isolated_home / "rendered")  # cached under the home
    assert (out / "other_piano" / "eval.json").is_file() and other["verdict"] in ("pass", "fail", "undecided")
    names = [c["name"] for c in other["checks"]]
    assert names[:5] == ["prompts", "pitch_class_correlation halfway", "notes_per_second ratio to true",
                         "struck_notes_per_second ratio to true", "distinct_pitches ratio to true"]
    assert "NLL per level below unigram and repeat" in names and "pitch_class_correlation above drone" in names
    assert all(c["status"] in ("pass", "fail", "n/a", "info") for c in other["checks"])
    assert result["results_md"].splitlines()[:2] == RESULTS_HEADER.splitlines()
    assert f"verdict: {result['verdict'].upper()}" in done.stdout


def test_piano_speed_times_generation_streaming_and_the_plain_decoder(trained_run, tmp_path):
    args = [sys.executable, str(BENCHMARKS / "piano_speed.py"), str(trained_run), "--out", str(tmp_path),
            "--prompt-seconds", "0.5", "--seconds", "0.5", "--repeats", "1", "--plain-frames", "4"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "piano_speed.json").read_text())
    assert result["threads"] == 2 and result["batch"] == 1 and set(result["by_precision"]) == {"int8", "fp32"}
    for r in result["by_precision"].values():
        assert r["frames"] == 100 and r["frame_rate"] == 200  # 0.5 s at the tiny codec's 200 frames/s
        assert math.isfinite(r["realtime_factor"]) and r["realtime_factor"] > 0
        assert r["end_to_end_realtime_factor"] < r["realtime_factor"]  # the prompt's encoding costs time too
        assert r["realtime_pass"] == (r["realtime_factor"] >= 2.0)
        stream = r["stream"]["runs"][0]
        assert stream["chunks"] >= 3  # 0.05 s first, then 0.25 s chunks: streamed, not one block
        assert stream["encode_s"] < stream["first_audio_s"]  # the prompt's encoding and prefill are counted
    plain = result["plain_decoder"]["by_precision"]
    assert set(plain) == {"int8", "fp32"} and all(p["ratio"] > 0 for p in plain.values())
    assert len(done.stdout.splitlines()) == 2 + 2 + 1  # a line per precision, per plain comparison, the path


def test_code_motion_tells_a_held_code_from_moving_ones():
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("code_motion", BENCHMARKS / "code_motion.py")
    code_motion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code_motion)
    held = torch.zeros(2, 4, 81, dtype=torch.long)  # one code for 81 frames at 80 frames/s
    moving = torch.arange(81).repeat(2, 4, 1)  # a new code every frame
    mixed = torch.tensor([[[1] * 41 + list(range(2, 42))]])  # held for 41 frames, then moving
    assert code_motion.motion(held, 80.0) == (0.0, 81 / 80)
    assert code_motion.motion(moving, 80.0) == (80.0, 1 / 80)
    changes, longest = code_motion.motion(mixed, 80.0)
    assert abs(changes - 40 / 80 * 80) < 1e-4 and longest == 41 / 80


def test_sampler_notes_scores_each_sampler_on_each_set(trained_run):
    args = [sys.executable, str(BENCHMARKS / "sampler_notes.py"), str(trained_run), "--samplers",
            "1.0:0:0:0,0.9:10:0:1", "--sets", "all:validation:2", "--prompt-seconds", "0.5", "--seconds", "1"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["sampler"], r["set"]) for r in rows] == [("1.0:0:0:0", "all:validation:2"),
                                                         ("0.9:10:0:1", "all:validation:2")]
    for r in rows:
        assert r["prompts"] >= 1 and r["true"] == rows[0]["true"]  # the same prompts and truth for every sampler
        assert set(r["model"]) == {"notes_per_second", "struck_notes_per_second", "distinct_pitches",
                                   "pitch_class_correlation"}


def test_loud_codes_measures_both_modes_on_each_set(trained_run):
    args = [sys.executable, str(BENCHMARKS / "loud_codes.py"), str(trained_run), "--sets", "all:validation:2",
            "--prompt-seconds", "0.5", "--seconds", "1", "--louder", "0"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["mode"] for r in rows] == ["teacher-forced", "free-running"]
    for r in rows:
        assert r["prompts"] >= 1 and len(r["loud_probability_by_second"]) == 1
        # codes at least as loud as the prompt's end: some of the probability of every frame, never all of it
        assert 0 < r["expected_loud_frames"] < r["frames"]
