"""``pianogen bench``: one run that measures the speed of every stage, as ratios taken together.

Models are the recipes' sizes at random initialisation (speed does not depend on the weights):
the token model of ``novel`` (and of ``demo`` for CPU-sized training), the codec of
``codec_demo`` and the reference-size SoundStream (recipes/codec.toml). Units: a *token* is one code
(K per frame, as the trainer's ``tokens_per_s`` counts); a *frame* is one Transformer position;
*× real time* is audio seconds per wall second, at the frame rate of the codec the model is paired with.

Token-model measurements are in ``pianogen.bench.decode``, codec and data ones in ``pianogen.bench.codec``,
timing and peak FLOP/s in ``pianogen.bench.timing``.
"""

from __future__ import annotations

from typing import Any

import torch

import pianogen
from pianogen.bench.codec import (
    codec_speed,
    codec_training_speed,
    codec_vs_reference,
    reference_soundstream,
    synthesis_realtime_factor,
    tokenize_realtime_factor,
    untrained_codec,
)
from pianogen.bench.decode import (
    decode_vs_plain,
    generation_speed,
    plain_decoder_like,
    plain_in_precision,
    recompute_step,
    token_model,
    training_speed,
)
from pianogen.bench.timing import PEAK_BF16_FLOPS, mfu_note, peak_flops, peak_flops_of, timed
from pianogen.device import pick_device
from pianogen.generation.precision import in_precision

__all__ = ["PEAK_BF16_FLOPS", "codec_speed", "codec_training_speed", "codec_vs_reference", "decode_vs_plain",
           "generation_speed", "mfu_note", "peak_flops", "peak_flops_of", "plain_decoder_like", "plain_in_precision",
           "recompute_step", "reference_soundstream", "run_bench", "summary_rows", "synthesis_realtime_factor",
           "timed", "token_model", "tokenize_realtime_factor", "training_speed", "untrained_codec"]


def run_bench(device: str = "auto", frames: int = 1000, prompt_frames: int = 250, batches: tuple[int, ...] = (1, 8),
              train_steps: int = 3, audio_seconds: float = 30.0, progress: bool = True) -> dict[str, Any]:
    """Every measurement of ``pianogen bench``: the headline numbers at the top level, the rest under ``details``."""
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    torch_device = pick_device(device)
    name = torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "cpu"
    details: dict[str, Any] = {"threads": torch.get_num_threads(), "torch": torch.__version__}

    small_codec = untrained_codec("codec_demo")
    reference_codec = pianogen.get_codec("soundstream")
    novel = token_model("novel", reference_codec.codebook_size, torch_device)
    with console.status("training speed"):
        # CPU: short sequences (a 2048-frame novel step takes minutes); CUDA: the novel recipe's own shape
        seq = novel.block_size if torch_device.type == "cuda" else 256
        batch = pianogen.load_recipe("novel").train.batch_size if torch_device.type == "cuda" else 2
        details["train_novel"] = training_speed(novel, batch, seq, train_steps, torch_device)
        if torch_device.type == "cuda":  # on a CPU, compiling the training step costs more than the run
            details["train_novel_compiled"] = training_speed(novel, batch, seq, train_steps, torch_device,
                                                             compile=True)
        demo = pianogen.load_recipe("demo")
        demo_model = token_model("demo", small_codec.codebook_size, torch_device)
        details["train_demo"] = training_speed(demo_model, demo.train.batch_size, demo.data.window, train_steps,
                                               torch_device)
    with console.status("generation speed"):
        novel = in_precision(novel, "fp32")  # as `pianogen generate` decodes: the fp32 layout for one-row products
        details["generate_novel"] = [generation_speed(novel, prompt_frames, frames, b, reference_codec.frame_rate,
                                                      torch_device) for b in batches]
        if torch_device.type == "cuda":  # CUDA graphs; on a CPU compiled decoding gains ~nothing
            details["generate_novel_compiled"] = generation_speed(
                novel, prompt_frames, frames, batches[0], reference_codec.frame_rate, torch_device, compile=True)
        details["decode_vs_plain"] = decode_vs_plain(novel, prompt_frames, frames, reference_codec.frame_rate,
                                                     torch_device)
        novel = in_precision(novel, "bf16")
        details["generate_novel_bf16"] = generation_speed(novel, prompt_frames, frames, batches[0],
                                                          reference_codec.frame_rate, torch_device)
        if torch_device.type == "cuda":  # the fastest batch-1 mode on a GPU (3.5x eager on an H100)
            details["generate_novel_bf16_compiled"] = generation_speed(
                novel, prompt_frames, frames, batches[0], reference_codec.frame_rate, torch_device, compile=True)
    with console.status("codec and data speed"):
        details["codec_demo"] = codec_speed(small_codec, audio_seconds, torch_device)
        details["codec_reference"] = codec_speed(reference_codec, audio_seconds / 3, torch_device)
        details["codec_vs_reference_package"] = codec_vs_reference(reference_codec, audio_seconds / 3, torch_device)
        # the reference size's training step: one 0.5 s segment on a CPU, the recipe's batch of 1 s on CUDA
        on_cuda = torch_device.type == "cuda"
        details["train_codec_reference"] = codec_training_speed(
            "codec", torch_device.type, batch=pianogen.load_recipe("codec").codec_train.batch_size if on_cuda else 1,
            segment_seconds=1.0 if on_cuda else 0.5, steps=train_steps)
        details["synthesis_realtime_factor"] = synthesis_realtime_factor(audio_seconds)
        details["tokenize_demo_codec"] = tokenize_realtime_factor(small_codec, audio_seconds, torch_device)
        if torch_device.type == "cuda":  # on a CPU, minutes: the reference codec encodes near real time there
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
        (f"train novel model{' compiled' if key.endswith('compiled') else ''}, batch {d[key]['batch']} x "
         f"{d[key]['seq_len']} frames",
         f"{d[key]['tokens_per_s']:.0f} tokens/s"
         + (f", MFU {d[key]['mfu']:.1%}" if d[key].get("mfu") else "")
         + (f" ({result['mfu_note']})" if result.get("mfu_note") and result["device"] != "cpu" else ""))
        for key in ("train_novel", "train_novel_compiled") if key in d
    ] + [
        (f"train demo model, batch {d['train_demo']['batch']} x {d['train_demo']['seq_len']} frames",
         f"{d['train_demo']['tokens_per_s']:.0f} tokens/s"),
    ]
    variants = [(g, "fp32") for g in d["generate_novel"]] + [(d["generate_novel_bf16"], "bf16")]
    if "generate_novel_compiled" in d:
        variants.append((d["generate_novel_compiled"], "fp32 compiled"))
    if "generate_novel_bf16_compiled" in d:
        variants.append((d["generate_novel_bf16_compiled"], "bf16 compiled"))
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
    codec_train = d["train_codec_reference"]
    rows.append((f"train reference-size codec, batch {codec_train['batch']} x {codec_train['segment_seconds']:g} s",
                 f"{codec_train['steps_per_s']:.2f} steps/s reconstruction only, "
                 f"{codec_train['adversarial_steps_per_s']:.2f} steps/s with the discriminator"))
    rows.append(("synthetic corpus", f"{d['synthesis_realtime_factor']:.1f}x real time"))
    rows.append(("tokenization, demo codec", f"{d['tokenize_demo_codec']:.1f}x real time"))
    if "tokenize_reference_codec" in d:
        rows.append(("tokenization, reference codec", f"{d['tokenize_reference_codec']:.1f}x real time"))
    return rows
