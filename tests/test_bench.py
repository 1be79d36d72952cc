"""`pianogen bench` and its measurements, on tiny settings: every number present, finite, positive."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import torch

import pianogen
from pianogen.bench import (
    codec_speed,
    codec_vs_reference,
    decode_vs_plain,
    generation_speed,
    summary_rows,
    training_speed,
)


def tiny_model():
    return pianogen.get_token_model("multi_output", n_levels=2, vocab_size=32, block_size=64, d_model=32,
                                    n_layers=1, n_heads=2, d_ff=64)


def test_generation_speed_compares_cache_with_recomputation():
    result = generation_speed(tiny_model(), prompt_frames=8, frames=40, batch=2, frame_rate=80.0,
                              device=torch.device("cpu"))
    assert result["frames_per_s"] > 0 and result["no_cache_frames_per_s"] > 0
    assert math.isclose(result["cache_speedup"], result["frames_per_s"] / result["no_cache_frames_per_s"])
    assert math.isclose(result["realtime_factor"], result["frames_per_s"] / 80.0)


def test_decode_vs_plain_times_both_decoders_per_precision():
    result = decode_vs_plain(tiny_model(), prompt_frames=8, frames=12, frame_rate=80.0, device=torch.device("cpu"),
                             repeats=3)
    assert set(result["by_precision"]) == {"fp32", "bf16", "int8"}
    for r in result["by_precision"].values():
        assert len(r["runs"]["ours"]) == len(r["runs"]["plain"]) == 3
        ratios = sorted(a / b for a, b in zip(r["runs"]["ours"], r["runs"]["plain"]))
        assert math.isclose(r["ratio"], ratios[1]) and math.isclose(r["frames_per_s"], sorted(r["runs"]["ours"])[1])


def test_codec_vs_reference_package_times_both_at_one_size():
    # the reference package's encoder has exactly four blocks
    codec = pianogen.get_codec("soundstream", sample_rate=8000, channels=2, dim=8, strides=[2, 2, 2, 2], n_levels=2,
                               codebook_size=8)
    result = codec_vs_reference(codec, 0.5, torch.device("cpu"), repeats=3)
    for key in ("encode_ours", "encode_reference", "decode_ours", "decode_reference"):
        assert len(result["runs"][key]) == 3
        assert math.isclose(result[key + "_realtime_factor"], sorted(result["runs"][key])[1])


def test_training_and_codec_speed():
    train = training_speed(tiny_model(), batch=2, seq_len=16, steps=2, device=torch.device("cpu"))
    assert train["tokens_per_s"] > 0 and "mfu" not in train  # MFU needs a known CUDA peak
    codec = pianogen.get_codec("soundstream", sample_rate=8000, channels=2, dim=8, strides=[2, 4], n_levels=2,
                               codebook_size=8)
    speed = codec_speed(codec, 0.5, torch.device("cpu"))
    assert speed["encode_realtime_factor"] > 0 and speed["decode_realtime_factor"] > 0


def test_bench_cli_json_has_the_design_keys():
    args = [sys.executable, "-m", "pianogen", "bench", "--json", "--device", "cpu", "--frames", "4",
            "--prompt-frames", "4", "--batch", "1", "--audio-seconds", "1", "--train-steps", "1"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["device"] == "cpu" and result["mfu"] is None
    for key in ("train_tokens_per_s", "generate_frames_per_s", "generate_no_cache_frames_per_s",
                "generate_realtime_factor", "codec_encode_realtime_factor", "codec_decode_realtime_factor",
                "tokenize_realtime_factor"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    by_precision = result["details"]["decode_vs_plain"]["by_precision"]
    assert set(by_precision) == {"fp32", "bf16", "int8"} and all(r["ratio"] > 0 for r in by_precision.values())
    assert len(summary_rows(result)) == 8 + 3 + 1  # a row per precision (ours vs plain), one codec vs the package
