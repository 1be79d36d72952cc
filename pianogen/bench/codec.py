"""Codec and data speed for ``pianogen bench``: encode and decode × real time (ours beside the reference
package's model), codec-training steps/s through the real trainer, synthesis and tokenization."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import pianogen
from pianogen.bench.timing import timed
from pianogen.interfaces import Codec


def untrained_codec(recipe_name: str) -> Codec:
    """A recipe's codec at its size and random initialisation (speed does not depend on the weights)."""
    recipe = pianogen.load_recipe(recipe_name)
    return pianogen.get_codec(recipe.codec.name, **{k: v for k, v in recipe.codec.options.items()
                                                    if k != "checkpoint"})


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


def composed_corpus(root: Path, seconds: float, seed: int = 0) -> list[Any]:
    """The pieces of the data source ``synthetic`` (the data plugin's composer and renderer) holding ``seconds``
    of piano at ``root``, written there on this first read."""
    return pianogen.get_data_source("synthetic", root=str(root), minutes=seconds / 60, seed=seed).pieces()


def synthesis_realtime_factor(seconds: float, seed: int = 0) -> float:
    """Seconds of synthetic corpus (compose, render, WAV + MIDI written) per wall second."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        composed_corpus(Path(tmp) / "corpus", seconds, seed)
        return seconds / (time.perf_counter() - start)


def tokenize_realtime_factor(codec: Codec, seconds: float, device: torch.device, chunk_seconds: float = 15.0,
                             overlap_seconds: float = 1.0) -> float:
    """The whole per-piece tokenization path × real time, over a synthetic corpus of ``seconds``: soundfile
    read of 44.1 kHz stereo, mono + resample, chunked batched encoding, stitching, the atomic uint16 .npy
    write."""
    from pianogen.data.audio import load_audio
    from pianogen.data.tokenize import encode_stitched, save_codes

    codec = codec.to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        pieces = composed_corpus(Path(tmp) / "corpus", seconds)
        audio_seconds = sum(piece.duration for piece in pieces)

        def run() -> None:
            for i, piece in enumerate(pieces):
                codes = encode_stitched(codec, load_audio(piece.path, codec.sample_rate), chunk_seconds,
                                        overlap_seconds)
                save_codes(Path(tmp) / f"piece{i}.npy", codes)

        return audio_seconds / timed(run, device)


def codec_training_speed(recipe_name: str = "codec", device: str = "cpu", batch: int = 1,
                         segment_seconds: float = 0.5, steps: int = 2, precision: str = "fp32") -> dict[str, Any]:
    """Optimizer steps/s of the real codec trainer (``train_codec``) at ``recipe_name``'s codec size on a
    short batch (``batch`` x ``segment_seconds`` of a small synthetic corpus), without and with the
    discriminator: 3 x ``steps`` steps logged every ``steps``; the first group (warm-up, k-means start)
    is not counted, the second is reconstruction only, the third adds the adversarial losses. ``precision``:
    the recipe's ``codec_train.precision`` (bf16 autocasts encoder and decoder on CUDA)."""
    from pianogen.training.codec_train import metrics_path, train_codec

    with tempfile.TemporaryDirectory() as tmp:
        recipe = pianogen.load_recipe(recipe_name, [
            "data.source=synthetic", f"data.root={tmp}/corpus", "data.minutes=0.5", "data.seed=0",
            f"codec.checkpoint={tmp}/codec.safetensors", f"run.device={device}",
            f"codec_train.steps={3 * steps}", f"codec_train.batch_size={batch}",
            f"codec_train.segment_seconds={segment_seconds}", f"codec_train.log_every={steps}",
            f"codec_train.save_every={10 * steps}", "codec_train.discriminator=true",
            f"codec_train.discriminator_start={2 * steps}", f"codec_train.precision={precision}"])
        out = train_codec(recipe, progress=False)
        rows = [json.loads(line) for line in metrics_path(out).read_text().splitlines()]
    audio_per_step = batch * segment_seconds
    reconstruction, adversarial = (row["audio_s_per_s"] / audio_per_step for row in rows[1:3])
    config = recipe.codec.options
    return {"steps_per_s": reconstruction, "adversarial_steps_per_s": adversarial, "batch": batch,
            "segment_seconds": segment_seconds, "steps": steps, "precision": precision,
            "size": {k: config.get(k) for k in ("channels", "dim", "strides", "n_levels", "codebook_size")}}
