"""``pianogen.continue_audio``: continue audio held in memory, as audiocraft's ``generate_continuation`` does.

The one generation pipeline (``pianogen.generation.generate.generate``) with the in-memory sink: the prompt is the end
of the given audio (resampled to the codec's rate, mixed to mono, as a file prompt is), the continuation comes
back alone as a tensor. Loaded runs are kept (``LoadedRuns``), so repeated calls pay for loading once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianogen.errors import PianogenError
from pianogen.generation.takes import MIN_SAMPLE_RATE, Recording

MAX_CHANNELS = 64  # more is almost surely a [samples, channels] array handed over untransposed


class LoadedRuns:
    """Runs kept loaded between generations, so only the first one pays for loading (thread-safe).

    Keyed on everything that changes what is loaded: the run, its checkpoint tag and that checkpoint's
    modification time (a run trained further meanwhile is loaded again), the precision (int8 and the fp32
    layout change the model in place) and the device. The ``size`` most recent stay. A loader for
    ``generate(..., loader=...)``."""

    def __init__(self, size: int = 2) -> None:
        self.size, self.entries, self.last_hit, self.loads = size, OrderedDict(), False, 0
        self.lock = threading.Lock()

    def __call__(self, run_dir: Path, request: Any, device: Any) -> tuple:
        from pianogen.generation.generate import load_generation_run
        from pianogen.training import checkpoint

        found = checkpoint.find(Path(run_dir) / "checkpoints", request.checkpoint)
        stamp = (found / checkpoint.MODEL_FILE).stat().st_mtime_ns if found else None
        key = (str(Path(run_dir).resolve()), request.checkpoint, stamp, request.precision, str(device))
        with self.lock:
            self.last_hit = key in self.entries
            if not self.last_hit:
                self.entries[key] = load_generation_run(run_dir, request, device)
                self.loads += 1
                while len(self.entries) > self.size:
                    self.entries.popitem(last=False)
            self.entries.move_to_end(key)
            return self.entries[key]


LOADED = LoadedRuns()


def as_recording(wav: Any, sample_rate: int) -> Recording:
    """A float tensor (or numpy array) [samples] or [channels, samples] -> a Recording; bad input is one line."""
    if isinstance(wav, np.ndarray):
        wav = torch.from_numpy(wav)
    if not isinstance(wav, torch.Tensor):
        raise PianogenError(f"wav must be a float tensor [channels, samples] or [samples], got {type(wav).__name__}")
    if not wav.is_floating_point():
        raise PianogenError(f"wav must hold floats in [-1, 1], got {wav.dtype}")
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2 or wav.shape[-1] == 0 or wav.shape[0] == 0:
        raise PianogenError(f"wav must be [channels, samples] or [samples] with samples, got shape {list(wav.shape)}")
    if wav.shape[0] > MAX_CHANNELS:
        raise PianogenError(f"wav has {wav.shape[0]} channels: [channels, samples] is expected (transpose a "
                            f"[samples, channels] array)")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate < MIN_SAMPLE_RATE:
        raise PianogenError(f"sample_rate must be an integer >= {MIN_SAMPLE_RATE} Hz, got {sample_rate!r}")
    samples = wav.detach().to("cpu", torch.float32 if wav.dtype != torch.float64 else torch.float64)
    bad = int((~torch.isfinite(samples)).sum())
    if bad:
        raise PianogenError(f"wav holds {bad} NaN or infinite samples")
    return Recording(samples.contiguous(), int(sample_rate), "FLOAT")


def continue_audio(wav: Any, sample_rate: int, seconds: float | None = None, run: str | Path = "piano",
                   seed: int = 0, prompt_seconds: float | None = None, temperature: float | None = None,
                   top_k: int | None = None, top_p: float | None = None, prompt_prior: float | None = None,
                   quiet_temperature_scale: float | None = None, ring_out: bool | None = None,
                   checkpoint: str = "best",
                   precision: str = "fp32", postfilters: list[dict[str, Any]] | None = None, device: str = "auto",
                   progress: bool = False) -> tuple[torch.Tensor, int]:
    """Continue ``wav`` (float [channels, samples] or [samples], any rate) by ``seconds``: returns the
    continuation alone, FloatTensor[channels, samples'] at the rate returned (the codec's: the model's mono
    audio, the same in every channel), post-filtered as the run's recipe says (or ``postfilters``).

    ``run``: a built-in run's name or a run folder. The prompt is the last ``prompt_seconds`` of ``wav``;
    ``seconds``, ``prompt_seconds``, ``temperature``, ``top_k``, ``top_p``, ``prompt_prior``,
    ``quiet_temperature_scale`` and ``ring_out`` default to the run's [generate] table. The same ``seed`` gives the
    same continuation."""
    from pianogen.generation.generate import GenerationRequest, generate
    from pianogen.generation.generate_options import with_recipe_defaults
    from pianogen.generation.sinks import MemorySink
    from pianogen.runs import resolve_run

    recording = as_recording(wav, sample_rate)
    ref = resolve_run(run)
    sampling = with_recipe_defaults(ref.path, dict(seconds=seconds, prompt_seconds=prompt_seconds,
                                                   temperature=temperature, top_k=top_k, top_p=top_p,
                                                   prompt_prior=prompt_prior,
                                                   quiet_temperature_scale=quiet_temperature_scale,
                                                   ring_out=ring_out))
    request = GenerationRequest(prompt="(audio in memory)", out=Path("(in memory)"), **sampling, seed=seed,
                                checkpoint=checkpoint, postfilters=postfilters, precision=precision)
    sink = MemorySink()
    generate(ref, request, device=device, progress=progress, loader=LOADED, sink=sink, recording=recording)
    generated = sink.generated
    continuation = generated.continuations[0].float().cpu()
    return continuation.expand(recording.channels, -1).contiguous(), generated.codec.sample_rate
