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


def test_recomputation_step_pays_for_the_heads_on_the_last_position_only():
    """The timed no-cache step gives the token of a plain recomputation and costs, as counted by
    FlopCounterMode, what generate(use_cache=False) costs: both apply the heads to the last position only
    (applying them to all N positions would add 2·B·(N-1)·D·K·V FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pianogen.bench import recompute_step
    from pianogen.generation.sampling import make_sampler

    model = tiny_model().eval()
    context = torch.randint(0, 32, (2, 2, 40), generator=torch.Generator().manual_seed(0))
    flops = {}
    for name, step in (("plain", lambda: model.generate(context, 1, make_sampler(0.0), use_cache=False)),
                       ("bench", lambda: recompute_step(model, context, make_sampler(0.0)))):
        with FlopCounterMode(display=False) as counter:
            token = step()
        flops[name] = (counter.get_total_flops(), token)
    assert torch.equal(flops["plain"][1], flops["bench"][1])
    assert flops["plain"][0] == flops["bench"][0]
    with FlopCounterMode(display=False) as counter:  # every position's heads: the difference is visible
        model.step_logits(context)
    B, N, D, KV = 2, 40, 32, 2 * 32
    assert counter.get_total_flops() - flops["bench"][0] >= 2 * B * (N - 1) * D * KV
    assert model.heads.__class__ is torch.nn.Linear  # the model's own heads are back


def test_peak_flops_match_exact_device_names_only():
    from pianogen.bench import peak_flops_of

    assert peak_flops_of("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_of("NVIDIA H100 PCIe") == 756e12 and peak_flops_of("NVIDIA H100 NVL") == 835e12
    assert peak_flops_of("NVIDIA L4") == 121e12 and peak_flops_of("NVIDIA L40") == 181e12
    assert peak_flops_of("NVIDIA B200") is None and peak_flops_of("NVIDIA H100") is None


def test_generation_speed_numbers_are_finite_and_positive():
    result = generation_speed(tiny_model(), prompt_frames=8, frames=40, batch=2, frame_rate=80.0,
                              device=torch.device("cpu"))
    for key in ("frames_per_s", "no_cache_frames_per_s", "cache_speedup", "realtime_factor"):
        assert math.isfinite(result[key]) and result[key] > 0, key


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


def test_codec_training_speed_runs_the_real_trainer_without_then_with_the_discriminator():
    from pianogen.bench import codec_training_speed

    result = codec_training_speed("codec_demo", "cpu", batch=1, segment_seconds=0.25, steps=1)
    assert result["size"]["channels"] == pianogen.load_recipe("codec_demo").codec.options["channels"]
    for key in ("steps_per_s", "adversarial_steps_per_s"):
        assert math.isfinite(result[key]) and result[key] > 0, key


def test_bench_cli_json_has_the_headline_keys():
    args = [sys.executable, "-m", "pianogen", "bench", "--json", "--device", "cpu", "--frames", "4",
            "--prompt-frames", "4", "--batch", "1", "--audio-seconds", "1", "--train-steps", "1"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["device"] == "cpu" and result["mfu"] is None and "CUDA devices only" in result["mfu_note"]
    for key in ("train_tokens_per_s", "generate_frames_per_s", "generate_no_cache_frames_per_s",
                "generate_realtime_factor", "codec_encode_realtime_factor", "codec_decode_realtime_factor",
                "tokenize_realtime_factor"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    by_precision = result["details"]["decode_vs_plain"]["by_precision"]
    assert set(by_precision) == {"fp32", "bf16", "int8"} and all(r["ratio"] > 0 for r in by_precision.values())
    # a row per precision (ours vs plain), one codec vs the package, one codec training
    assert len(summary_rows(result)) == 8 + 3 + 1 + 1
    # on CUDA the bench adds compiled training and bf16 CUDA-graph generation: a row each
    on_cuda = json.loads(done.stdout)
    on_cuda["details"]["train_novel_compiled"] = on_cuda["details"]["train_novel"]
    on_cuda["details"]["generate_novel_bf16_compiled"] = on_cuda["details"]["generate_novel_bf16"]
    extra = [what for what, _ in summary_rows(on_cuda) if "compiled" in what]
    assert extra == ["train novel model compiled, batch 2 x 256 frames",
                     "generate novel model bf16 compiled, batch 1, 4 frames after 4"]
    codec_train = result["details"]["train_codec_reference"]
    assert codec_train["size"] == {"channels": 58, "dim": 256, "strides": [2, 4, 5, 5], "n_levels": 16,
                                   "codebook_size": 1024}  # the reference size, from recipes/codec.toml
    assert codec_train["steps_per_s"] > 0 and codec_train["adversarial_steps_per_s"] > 0
    # real time is measured against the reference codec's own frame rate, not a constant
    rate = pianogen.get_codec("soundstream").frame_rate
    assert result["details"]["generate_novel"][0]["frame_rate"] == rate
    assert all(f"at {rate:g} frames/s" in value for what, value in summary_rows(result) if what.startswith("generate"))


def test_codec_quality_rows_land_in_their_own_table_whatever_follows_it(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "codec_quality.py"
    spec = importlib.util.spec_from_file_location("codec_quality", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\n| a |\n|---|\n| 1 |\n")
    module.append_row(results, "| first |")  # no table yet: header and row at the end
    results.write_text(results.read_text() + "\n## Later section\n\n| b |\n|---|\n| 2 |\n")
    module.append_row(results, "| second |")
    lines = results.read_text().splitlines()
    assert lines.index("| second |") == lines.index("| first |") + 1  # under the first, not after "Later"
    assert lines.index("| second |") < lines.index("## Later section") and lines.count("| 1 |") == 1
