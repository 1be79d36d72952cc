"""``pianogen bench``: one run that measures the speed of every stage, as ratios taken together.

Models are the recipes' sizes at random initialisation (speed does not depend on the weights):
the token model of ``novel`` (and of ``demo`` for CPU-sized training), the codec of
``codec_demo`` and the reference-size SoundStream. Units: a *token* is one code (K per frame, as
the trainer's ``tokens_per_s`` counts); a *frame* is one Transformer position; *× real time* is
audio seconds per wall second.

Full recomputation without the KV cache costs a forward pass over the whole context at every
frame, minutes on a CPU at 1000 frames; its time is integrated from single steps timed at the
first, middle and last context length (Simpson's rule, exact for a cost quadratic in length).
Each such step applies the output heads to the last position only, as a fair recomputation would
(it keeps only that position's logits), so the KV cache's speed-up is not inflated.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pianogen
from pianogen.device import pick_device
from pianogen.errors import PianogenError
from pianogen.interfaces import Codec, TokenModel
from pianogen.precision import PRECISIONS, in_precision
from pianogen.sampling import make_sampler

# Dense (no sparsity) bf16 tensor-core peak FLOP/s by the exact torch.cuda.get_device_name(), for MFU
# (PaLM / nanoGPT). Exact names, because variants share substrings: the H100 PCIe (756 TF) and NVL
# (835 TF) are not the SXM (989 TF), and "L4" is in "L40". V100 and T4 have no bf16 tensor cores.
PEAK_BF16_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA H100 NVL": 835e12,  # SXM5, PCIe, NVL
    "NVIDIA H200": 989e12, "NVIDIA H200 NVL": 835e12, "NVIDIA GH200 480GB": 989e12,
    "NVIDIA A100-SXM4-40GB": 312e12, "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA L40S": 362e12, "NVIDIA L40": 181e12, "NVIDIA L4": 121e12, "NVIDIA A10G": 70e12, "NVIDIA A10": 125e12,
    "NVIDIA GeForce RTX 4090": 165e12, "NVIDIA GeForce RTX 3090": 71e12,
}


def peak_flops_of(name: str) -> float | None:
    """The dense bf16 peak of a CUDA device named exactly ``name``; None when it is not in the table."""
    return PEAK_BF16_FLOPS.get(name.strip())


def peak_flops(device: torch.device) -> float | None:
    return peak_flops_of(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def mfu_note(device: torch.device) -> str | None:
    """Why MFU is missing, when it is: a CPU, or a CUDA device whose peak the table does not know."""
    if device.type != "cuda":
        return "MFU is reported for CUDA devices only"
    name = torch.cuda.get_device_name(device)
    if peak_flops_of(name) is None:
        return f"unknown device '{name}': no dense bf16 peak in PEAK_BF16_FLOPS, so no MFU"
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int = 1, warmup: bool = True) -> float:
    """Best wall seconds of ``repeat`` calls, after one untimed warm-up call unless ``warmup`` is False."""
    if warmup:
        fn()
    best = math.inf
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def token_model(recipe_name: str, vocab_size: int, device: torch.device) -> TokenModel:
    """A built-in recipe's token model at random initialisation (levels and window from the recipe)."""
    recipe = pianogen.load_recipe(recipe_name)
    torch.manual_seed(0)
    model = pianogen.get_token_model(recipe.model.name, n_levels=recipe.codec.levels, vocab_size=vocab_size,
                                     block_size=recipe.data.window, **recipe.model.options)
    return model.to(device)


def training_speed(model: TokenModel, batch: int, seq_len: int, steps: int, device: torch.device) -> dict[str, Any]:
    """Tokens (codes, as the trainer counts them) and frames per second of AdamW steps on NLL over random
    codes [batch, K, seq_len]; bf16 autocast on CUDA, with MFU (FLOPs per Transformer position = frame)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    codes = torch.randint(0, model.vocab_size, (batch, model.n_levels, seq_len), device=device)
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()

    def step() -> None:
        with autocast:
            logits = model(codes)[:, :, :-1]
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 2), codes[:, :, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(lambda: [step() for _ in range(steps)], device) / steps
    result = {"batch": batch, "seq_len": seq_len, "params": model.num_params(), "step_s": seconds,
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


PLAIN_DECODER = Path(__file__).resolve().parents[1] / "benchmarks" / "plain_decoder.py"


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
                    precisions: tuple[str, ...] = ("fp32", "bf16", "int8"), repeats: int = 3) -> dict[str, Any]:
    """Batch-1 frames/s of ``model.generate`` against the plain eager decoder of the same size, per precision,
    both sampling top-k 250: ``repeats`` runs of each, interleaved (A B A B ...) so that load on a shared
    machine hits both alike; medians of the frames/s and of the per-pair ratios."""
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
                    speeds[name].append(frames / timed(run, device, warmup=False))
        ours_fps, plain_fps = statistics.median(speeds["ours"]), statistics.median(speeds["plain"])
        results[precision] = {"frames_per_s": ours_fps, "plain_frames_per_s": plain_fps,
                              "ratio": statistics.median(a / b for a, b in zip(speeds["ours"], speeds["plain"])),
                              "realtime_factor": ours_fps / frame_rate, "runs": speeds}
    return {"prompt_frames": prompt_frames, "frames": frames, "repeats": repeats, "frame_rate": frame_rate,
            "by_precision": results}


def codec_speed(codec: Codec, seconds: float, device: torch.device) -> dict[str, float]:
    """Encode and decode × real time on ``seconds`` of noise in one batch item."""
    codec = codec.to(device).eval()
    wav = torch.randn(1, 1, round(seconds * codec.sample_rate), device=device) * 0.1
    with torch.inference_mode():
        encode_s = timed(lambda: codec.encode(wav), device)
        codes = codec.encode(wav)
        decode_s = timed(lambda: codec.decode(codes), device)
    return {"encode_realtime_factor": seconds / encode_s, "decode_realtime_factor": seconds / decode_s}


def reference_soundstream(config: Any) -> torch.nn.Module | None:
    """The reference package's SoundStream (``soundstream==0.0.1``, haydenshively) at ``config``'s size;
    None when that package is not installed (it is in the ``dev`` extra)."""
    try:
        import warnings

        with warnings.catch_warnings():  # vector-quantize-pytorch's deprecated autocast decorators
            warnings.simplefilter("ignore")
            from soundstream.soundstream import SoundStream as Reference
    except ImportError:
        return None
    torch.manual_seed(0)
    return Reference(n_q=config.n_levels, codebook_size=config.codebook_size, D=config.dim, C=config.channels,
                     strides=tuple(config.strides))


def codec_vs_reference(codec: Codec, seconds: float, device: torch.device, repeats: int = 3) -> dict[str, Any]:
    """Encode and decode x real time of our SoundStream and of the reference package's model of the same
    size on the same ``seconds`` of noise, interleaved ``repeats`` times (medians); {} without the package.
    Ours encodes to codes and decodes from them; the reference's encode ends at its quantized latent and
    its decode starts there (its own API), so it does a little less work than ours."""
    import statistics

    config = codec.config  # type: ignore[attr-defined]
    reference = reference_soundstream(config) if len(config.strides) == 4 else None  # its encoder has 4 blocks
    if reference is None:
        return {}
    codec, reference = codec.to(device).eval(), reference.to(device).eval()
    wav = torch.randn(1, 1, round(seconds * codec.sample_rate), device=device) * 0.1
    with torch.inference_mode():
        codes = codec.encode(wav)
        latent = reference(wav, mode="encode")  # the first call also runs the reference's k-means init
        runs = {"encode": {"ours": lambda: codec.encode(wav), "reference": lambda: reference(wav, mode="encode")},
                "decode": {"ours": lambda: codec.decode(codes), "reference": lambda: reference(latent, mode="decode")}}
        speeds = {f"{what}_{who}": [] for what in runs for who in ("ours", "reference")}
        for _ in range(repeats):
            for what, pair in runs.items():
                for who, run in pair.items():
                    speeds[f"{what}_{who}"].append(seconds / timed(run, device, warmup=False))
    result: dict[str, Any] = {k + "_realtime_factor": statistics.median(v) for k, v in speeds.items()}
    result.update(seconds=seconds, repeats=repeats, runs=speeds)
    return result


def synthesis_realtime_factor(seconds: float, seed: int = 0) -> float:
    """Seconds of synthetic corpus (compose, render, WAV + MIDI written) per wall second."""
    from pianogen.data.synth import write_corpus

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_corpus(Path(tmp) / "corpus", seconds / 60, seed, progress=False)
        return seconds / (time.perf_counter() - start)


def tokenize_realtime_factor(codec: Codec, seconds: float, device: torch.device, chunk_seconds: float = 15.0,
                             overlap_seconds: float = 1.0) -> float:
    """The whole per-piece tokenization path × real time: soundfile read of 44.1 kHz stereo, mono +
    resample, chunked batched encoding, stitching, the atomic uint16 .npy write."""
    from pianogen.data import synth
    from pianogen.data.audio import load_audio, save_audio
    from pianogen.data.tokenize import encode_stitched, save_codes

    codec = codec.to(device).eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "piece.wav"
        save_audio(path, synth.render(synth.compose(rng, seconds), rng), synth.SAMPLE_RATE)

        def run() -> None:
            codes = encode_stitched(codec, load_audio(path, codec.sample_rate), chunk_seconds, overlap_seconds)
            save_codes(Path(tmp) / "piece.npy", codes)

        return seconds / timed(run, device)


def run_bench(device: str = "auto", frames: int = 1000, prompt_frames: int = 250, batches: tuple[int, ...] = (1, 8),
              train_steps: int = 3, audio_seconds: float = 30.0, progress: bool = True) -> dict[str, Any]:
    """Every measurement of ``pianogen bench``: the headline numbers at the top level, the rest under ``details``."""
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    torch_device = pick_device(device)
    name = torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "cpu"
    details: dict[str, Any] = {"threads": torch.get_num_threads(), "torch": torch.__version__}

    codec_demo = pianogen.load_recipe("codec_demo")
    small_codec = pianogen.get_codec("soundstream", **{k: v for k, v in codec_demo.codec.options.items()
                                                       if k != "checkpoint"})
    reference_codec = pianogen.get_codec("soundstream")
    novel = token_model("novel", reference_codec.codebook_size, torch_device)
    with console.status("training speed"):
        # CPU: short sequences (a 2048-frame novel step takes minutes); CUDA: the novel recipe's own shape
        seq = novel.block_size if torch_device.type == "cuda" else 256
        batch = pianogen.load_recipe("novel").train.batch_size if torch_device.type == "cuda" else 2
        details["train_novel"] = training_speed(novel, batch, seq, train_steps, torch_device)
        demo = pianogen.load_recipe("demo")
        demo_model = token_model("demo", small_codec.codebook_size, torch_device)
        details["train_demo"] = training_speed(demo_model, demo.train.batch_size, demo.data.window, train_steps,
                                               torch_device)
    with console.status("generation speed"):
        details["generate_novel"] = [generation_speed(novel, prompt_frames, frames, b, reference_codec.frame_rate,
                                                      torch_device) for b in batches]
        if torch_device.type == "cuda":  # CUDA graphs; on CPU compiled decoding is slower (full-buffer attention)
            details["generate_novel_compiled"] = generation_speed(
                novel, prompt_frames, frames, batches[0], reference_codec.frame_rate, torch_device, compile=True)
        details["decode_vs_plain"] = decode_vs_plain(novel, prompt_frames, frames, reference_codec.frame_rate,
                                                     torch_device)
        details["generate_novel_bf16"] = generation_speed(in_precision(novel, "bf16"), prompt_frames, frames,
                                                          batches[0], reference_codec.frame_rate, torch_device)
    with console.status("codec and data speed"):
        details["codec_demo"] = codec_speed(small_codec, audio_seconds, torch_device)
        details["codec_reference"] = codec_speed(reference_codec, audio_seconds / 3, torch_device)
        details["codec_vs_reference_package"] = codec_vs_reference(reference_codec, audio_seconds / 3, torch_device)
        details["synthesis_realtime_factor"] = synthesis_realtime_factor(audio_seconds)
        details["tokenize_demo_codec"] = tokenize_realtime_factor(small_codec, audio_seconds, torch_device)
        if torch_device.type == "cuda":  # the reference codec tokenizes at ~4x real time on a 2-core CPU
            details["tokenize_reference_codec"] = tokenize_realtime_factor(reference_codec, audio_seconds,
                                                                           torch_device)

    single = details["generate_novel"][0]
    return {
        "device": name,
        "train_tokens_per_s": details["train_novel"]["tokens_per_s"],
        "mfu": details["train_novel"].get("mfu"),
        "peak_flops": peak_flops(torch_device),
        "mfu_note": mfu_note(torch_device),
        "generate_frames_per_s": single["frames_per_s"],
        "generate_no_cache_frames_per_s": single["no_cache_frames_per_s"],
        "generate_realtime_factor": single["realtime_factor"],
        "codec_encode_realtime_factor": details["codec_demo"]["encode_realtime_factor"],
        "codec_decode_realtime_factor": details["codec_demo"]["decode_realtime_factor"],
        "tokenize_realtime_factor": details["tokenize_demo_codec"],
        "details": details,
    }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) lines for the terminal and RESULTS.md."""
    d = result["details"]
    rows = [
        (f"train novel model, batch {d['train_novel']['batch']} x {d['train_novel']['seq_len']} frames",
         f"{d['train_novel']['tokens_per_s']:.0f} tokens/s"
         + (f", MFU {d['train_novel']['mfu']:.1%}" if d["train_novel"].get("mfu") else "")
         + (f" ({result['mfu_note']})" if result.get("mfu_note") and result["device"] != "cpu" else "")),
        (f"train demo model, batch {d['train_demo']['batch']} x {d['train_demo']['seq_len']} frames",
         f"{d['train_demo']['tokens_per_s']:.0f} tokens/s"),
    ]
    variants = [(g, "fp32") for g in d["generate_novel"]] + [(d["generate_novel_bf16"], "bf16")]
    if "generate_novel_compiled" in d:
        variants.append((d["generate_novel_compiled"], "fp32 compiled"))
    for g, precision in variants:
        rows.append((f"generate novel model {precision}, batch {g['batch']}, {g['frames']} frames after "
                     f"{g['prompt_frames']}",
                     f"{g['frames_per_s']:.1f} frames/s per stream ({g['realtime_factor']:.2f}x real time at "
                     f"{g['frame_rate']:g} frames/s); no cache {g['no_cache_frames_per_s']:.2f} frames/s; "
                     f"cache {g['cache_speedup']:.1f}x"))
    plain = d.get("decode_vs_plain") or {}
    for precision, r in plain.get("by_precision", {}).items():
        rows.append((f"generate novel model {precision} vs plain eager decoder, batch 1, median of {plain['repeats']}",
                     f"{r['frames_per_s']:.1f} vs {r['plain_frames_per_s']:.1f} frames/s: {r['ratio']:.2f}x "
                     f"({r['realtime_factor']:.2f}x real time at {plain['frame_rate']:g} frames/s)"))
    for key in ("codec_demo", "codec_reference"):
        rows.append((f"{key.replace('_', ' ')} encode / decode", f"{d[key]['encode_realtime_factor']:.1f}x / "
                     f"{d[key]['decode_realtime_factor']:.1f}x real time"))
    versus = d.get("codec_vs_reference_package") or {}
    if versus:
        rows.append((f"reference-size codec, ours vs the soundstream package, median of {versus['repeats']}",
                     f"encode {versus['encode_ours_realtime_factor']:.1f}x vs "
                     f"{versus['encode_reference_realtime_factor']:.1f}x, decode "
                     f"{versus['decode_ours_realtime_factor']:.1f}x vs "
                     f"{versus['decode_reference_realtime_factor']:.1f}x real time"))
    rows.append(("synthetic corpus", f"{d['synthesis_realtime_factor']:.1f}x real time"))
    rows.append(("tokenization, demo codec", f"{d['tokenize_demo_codec']:.1f}x real time"))
    if "tokenize_reference_codec" in d:
        rows.append(("tokenization, reference codec", f"{d['tokenize_reference_codec']:.1f}x real time"))
    return rows
