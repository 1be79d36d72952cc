"""Continue a piano prompt: encode, prefill the KV cache, sample frame by frame, decode, filter, write."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import pianogen
from pianogen import pipeline
from pianogen.data.audio import load_audio, save_audio
from pianogen.device import pick_device
from pianogen.errors import PianogenError
from pianogen.plots import plot_mel
from pianogen.sampling import make_sampler

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass
class GenerationRequest:
    prompt: str  # a WAV/FLAC/... path, or "<split>:<n>" for piece n of the run's corpus split
    seconds: float  # continuation length
    out: Path  # output directory
    prompt_seconds: float = 5.0  # seconds of the prompt used, from its start (all of it when shorter)
    temperature: float = 1.0  # 0 = argmax
    top_k: int = 250  # 0 = off
    top_p: float = 0.0  # 0 = off; wins over top_k
    seed: int = 0  # makes the continuation reproducible
    num: int = 1  # continuations of the same prompt, sampled as one batch
    checkpoint: str = "best"  # best | last
    postfilters: list[dict[str, Any]] | None = None  # [{"name": ..., **options}]; None = the recipe's
    use_cache: bool = True  # False recomputes the whole context every step (for benchmarks)
    precision: str = "fp32"  # fp32 | bf16: weights and KV cache in bfloat16, half the memory traffic per frame
    compile: bool = False  # torch.compile the one-frame decode (CUDA graphs on CUDA); slower on CPU


def resolve_prompt(recipe: "pianogen.recipe.Recipe", prompt: str) -> Path:
    """A file path, or ``split:n`` naming a piece of the run's corpus (e.g. ``test:0``)."""
    path = Path(prompt)
    if path.exists():
        return path
    split, sep, index = prompt.partition(":")
    if sep and index.isdigit() and split in ("train", "validation", "test"):
        pieces = [p for p in pipeline.build_source(recipe).pieces() if p.split == split]
        if int(index) >= len(pieces):
            raise PianogenError(f"prompt {prompt}: the {split} split has {len(pieces)} pieces")
        return pieces[int(index)].path
    raise PianogenError(f"prompt not found: {prompt} (a path to an audio file, or e.g. test:0)")


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def in_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The token model with its weights (and so its KV cache) in ``precision``. Decoding one frame is
    bound by reading every weight, so bf16 halves the time on CPUs as on GPUs; logits are sampled in fp32."""
    if precision not in PRECISIONS:
        raise PianogenError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    return model.to(PRECISIONS[precision])


def counting_progress(enabled: bool, transient: bool = False) -> "Progress":
    """A rich bar of ``done/total`` with the task's description and time remaining."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=transient)


def continue_codes(model: torch.nn.Module, prompt_codes: torch.Tensor, n_frames: int, request: GenerationRequest,
                   progress: bool = True) -> torch.Tensor:
    """prompt_codes LongTensor[B, K, T0] -> LongTensor[B, K, n_frames], with a rich progress bar."""
    sample = make_sampler(request.temperature, request.top_k, request.top_p, request.seed)
    with counting_progress(progress) as bar:
        task = bar.add_task("sampling", total=n_frames)
        with torch.inference_mode():
            return model.generate(prompt_codes, n_frames, sample, use_cache=request.use_cache,
                                  on_frame=lambda i: bar.update(task, completed=i + 1), compile=request.compile)


def _clock(device: torch.device) -> float:
    """perf_counter once the device's queued work is done: CUDA kernels run asynchronously."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def generate(run_dir: str | Path, request: GenerationRequest, device: str = "auto", progress: bool = True
             ) -> dict[str, Any]:
    """Write prompt+continuation WAVs, continuation WAVs, Mel PNGs and generation.json; return the JSON."""
    if request.seconds <= 0:
        raise PianogenError(f"--seconds must be > 0, got {request.seconds}")
    if request.num < 1:
        raise PianogenError(f"--num must be >= 1, got {request.num}")
    torch_device = pick_device(device)
    recipe, codec, model, meta = pipeline.load_run(run_dir, request.checkpoint, torch_device)
    model = in_precision(model, request.precision)
    prompt_path = resolve_prompt(recipe, request.prompt)
    wav = load_audio(prompt_path, codec.sample_rate)
    notes = []
    available = wav.shape[-1] / codec.sample_rate
    if available < request.prompt_seconds:
        notes.append(f"prompt is {available:.2f} s, shorter than the {request.prompt_seconds} s asked: using all of it")
    wav = wav[:, : round(request.prompt_seconds * codec.sample_rate)]
    filter_specs = request.postfilters if request.postfilters is not None else [
        {"name": spec.name, **spec.options} for spec in recipe.postfilter]
    filters = [pianogen.get_postfilter(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
               for spec in filter_specs]

    start = _clock(torch_device)
    with torch.inference_mode():
        prompt_codes = codec.encode(wav[None].to(torch_device))[:, : recipe.codec.levels]
    prompt_codes = prompt_codes.expand(request.num, -1, -1).contiguous()
    n_frames = max(1, round(request.seconds * codec.frame_rate))
    encoded = _clock(torch_device)
    new_codes = continue_codes(model, prompt_codes, n_frames, request, progress)
    sampled = _clock(torch_device)
    with torch.inference_mode():
        audio = codec.decode(torch.cat([prompt_codes, new_codes], dim=-1)).float()
        for post in filters:
            audio = post(audio, codec.sample_rate)
    decoded = _clock(torch_device)

    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    boundary = prompt_codes.shape[-1] * codec.hop_length
    files = []
    for i in range(request.num):
        full, continuation = audio[i, 0].cpu(), audio[i, 0, boundary:].cpu()
        save_audio(out / f"full_{i}.wav", full, codec.sample_rate)
        save_audio(out / f"continuation_{i}.wav", continuation, codec.sample_rate)
        plot_mel(full, codec.sample_rate, out / f"mel_{i}.png", boundary_s=boundary / codec.sample_rate,
                 title=f"{prompt_path.name}: prompt | continuation {i}")
        files += [f"full_{i}.wav", f"continuation_{i}.wav", f"mel_{i}.png"]
    seconds_out = n_frames / codec.frame_rate
    report = {
        "run_dir": str(run_dir), "prompt_file": str(prompt_path), "prompt_frames": prompt_codes.shape[-1],
        "frames": n_frames, "sample_rate": codec.sample_rate, "checkpoint_step": meta["step"],
        "settings": {k: v for k, v in asdict(request).items() if k != "out"},
        "postfilters": filter_specs, "notes": notes, "files": files, "device": str(torch_device),
        "timings_s": {"encode": encoded - start, "sample": sampled - encoded, "decode": decoded - sampled},
        "frames_per_s": n_frames * request.num / (sampled - encoded),
        "realtime_factor": seconds_out * request.num / (decoded - encoded),
    }
    (out / "generation.json").write_text(json.dumps(report, indent=2))
    return report
