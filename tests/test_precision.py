"""Decoding precisions: int8 Linear layers, and their NLL cost reported by `pianogen eval --precision`."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import pianogen
from pianogen.errors import PianogenError
from pianogen.generation.precision import Int8Linear, in_precision


def test_int8_linear_multiplies_by_its_int8_weights():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    quantized = Int8Linear(linear)
    x = torch.randn(3, 5, 64)
    weight = quantized.dequantized_weight()
    # per-channel symmetric, 7 bits: every row's largest weight is exactly +-63 steps, the others round to a step
    steps = weight / (linear.weight.abs().amax(dim=1, keepdim=True) / 63)
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert torch.allclose(steps.abs().amax(dim=1), torch.tensor(63.0))
    assert (weight - linear.weight).abs().max() <= linear.weight.abs().amax() / 63 / 2 + 1e-6
    exact = x @ weight.T + linear.bias
    got = quantized(x)
    assert got.shape == (3, 5, 48)
    # activations are quantized per call to 8 bits: close to the int8-weight product, far closer than a zero map
    assert (got - exact).abs().max() < 0.02 * exact.abs().max()


def test_int8_linear_does_not_saturate_on_large_activations():
    # AVX2's int8 kernel sums pairs of u8 x s8 products in int16: 8-bit activations at their extreme
    # against full-scale weights would clip (2 x 255 x 127 > 32767) without the 7-bit weights
    linear = nn.Linear(256, 8, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    x = torch.full((1, 256), 5.0)
    x[0, 0] = -5.0  # the zero point near the middle: 5.0 maps to 255
    got = Int8Linear(linear)(x)
    assert torch.allclose(got, linear(x), rtol=0.01)


def test_in_precision_int8_swaps_linears_but_keeps_the_folded_combine_map():
    model = pianogen.get_token_model("multi_output", n_levels=2, vocab_size=32, block_size=64, d_model=32,
                                     n_layers=1, n_heads=2, d_ff=64).eval()
    codes = torch.randint(0, 32, (2, 2, 20))
    with torch.inference_mode():
        reference = model(codes)
        in_precision(model, "int8")
        quantized = model(codes)
    assert isinstance(model.heads, Int8Linear) and isinstance(model.trunk.blocks[0].attn.qkv, Int8Linear)
    assert type(model.combine) is nn.Linear
    assert 0 < (quantized - reference).abs().max() < 0.1 * reference.abs().max()
    with pytest.raises(PianogenError, match="--precision must be one of fp32, bf16, int8"):
        in_precision(model, "fp8")


def test_int8_decoding_compiles_to_the_eager_tokens_and_a_copy_packs_its_own_weights():
    import copy

    from pianogen.generation.sampling import make_sampler

    torch.manual_seed(0)
    model = pianogen.get_token_model("multi_output", n_levels=2, vocab_size=32, block_size=64, d_model=32,
                                     n_layers=2, n_heads=2, d_ff=64).eval()
    in_precision(model, "int8")
    prompt = torch.randint(0, 32, (1, 2, 6))
    from torch._dynamo.utils import counters

    with torch.inference_mode():
        eager = model.generate(prompt, 12, make_sampler(temperature=0))
        counters.clear()
        # torch.compile cannot pass fbgemm's packed weights to an op: the graph calls pianogen::int8_linear
        compiled = model.generate(prompt, 12, make_sampler(temperature=0), compile=True)
    assert torch.equal(eager, compiled)
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]  # compiled whole, no fallback
    original = model.trunk.blocks[0].mlp[0]
    copied = copy.deepcopy(original)
    assert copied.handle != original.handle
    x = torch.randn(3, 32)
    expected = original(x)
    del original, model
    assert torch.equal(copied(x), expected)  # the copy still multiplies once the original is gone


def test_eval_reports_the_nll_of_each_precision_beside_fp32(trained_run, tmp_path):
    env = {**os.environ, "PIANOGEN_HOME": str(trained_run.parent / "home")}
    args = [sys.executable, "-m", "pianogen", "eval", str(trained_run), "--out", str(tmp_path / "e"),
            "--prompts", "1", "--prompt-seconds", "0.5", "--seconds", "1", "--device", "cpu", "--precision", "int8"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NLL per level at int8" in done.stdout
    import json

    report = json.loads((tmp_path / "e" / "eval.json").read_text())
    p = report["precision"]
    assert p["fp32_nll_per_level"] == report["nll_per_level"]  # the main table stays fp32
    assert p["nll_per_level"] != p["fp32_nll_per_level"]  # the int8 model was really scored
    assert abs(p["nll_change"]) < 0.05
    assert np.isclose(p["nll_change"], sum(p["nll_per_level"]) / sum(report["nll_per_level"]) - 1)
    assert "At precision `int8`" in (tmp_path / "e" / "report.md").read_text()
    bad = subprocess.run(args[:-1] + ["fp8"], capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 2 and "fp8" in bad.stderr


def test_int8_generation_writes_audio(trained_run, tmp_path):
    from pianogen.generation.generate import GenerationRequest, generate

    request = GenerationRequest(prompt="test:0", seconds=0.5, out=tmp_path / "g", prompt_seconds=0.4, top_k=20,
                                seed=3, precision="int8")
    report = generate(trained_run, request, progress=False)
    cont, _ = sf.read(tmp_path / "g/continuation_0.wav")
    assert report["settings"]["precision"] == "int8" and np.isfinite(cont).all() and np.abs(cont).max() > 0


def tiny_multi_output() -> nn.Module:
    torch.manual_seed(0)
    return pianogen.get_token_model("multi_output", n_levels=2, vocab_size=32, block_size=64, d_model=32,
                                    n_layers=2, n_heads=2, d_ff=64).eval()


def linear_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if type(m) is nn.Linear]


def test_fp32_lays_linear_weights_column_major_and_bf16_lays_them_back():
    model = tiny_multi_output()
    codes = torch.randint(0, 32, (1, 2, 20))
    with torch.inference_mode():
        reference = model(codes)
        in_precision(model, "fp32")
        assert all(w.stride() == (1, w.shape[0]) for w in linear_weights(model))  # [out, in], in-major
        torch.testing.assert_close(model(codes), reference, atol=1e-5, rtol=1e-5)
        in_precision(model, "bf16")
    assert all(w.is_contiguous() and w.dtype == torch.bfloat16 for w in linear_weights(model))


def test_bf16_decoding_attends_over_an_fp32_cache_where_the_cpu_has_no_bf16_units():
    """Each cached step's logits equal those of a prefill over the whole context (the same cache path)."""
    from pianogen_transformers.layers import CPU_HAS_BF16

    model = in_precision(tiny_multi_output(), "bf16")
    codes = torch.randint(0, 32, (1, 2, 12))
    with torch.inference_mode():
        model.trunk.setup_caches(1, 12)
        assert model.trunk.blocks[0].attn.cache.k.dtype == (torch.bfloat16 if CPU_HAS_BF16 else torch.float32)
        model.step_logits(codes[:, :, :6], 0)
        stepped = [model.step_logits(codes[:, :, t:t + 1], t, last_only=True) for t in range(6, 12)]
        for t, logits in zip(range(6, 12), stepped):
            model.trunk.setup_caches(1, 12)
            prefilled = model.step_logits(codes[:, :, :t + 1], 0, last_only=True)
            torch.testing.assert_close(logits, prefilled, atol=2e-2, rtol=2e-2)
        model.trunk.clear_caches()
