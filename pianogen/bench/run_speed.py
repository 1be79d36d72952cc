"""A trained run's speed as a player meets it (issue #28 item 4): `pianogen generate` end to end at batch 1, per
precision, beside the plain eager decoder of the model's size in the same process, and the time to first audio
when streaming.

- real time: the one generation pipeline (``pianogen.generation.generate.generate``) with a sink that keeps the audio in
  memory, the run loaded once beforehand (loading is not counted): prompt encoding, sampling, codec decoding and
  the recipe's post-filters. ``realtime_factor`` = frames / (sampling + decoding seconds) / the codec's frame rate
  (the pipeline's own report), ``end_to_end_realtime_factor`` counts the prompt's encoding too. Median of
  ``repeats`` after one warm-up.
- the plain decoder: ``decode_vs_plain`` (what `pianogen bench` reports) on the run's own model: token sampling
  alone, ours against benchmarks/plain_decoder.py of the same size, interleaved.
- first audio: the same pipeline with a streaming sink (``--stream``'s chunk sizes): seconds from the start of the
  generation (before the prompt is encoded; the prefill of the prompt included) to the first chunk in hand.
"""

from __future__ import annotations

import dataclasses
import inspect
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianogen.bench.decode import decode_vs_plain
from pianogen.generation.sinks import MemorySink

REALTIME_BAR = 2.0  # int8 at batch 1 on 2 cores: at least 2x real time
FIRST_AUDIO_BAR_S = 1.0  # first audio within 1 s of a 5 s prompt when streaming


class TimedChunks(MemorySink):
    """The in-memory sink, streaming with the chunk sizes of ``generate --stream`` (``stream_generate``'s
    defaults); each chunk's arrival time kept, nothing written."""

    streams = True

    def __init__(self) -> None:
        from pianogen.generation.stream import stream_generate

        super().__init__()
        defaults = inspect.signature(stream_generate).parameters
        self.chunk_seconds = defaults["chunk_seconds"].default
        self.first_chunk_seconds = defaults["first_chunk_seconds"].default
        self.arrivals: list[float] = []

    def sample(self, model: Any, codec: Any, prompt_codes: torch.Tensor, n_frames: int, request: Any,
               filters: list[Any], filter_specs: list[dict[str, Any]], progress: bool, tell: Any, start: float
               ) -> tuple[torch.Tensor, dict[str, Any], list[str]]:
        """The streaming sampling step, as ``generate --stream``'s sink draws it."""
        from pianogen.generation.stream import stream_codes

        return stream_codes(model, codec, prompt_codes, n_frames, request, filters, filter_specs, self, progress,
                            tell, start)

    def chunk(self, audio: np.ndarray, sample_rate: int) -> None:
        self.arrivals.append(time.perf_counter())


def piano_prompt(seconds: float, sample_rate: int = 44100, seed: int = 0) -> Any:
    """``seconds`` of composed piano (the data source ``synthetic``, the data plugin's composer and renderer)
    as a stereo Recording held in memory."""
    import tempfile

    import torchaudio

    from pianogen.bench.codec import composed_corpus
    from pianogen.data.audio import read_file
    from pianogen.generation.continuation import as_recording

    # 3+ pieces of 20-60 s: the longest first holds a short prompt (the composer's bar is on stderr, as every bar)
    with tempfile.TemporaryDirectory() as tmp:
        pieces = composed_corpus(Path(tmp) / "corpus", 3 * (seconds + 1.0), seed)
        files = [read_file(p.path) for p in sorted(pieces, key=lambda piece: -(piece.duration or 0))]
    data = np.concatenate([wav for wav, _, _ in files])
    piano = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(data.T)), files[0][1], sample_rate)
    return as_recording(piano[:, :round(seconds * sample_rate)].float(), sample_rate)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def run_speed(run: str | Path, precisions: tuple[str, ...] = ("fp32", "int8"), threads: int = 2,
              prompt_seconds: float = 5.0, seconds: float = 8.0, repeats: int = 3, device: str = "cpu",
              plain_frames: int = 150, prompt: Any = None) -> dict[str, Any]:
    """Every measurement above, per precision, at batch 1 on ``threads`` threads; ``prompt``: a Recording
    (default: composed piano of ``prompt_seconds``)."""
    from pianogen.device import pick_device
    from pianogen.generation.generate import GenerationRequest, generate, load_generation_run
    from pianogen.generation.generate_options import RECIPE_DEFAULTED, with_recipe_defaults
    from pianogen.runs import resolve_run

    ref = resolve_run(run)
    torch_device = pick_device(device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    recording = prompt if prompt is not None else piano_prompt(prompt_seconds)
    # the run's own sampler (its prompt prior, its quiet temperature and ring-out too): what a user's take gets
    sampling = with_recipe_defaults(ref.path, {**dict.fromkeys(RECIPE_DEFAULTED), "seconds": seconds,
                                               "prompt_seconds": prompt_seconds})
    results: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    try:
        for precision in precisions:
            request = GenerationRequest(prompt="(audio in memory)", out=Path("(in memory)"), **sampling, seed=0,
                                        precision=precision)
            loaded = load_generation_run(ref.path, request, torch_device)  # once: loading is not timed

            def loader(run_dir: Path, request: GenerationRequest, device: torch.device, loaded=loaded) -> tuple:
                return loaded

            def once(sink: MemorySink, request: GenerationRequest = request) -> dict[str, Any]:
                return generate(ref, request, device=device, progress=False, loader=loader, sink=sink,
                                recording=recording)

            once(MemorySink())  # warm-up: allocator, kernels, the folded tables
            reports = [once(MemorySink()) for _ in range(repeats)]
            streams = []
            for _ in range(repeats):
                sink = TimedChunks()
                report = once(sink)
                streams.append({"first_audio_s": report["stream"]["time_to_first_audio_s"],
                                "chunks": len(sink.arrivals), "encode_s": report["timings_s"]["encode"]})
            frames, rate = reports[0]["frames"], loaded[1].frame_rate
            timings = {stage: _median([r["timings_s"][stage] for r in reports]) for stage in reports[0]["timings_s"]}
            realtime = _median([r["realtime_factor"] for r in reports])
            end_to_end = _median([frames / rate / (r["timings_s"]["encode"] + r["timings_s"]["sample"]
                                                   + r["timings_s"]["decode"]) for r in reports])
            first_audio = _median([s["first_audio_s"] for s in streams])
            results[precision] = {
                "frames": frames, "prompt_frames": reports[0]["prompt_frames"], "frame_rate": rate,
                "timings_s": timings, "frames_per_s": realtime * rate, "realtime_factor": realtime,
                "end_to_end_realtime_factor": end_to_end,
                "realtime_pass": realtime >= REALTIME_BAR,
                "stream": {"first_chunk_seconds": TimedChunks().first_chunk_seconds,
                           "chunk_seconds": TimedChunks().chunk_seconds, "time_to_first_audio_s": first_audio,
                           "first_audio_pass": first_audio < FIRST_AUDIO_BAR_S, "runs": streams},
                "runs": [{"realtime_factor": r["realtime_factor"], "timings_s": r["timings_s"]} for r in reports],
            }
            if not plain:  # the plain decoder beside ours, on the fp32 weights, every precision asked
                fp32 = load_generation_run(ref.path, dataclasses.replace(request, precision="fp32"), torch_device)[2]
                # the plain decoder has no sliding window: its prompt and frames fit the model's context
                fitting = max(1, min(reports[0]["prompt_frames"], fp32.block_size - plain_frames))
                plain = decode_vs_plain(fp32, fitting, min(plain_frames, fp32.block_size - 1), rate, torch_device,
                                        precisions=precisions, repeats=repeats)
    finally:
        torch.set_num_threads(before)
    return {"run": str(ref.path), "builtin_run": ref.name if ref.builtin else None, "device": str(torch_device),
            "threads": threads, "batch": 1, "prompt_seconds": prompt_seconds, "seconds": seconds, "repeats": repeats,
            "realtime_bar": REALTIME_BAR, "first_audio_bar_s": FIRST_AUDIO_BAR_S, "by_precision": results,
            "plain_decoder": plain}


def speed_lines(result: dict[str, Any]) -> list[str]:
    """One line per precision and one per plain-decoder comparison, with the pass/fail of the issue's bars."""
    lines = []
    for precision, r in result["by_precision"].items():
        verdict = "PASS" if r["realtime_pass"] else "FAIL"
        first = r["stream"]
        lines.append(f"{precision}: {r['frames_per_s']:.1f} frames/s = {r['realtime_factor']:.2f}x real time at "
                     f"{r['frame_rate']:g} frames/s (sampling + decoding; {r['end_to_end_realtime_factor']:.2f}x with "
                     f"the prompt's encoding) [{verdict} >= {result['realtime_bar']:g}x]; first audio "
                     f"{first['time_to_first_audio_s']:.3f} s after a {result['prompt_seconds']:g} s prompt "
                     f"[{'PASS' if first['first_audio_pass'] else 'FAIL'} < {result['first_audio_bar_s']:g} s]")
    plain = result.get("plain_decoder") or {}
    for precision, r in plain.get("by_precision", {}).items():
        lines.append(f"{precision} token sampling vs the plain eager decoder, median of {plain['repeats']}: "
                     f"{r['frames_per_s']:.1f} vs {r['plain_frames_per_s']:.1f} frames/s, ratio {r['ratio']:.2f}x")
    if not plain:
        lines.append("plain eager decoder: not measured (benchmarks/plain_decoder.py is not beside the package)")
    return lines
