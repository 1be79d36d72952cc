"""Token-model speed for ``pianogen bench``: training steps, generation with and without the KV cache,
and decoding against the plain eager decoder (benchmarks/plain_decoder.py) per precision.

Full recomputation without the KV cache costs a forward pass over the whole context at every
frame, minutes on a CPU at 1000 frames; its time is integrated from single steps timed at the
first, middle and last context length (Simpson's rule, exact for a cost quadratic in length).
Each such step applies the output heads to the last position only, as a fair recomputation would
(it keeps only that position's logits), so the KV cache's speed-up is not inflated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

import pianogen
from pianogen.bench.timing import peak_flops, timed
from pianogen.errors import PianogenError
from pianogen.generation.precision import PRECISIONS, in_precision
from pianogen.generation.sampling import make_sampler
from pianogen.interfaces import TokenModel


def token_model(recipe_name: str, vocab_size: int, device: torch.device) -> TokenModel:
    """A built-in recipe's token model at random initialisation (levels and window from the recipe)."""
    recipe = pianogen.load_recipe(recipe_name)
    torch.manual_seed(0)
    model = pianogen.get_token_model(recipe.model.name, n_levels=recipe.codec.levels, vocab_size=vocab_size,
                                     block_size=recipe.data.window, **recipe.model.options)
    return model.to(device)


def training_speed(model: TokenModel, batch: int, seq_len: int, steps: int, device: torch.device,
                   compile: bool = False) -> dict[str, Any]:
    """Tokens (codes, as the trainer counts them) and frames per second of AdamW steps on NLL over random
    codes [batch, K, seq_len]; bf16 autocast on CUDA, with MFU (FLOPs per Transformer position = frame).
    ``compile``: the forward through ``torch.compile`` (its compilation falls in the untimed warm-up step)."""
    model.train()
    forward = torch.compile(model) if compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    codes = torch.randint(0, model.vocab_size, (batch, model.n_levels, seq_len), device=device)
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()

    def step() -> None:
        with autocast:
            logits = forward(codes)[:, :, :-1]
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 2), codes[:, :, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(lambda: [step() for _ in range(steps)], device) / steps
    result = {"batch": batch, "seq_len": seq_len, "params": model.num_params(), "step_s": seconds, "compile": compile,
              "tokens_per_s": batch * model.n_levels * seq_len / seconds, "frames_per_s": batch * seq_len / seconds}
    peak = peak_flops(device)
    if peak:
        result["mfu"] = model.flops_per_token(seq_len) * batch * seq_len / seconds / peak
    model.eval()
    return result


def recompute_step(model: TokenModel, context: torch.Tensor, sample: Callable[[torch.Tensor], torch.Tensor]
                   ) -> torch.Tensor:
    """One frame by full recomputation over ``context`` [B, K, N] (no KV cache). generate_steps asks the
    model for the last position's logits only, so the heads run on that position alone."""
    return model.generate(context, 1, sample, use_cache=False)


def generation_speed(model: TokenModel, prompt_frames: int, frames: int, batch: int, frame_rate: float,
                     device: torch.device, compile: bool = False) -> dict[str, Any]:
    """Frames/s per stream with the static KV cache over a real ``frames`` run, and without it
    (integrated as in the module docstring); × real time at the codec's ``frame_rate``."""
    model.eval()
    if prompt_frames + frames > model.block_size:
        raise PianogenError(f"prompt {prompt_frames} + {frames} frames exceed the model's {model.block_size}")
    codes = torch.randint(0, model.vocab_size, (batch, model.n_levels, prompt_frames + frames), device=device)
    sample = make_sampler(temperature=1.0, top_k=250, seed=0)
    prompt = codes[:, :, :prompt_frames]
    model.generate(prompt, 4, sample, compile=compile)  # warm-up: allocator, kernels, compilation
    cached_s = timed(lambda: model.generate(prompt, frames, sample, compile=compile), device, warmup=False)

    def one_step(context: int) -> float:  # a full-recomputation step reads the whole context
        return timed(lambda: recompute_step(model, codes[:, :, :context], sample), device, repeat=2)

    first, middle, last = (one_step(prompt_frames + f) for f in (0, frames // 2, frames - 1))
    no_cache_s = frames * (first + 4 * middle + last) / 6
    return {"batch": batch, "prompt_frames": prompt_frames, "frames": frames,
            "frames_per_s": frames / cached_s, "no_cache_frames_per_s": frames / no_cache_s,
            "cache_speedup": no_cache_s / cached_s, "realtime_factor": frames / cached_s / frame_rate,
            "frame_rate": frame_rate}


PLAIN_DECODER = Path(__file__).resolve().parents[2] / "benchmarks" / "plain_decoder.py"


def plain_decoder_like(model: TokenModel) -> torch.nn.Module | None:
    """benchmarks/plain_decoder.py's PlainDecoder at ``model``'s size (None outside a source checkout)."""
    if not PLAIN_DECODER.is_file():
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location("pianogen_plain_decoder", PLAIN_DECODER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    c = model.config  # type: ignore[attr-defined]
    torch.manual_seed(0)
    return module.PlainDecoder(c.n_levels, c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.d_ff, model.block_size)


def plain_in_precision(plain: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The anchor in ``precision`` by torch's stock means: .to(bfloat16), or torch.ao dynamic int8 Linear layers."""
    if precision != "int8":
        return plain.to(PRECISIONS[precision])
    import warnings

    with warnings.catch_warnings():  # torch.ao's eager quantization warns that it moves to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(plain, {torch.nn.Linear}, dtype=torch.qint8)


def decode_vs_plain(model: TokenModel, prompt_frames: int, frames: int, frame_rate: float, device: torch.device,
                    precisions: tuple[str, ...] = ("fp32", "bf16", "int8"), repeats: int = 3,
                    clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Batch-1 frames/s of ``model.generate`` against the plain eager decoder of the same size, per precision,
    both sampling top-k 250: ``repeats`` runs of each, interleaved (A B A B ...) so that load on a shared
    machine hits both alike; medians of the frames/s and of the per-pair ratios. ``clock``: wall time, or
    ``time.process_time`` for the CPU time of one thread on a machine shared with other jobs."""
    import copy
    import statistics

    plain_fp32 = plain_decoder_like(model)
    if plain_fp32 is None:
        return {}
    plain_fp32 = plain_fp32.to(device).eval()
    codes = torch.randint(0, model.vocab_size, (1, model.n_levels, prompt_frames), device=device)
    sample = make_sampler(temperature=1.0, top_k=250, seed=0)
    generator = torch.Generator(device=device).manual_seed(0)
    results: dict[str, Any] = {}
    for precision in precisions:
        if precision == "int8" and device.type != "cpu":
            continue
        ours = in_precision(copy.deepcopy(model).eval(), precision)
        plain = plain_in_precision(copy.deepcopy(plain_fp32), precision)
        runs = {"ours": lambda ours=ours: ours.generate(codes, frames, sample),
                "plain": lambda plain=plain: plain.generate(codes, frames, generator=generator)}
        speeds: dict[str, list[float]] = {"ours": [], "plain": []}
        with torch.inference_mode():
            for run in runs.values():
                run()  # warm-up: allocator, kernels, the folded tables
            for _ in range(repeats):
                for name, run in runs.items():
                    speeds[name].append(frames / timed(run, device, warmup=False, clock=clock))
        ours_fps, plain_fps = statistics.median(speeds["ours"]), statistics.median(speeds["plain"])
        results[precision] = {"frames_per_s": ours_fps, "plain_frames_per_s": plain_fps,
                              "ratio": statistics.median(a / b for a, b in zip(speeds["ours"], speeds["plain"])),
                              "realtime_factor": ours_fps / frame_rate, "runs": speeds}
    return {"prompt_frames": prompt_frames, "frames": frames, "repeats": repeats, "frame_rate": frame_rate,
            "by_precision": results}


