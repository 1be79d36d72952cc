"""Audio as it is made: decode the continuation in chunks while the token model keeps sampling.

``stream_audio(...)`` runs ``model.generate`` in a worker thread and yields the continuation's
audio chunk by chunk (torch releases the GIL in its kernels, so on 2 cores sampling and decoding
overlap). A causal codec decodes each chunk from the frames before it as well (``context_frames``,
the decoder's receptive field), so the concatenated chunks equal one-shot decoding of the whole
sequence up to float rounding; the last frames' samples never depend on frames not yet drawn. (SoundStream
pads with reflection, so a sequence's first ``context_frames`` frames read ahead: exactness needs a
prompt at least that long, 28 frames = 0.35 s for the reference codec.)
``pianogen generate --stream`` is the one generation pipeline with a chunk sink (``ChunkSink``): its sampling
step (``stream_codes``) hands out the chunks, post-filtered as they come when the post-filters are causal;
the same final files as one-shot generation follow.
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
from pianogen.generation.generate_output import writing
from pianogen.generation.sinks import FileSink, Generated
from pianogen.interfaces import StreamingFilter


def _declared_frames(codec: nn.Module, method: str, default: int | None, least: int) -> int | None:
    """What the codec's ``method()`` declares (``default`` for a codec predating that part of the contract): a
    whole number of frames >= ``least``, or None where ``default`` is None; anything else is one line."""
    declared = getattr(codec, method, None)
    frames = declared() if callable(declared) else default
    if frames is None and default is None:
        return None
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < least:
        raise PianogenError(f"codec '{type(codec).__name__}' declares {method}() = {frames!r}; it must be a whole "
                            f"number of frames >= {least}" + (", or None" if default is None else ""))
    return frames


def decoder_context_frames(codec: nn.Module) -> int | None:
    """Frames of left context that make chunked decoding exact, as the codec declares them
    (``Codec.decoder_context_frames``); None = unknown: each chunk is decoded from the sequence's start."""
    return _declared_frames(codec, "decoder_context_frames", None, 0)


def decoder_alignment_frames(codec: nn.Module) -> int:
    """The multiple of frames chunked decoding must start at (``Codec.decoder_alignment_frames``); 1 = any."""
    return _declared_frames(codec, "decoder_alignment_frames", 1, 1)


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
    alignment = decoder_alignment_frames(codec)
    threads = torch.get_num_threads()
    B, K, T0 = prompt_codes.shape
    draws: list[torch.Tensor] = []  # every step's drawn codes [B, K], in order
    ready: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def recording_sample(logits: torch.Tensor, *previous: torch.Tensor) -> torch.Tensor:
        codes = sample(logits, *previous)
        draws.append(codes)
        return codes

    recording_sample.reads_previous = getattr(sample, "reads_previous", False)  # type: ignore[attr-defined]

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
        begin -= begin % alignment  # a decoder with its own oscillators starts at a multiple of their period
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


def stream_codes(model: nn.Module, codec: nn.Module, prompt_codes: torch.Tensor, n_frames: int, request: Any,
                 filters: list[Any], filter_specs: list[dict[str, Any]], sink: "ChunkSink", progress: bool,
                 tell: Callable[[str, int, int], None], start: float) -> tuple[torch.Tensor, dict[str, Any], list[str]]:
    """The pipeline's sampling step for a sink that streams (``ChunkSink.sample``): the continuation's codes
    LongTensor[num, K, n_frames], while ``sink.chunk`` gets its audio as it is made — the first chunk after
    ``sink.first_chunk_seconds``, then every ``sink.chunk_seconds``, post-filtered as it streams when every
    post-filter is causal. Returns the codes, the report's ``stream`` block and notes for the user; ``start``
    (perf_counter) is when the generation began, for the time to first audio."""
    from pianogen.generation.generate import fader_for, sampling_temperature
    from pianogen.generation.sampling import make_sampler
    from pianogen.progress import progress_bar

    streaming = [f.stream(codec.sample_rate) for f in filters]
    causal = all(f is not None for f in streaming)
    chunk_frames = max(1, round(sink.chunk_seconds * codec.frame_rate))
    first_frames = max(1, round(sink.first_chunk_seconds * codec.frame_rate))
    sample = make_sampler(sampling_temperature(request), request.top_k, request.top_p, request.seed,
                          prompt=prompt_codes, prompt_prior=request.prompt_prior)
    first_audio, finished = None, []
    fader = fader_for(request, codec.sample_rate, prompt_codes.shape[0])
    with progress_bar(progress) as bar:
        task = bar.add_task("sampling (streaming)", total=n_frames)

        def frame_done(i: int) -> None:
            bar.update(task, completed=i + 1)
            tell("sample", i + 1, n_frames)

        for chunk in stream_audio(model, codec, prompt_codes, n_frames, sample, chunk_frames, on_frame=frame_done,
                                  first_chunk_frames=first_frames, on_codes=finished.append,
                                  postfilter=FilterChain(streaming) if causal and streaming else None):
            audio = chunk[:, 0] if fader is None else fader(chunk[:, 0])  # as one-shot audio is faded
            if audio.shape[-1]:
                first_audio = first_audio or time.perf_counter() - start
                sink.chunk(audio.clamp(-1, 1).cpu().numpy(), codec.sample_rate)  # [num, samples]
    if fader is not None:  # the fade's last 64 ms, held back for the frames that overlap them
        sink.chunk(fader.flush().clamp(-1, 1).numpy(), codec.sample_rate)
    notes = []
    if not causal:
        names = ", ".join(spec["name"] for spec, f in zip(filter_specs, streaming) if f is None)
        notes.append(f"post-filter {names} is not causal: the streamed audio was the raw decoder output; "
                     f"the finished files are post-filtered")
    block = {"first_chunk_frames": first_frames, "chunk_frames": chunk_frames, "postfiltered": causal,
             "time_to_first_audio_s": first_audio}
    return finished[0], block, notes


class ChunkSink(FileSink):
    """``FileSink``, and the continuation as it is made: ``continuation_<i>.wav.part`` in the staging folder grows
    chunk by chunk (16-bit PCM, as save_audio writes) and ``on_chunk(audio float32[num, samples], rate)`` gets
    each chunk; the part files make way for the finished files."""

    streams = True

    def __init__(self, chunk_seconds: float = 0.25, first_chunk_seconds: float = 0.05,
                 on_chunk: Callable[[np.ndarray, int], None] | None = None) -> None:
        self.chunk_seconds, self.first_chunk_seconds, self.on_chunk = chunk_seconds, first_chunk_seconds, on_chunk
        self.parts: list[Path] = []
        self.writers: list[Any] = []

    def sample(self, model: nn.Module, codec: nn.Module, prompt_codes: torch.Tensor, n_frames: int, request: Any,
               filters: list[Any], filter_specs: list[dict[str, Any]], progress: bool,
               tell: Callable[[str, int, int], None], start: float) -> tuple[torch.Tensor, dict[str, Any], list[str]]:
        return stream_codes(model, codec, prompt_codes, n_frames, request, filters, filter_specs, self, progress,
                            tell, start)

    def begin(self, folder: Path | None, num: int, sample_rate: int) -> None:
        import soundfile as sf

        assert folder is not None
        self.parts = [folder / f"continuation_{i}.wav.part" for i in range(num)]
        for part in self.parts:
            with writing(part) as path:
                self.writers.append(sf.SoundFile(path, "w", samplerate=sample_rate, channels=1, format="WAV",
                                                 subtype="PCM_16"))

    def chunk(self, audio: np.ndarray, sample_rate: int) -> None:
        for writer, part, take in zip(self.writers, self.parts, audio):
            with writing(part):
                writer.write(take)
                writer.flush()
        if self.on_chunk is not None:
            self.on_chunk(audio, sample_rate)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []

    def finish(self, folder: Path | None, generated: Generated,
               tell: Callable[[str, int, int], None]) -> tuple[list[str], list[dict[str, Any]]]:
        self.close()
        for part in self.parts:
            part.unlink(missing_ok=True)
        return super().finish(folder, generated, tell)


def stream_generate(run_dir: str | Path, request: Any, device: str = "auto", chunk_seconds: float = 0.25,
                    progress: bool = True, first_chunk_seconds: float = 0.05, listener: Callable | None = None,
                    loader: Callable[..., tuple] | None = None,
                    on_chunk: Callable[[np.ndarray, int], None] | None = None) -> dict[str, Any]:
    """``pianogen generate --stream``: the one pipeline (``generate.generate``) with a ``ChunkSink``.
    ``continuation_{i}.wav.part`` grows chunk by chunk in the generation's staging folder while sampling goes
    on, and ``on_chunk(audio float32[num, samples] in [-1, 1], sample_rate)`` gets each chunk; then the same
    files as one-shot generation are written from the codes and the folder is moved into place whole. Returns
    the report; its ``stream`` block holds the time to first audio.

    ``listener(stage, done, total)``, ``loader``: as for ``generate.generate`` (``pianogen serve`` passes both)."""
    from pianogen.generation.generate import generate, load_generation_run

    sink = ChunkSink(chunk_seconds, first_chunk_seconds, on_chunk)
    return generate(run_dir, request, device=device, progress=progress, listener=listener,
                    loader=loader or load_generation_run, sink=sink)
