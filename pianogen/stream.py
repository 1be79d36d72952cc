"""Audio as it is made: decode the continuation in chunks while the token model keeps sampling.

``stream_audio(...)`` runs ``model.generate`` in a worker thread and yields the continuation's
audio chunk by chunk (torch releases the GIL in its kernels, so on 2 cores sampling and decoding
overlap). A causal codec decodes each chunk from the frames before it as well (``context_frames``,
the decoder's receptive field), so the concatenated chunks equal one-shot decoding of the whole
sequence up to float rounding; the last frames' samples never depend on frames not yet drawn. (SoundStream
pads with reflection, so a sequence's first ``context_frames`` frames read ahead: exactness needs a
prompt at least that long, 28 frames = 0.35 s for the reference codec.)
``pianogen generate --stream`` writes the chunks to the continuation WAVs as they arrive, post-filtered
chunk by chunk when the post-filters are causal, then the same final files as one-shot generation.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pianogen.errors import PianogenError
from pianogen.interfaces import StreamingFilter
from pianogen.paths import atomic_write_bytes


def decoder_context_frames(codec: nn.Module) -> int | None:
    """Frames of left context that make chunked decoding exact, as the codec declares them
    (``Codec.decoder_context_frames``); None = unknown: each chunk is decoded from the sequence's start."""
    declared = getattr(codec, "decoder_context_frames", None)  # a codec predating the contract's default
    frames = declared() if callable(declared) else None
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 0):
        raise PianogenError(f"codec '{type(codec).__name__}' declares decoder_context_frames() = {frames!r}; "
                            f"it must be a whole number of frames >= 0, or None")
    return frames


def stream_audio(model: nn.Module, codec: nn.Module, prompt_codes: torch.Tensor, n_frames: int,
                 sample: Callable[[torch.Tensor], torch.Tensor], chunk_frames: int = 20,
                 context_frames: int | None = None, on_frame: Callable[[int], None] | None = None,
                 first_chunk_frames: int | None = None, postfilter: StreamingFilter | None = None,
                 on_codes: Callable[[torch.Tensor], None] | None = None) -> Iterator[torch.Tensor]:
    """Continue prompt_codes LongTensor[B, K, T0] by ``n_frames`` frames, yielding the continuation's
    audio FloatTensor[B, 1, frames * hop] as soon as ``first_chunk_frames`` (default ``chunk_frames``),
    then each ``chunk_frames``, new frames exist (the last chunk may be shorter). ``context_frames``
    (default: the decoder's receptive field; the whole sequence so far for a codec whose layers are
    unknown) frames before each chunk are decoded with it. A causal ``postfilter`` filters the chunks,
    its state first run over the prompt's last ``settle_samples`` of decoded audio (while the prefill
    runs), so the chunks equal the filtered one-shot decoding. ``on_codes`` receives the continuation's
    codes LongTensor[B, K, n_frames] once the last chunk is out.

    Threads: the prompt's prefill runs on all of torch's intra-op threads, then sampling on all but one (at
    least one) and decoding on one."""
    if chunk_frames < 1 or (first_chunk_frames is not None and first_chunk_frames < 1):
        raise PianogenError(f"chunk_frames must be >= 1, got {chunk_frames} (first {first_chunk_frames})")
    context = decoder_context_frames(codec) if context_frames is None else context_frames
    threads = torch.get_num_threads()
    B, K, T0 = prompt_codes.shape
    draws: list[torch.Tensor] = []  # every step's drawn codes [B, K], in order
    ready: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def recording_sample(logits: torch.Tensor) -> torch.Tensor:
        codes = sample(logits)
        draws.append(codes)
        return codes

    def frame_done(i: int) -> None:
        if i == 0:
            torch.set_num_threads(max(1, threads - 1))
        ready.put((i, len(draws) - (i + 1)))  # steps drawn beyond frame i: 0, or K - 1 for a delay pattern
        if on_frame is not None:
            on_frame(i)

    def work() -> None:
        # the prefill (the whole prompt at once) gets every thread: no chunk can be decoded before it ends (at
        # most a post-filter's settling runs beside it); from the first frame on, one is left to the decoder
        torch.set_num_threads(threads)  # this thread's own setting: the caller's is unchanged
        try:
            with torch.inference_mode():
                outcome["codes"] = model.generate(prompt_codes, n_frames, recording_sample, on_frame=frame_done)
        except BaseException as error:  # re-raised in the consumer's thread
            outcome["error"] = error
        finally:
            ready.put(None)

    def decode(codes: torch.Tensor, first: int) -> torch.Tensor:
        """Audio of frames first.. of ``codes``, decoded from ``context`` frames before, on one thread."""
        begin = 0 if context is None else max(0, first - context)
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                return codec.decode(codes[:, :, begin:])[..., (first - begin) * codec.hop_length:].float()
        finally:
            torch.set_num_threads(threads)

    worker = threading.Thread(target=work, name="pianogen-sampling", daemon=True)
    worker.start()
    frames = [prompt_codes]  # prompt, then the continuation's frames [B, K, n] in order
    done = emitted = 0  # continuation frames complete / already decoded
    try:
        if postfilter is not None:  # the prompt's end, decoded exactly while the prefill runs, sets its state
            lead = min(T0, math.ceil(postfilter.settle_samples / codec.hop_length))
            postfilter(decode(prompt_codes, T0 - lead))
        while True:
            item = ready.get()
            if item is not None:
                (last, lag) = item
                done = last + 1
                needed = (first_chunk_frames or chunk_frames) if emitted == 0 else chunk_frames
                if done - emitted < needed:
                    continue
            elif done == emitted:
                break
            # frame j's level k was drawn at step j, or at step j + k under a delay pattern (lag K - 1)
            new = torch.stack([torch.stack([draws[j + (k if lag else 0)][:, k] for k in range(K)], dim=1)
                               for j in range(emitted, done)], dim=2)  # [B, K, done - emitted]
            frames.append(new)
            codes = torch.cat(frames, dim=2)  # [B, K, T0 + done]
            audio = decode(codes, T0 + emitted)
            if postfilter is not None:
                audio = postfilter(audio)
            frames = [codes]
            emitted = done
            yield audio
            if item is None:
                break
    finally:
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    if not torch.equal(torch.cat(frames, dim=2)[:, :, T0:], outcome["codes"]):
        raise RuntimeError("the streamed codes differ from the ones generate returned: the model's frames do not "
                           "follow its draws step for step or with a delay pattern")
    if on_codes is not None:
        on_codes(outcome["codes"])


class FilterChain(StreamingFilter):
    """Streaming filters applied in order; the chain settles once each of them has."""

    def __init__(self, filters: list[StreamingFilter]) -> None:
        self.filters = filters
        self.settle_samples = sum(f.settle_samples for f in filters)

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        for f in self.filters:
            chunk = f(chunk)
        return chunk


def stream_generate(run_dir: str | Path, request: Any, device: str = "auto", chunk_seconds: float = 0.25,
                    progress: bool = True, first_chunk_seconds: float = 0.05, listener: Callable | None = None,
                    loader: Callable[..., tuple] | None = None,
                    on_chunk: Callable[[np.ndarray, int], None] | None = None) -> dict[str, Any]:
    """``pianogen generate --stream``: ``continuation_{i}.wav.part`` grows chunk by chunk while sampling goes
    on (the first chunk after ``first_chunk_seconds``, then every ``chunk_seconds``), post-filtered as it
    streams when every post-filter is causal. Once the codes are complete the same files as one-shot
    generation are written from them (take, continuation, re-synthesis, codes, Mel, generation.json;
    continuation_{i}.wav replaces the part file). Returns the report, with time to first audio.

    ``listener(stage, done, total)``, ``loader``: as for ``generate.generate`` (``pianogen serve`` passes
    both). ``on_chunk(audio float32[num, samples] in [-1, 1], sample_rate)`` gets each chunk as written."""
    import json

    import soundfile as sf

    from pianogen.device import pick_device
    from pianogen.generate import (
        check_request,
        decode_codes,
        load_generation_run,
        open_source,
        postfilters_for,
        write_takes,
    )
    from pianogen.progress import progress_bar
    from pianogen.sampling import make_sampler

    check_request(request)
    tell = listener or (lambda stage, done, total: None)
    torch_device = pick_device(device)
    recipe, codec, model, meta = (loader or load_generation_run)(run_dir, request, torch_device)
    filter_specs, filters = postfilters_for(recipe, request)
    streaming = [f.stream(codec.sample_rate) for f in filters]
    causal = all(f is not None for f in streaming)
    start = time.perf_counter()
    tell("encode", 0, 1)
    # the same prompt window as one-shot generation: the end of the take (or --from/--to), or a take's codes
    prompt_path, source = open_source(recipe, request, codec, torch_device)
    prompt_codes = source.prompt_codes.expand(request.num, -1, -1).contiguous()
    n_frames = max(1, round(request.seconds * codec.frame_rate))
    chunk_frames = max(1, round(chunk_seconds * codec.frame_rate))
    first_frames = max(1, round(first_chunk_seconds * codec.frame_rate))
    sample = make_sampler(request.temperature, request.top_k, request.top_p, request.seed)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [out / f"continuation_{i}.wav.part" for i in range(request.num)]
    writers = [sf.SoundFile(p, "w", samplerate=codec.sample_rate, channels=1, format="WAV", subtype="PCM_16")
               for p in parts]  # as save_audio writes: 16-bit PCM, clipped to [-1, 1]
    first_audio, finished = None, []
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("sampling (streaming)", total=n_frames)
            def frame_done(i: int) -> None:
                bar.update(task, completed=i + 1)
                tell("sample", i + 1, n_frames)

            for chunk in stream_audio(model, codec, prompt_codes, n_frames, sample, chunk_frames, on_frame=frame_done,
                                      first_chunk_frames=first_frames, on_codes=finished.append,
                                      postfilter=FilterChain(streaming) if causal and streaming else None):
                first_audio = first_audio or time.perf_counter() - start
                audio = chunk[:, 0].clamp(-1, 1).cpu().numpy()  # [num, samples]
                for writer, take in zip(writers, audio):
                    writer.write(take)
                    writer.flush()
                if on_chunk is not None:
                    on_chunk(audio, codec.sample_rate)
    finally:
        for writer in writers:
            writer.close()
    streamed = time.perf_counter() - start
    new_codes = finished[0]
    tell("decode", 0, 1)
    audio = decode_codes(codec, torch.cat([prompt_codes, new_codes], dim=-1), filters)
    files, takes = write_takes(out, request, source, prompt_path, codec, recipe.codec.levels,
                               prompt_codes.shape[-1], new_codes, audio, tell)
    tell("write", request.num, request.num)
    for part in parts:
        part.unlink(missing_ok=True)
    notes = list(source.notes)
    if not causal:
        names = ", ".join(spec["name"] for spec, f in zip(filter_specs, streaming) if f is None)
        notes.append(f"post-filter {names} is not causal: the streamed audio was the raw decoder output; "
                     f"the finished files are post-filtered")
    report = {"run_dir": str(run_dir), "prompt_file": str(prompt_path), "prompt_frames": prompt_codes.shape[-1],
              "frames": n_frames, "stream": True, "first_chunk_frames": first_frames, "chunk_frames": chunk_frames,
              "sample_rate": codec.sample_rate, "checkpoint_step": meta["step"], "files": files + ["generation.json"],
              "takes": takes, "device": str(torch_device), "postfilters": filter_specs,
              "streamed_postfiltered": causal, "time_to_first_audio_s": first_audio, "notes": notes,
              "prompt_window_s": list(source.window_s),
              "timings_s": {"stream": streamed, "finish": time.perf_counter() - start - streamed},
              "realtime_factor": n_frames / codec.frame_rate * request.num / streamed}
    atomic_write_bytes(out / "generation.json", json.dumps(report, indent=2).encode())
    return report
