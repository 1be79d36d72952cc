"""Audio as it is made: decode the continuation in chunks while the token model keeps sampling.

``stream_audio(...)`` runs ``model.generate`` in a worker thread and yields the continuation's
audio chunk by chunk (torch releases the GIL in its kernels, so on 2 cores sampling and decoding
overlap). A causal codec decodes each chunk from the frames before it as well (``context_frames``,
the decoder's receptive field), so the concatenated chunks equal one-shot decoding of the whole
sequence up to float rounding; the last frames' samples never depend on frames not yet drawn. (SoundStream
pads with reflection, so a sequence's first ``context_frames`` frames read ahead: exactness needs a
prompt at least that long, 28 frames = 0.35 s for the reference codec.)
``pianogen generate --stream`` writes the chunks to the continuation WAVs as they arrive.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pianogen.errors import PianogenError
from pianogen.paths import atomic_write_bytes


def decoder_context_frames(codec: nn.Module) -> int | None:
    """Frames of left context that make chunked decoding exact: the receptive field (in frames) of the
    codec's causal decoder, read off its layers (SoundStream's causal convs and trimmed transposed convs,
    recognised by their ``causal_padding`` / ``stride`` attributes). None when the layers are unknown."""
    decoder = getattr(codec, "decoder", None)
    if decoder is None:
        return None
    layers = [m for m in decoder.modules() if hasattr(m, "causal_padding") or
              (hasattr(m, "stride") and isinstance(getattr(m, "conv", None), nn.ConvTranspose1d))]
    if not layers:
        return None
    span = 1  # inputs of the current layer that one output sample depends on, walking back from the output
    for layer in reversed(layers):
        if hasattr(layer, "causal_padding"):
            conv = layer.conv
            span = (span - 1) * conv.stride[0] + conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
        else:  # output n of a trimmed transposed conv reads inputs n // s and n // s - 1
            span = math.ceil(span / layer.stride) + 1
    return span


def stream_audio(model: nn.Module, codec: nn.Module, prompt_codes: torch.Tensor, n_frames: int,
                 sample: Callable[[torch.Tensor], torch.Tensor], chunk_frames: int = 20,
                 context_frames: int | None = None, on_frame: Callable[[int], None] | None = None
                 ) -> Iterator[torch.Tensor]:
    """Continue prompt_codes LongTensor[B, K, T0] by ``n_frames`` frames, yielding the continuation's
    audio FloatTensor[B, 1, frames * hop] as soon as ``chunk_frames`` new frames exist (the last chunk
    may be shorter). ``context_frames`` (default: the decoder's receptive field; the whole sequence so
    far for a codec whose layers are unknown) frames before each chunk are decoded with it."""
    if chunk_frames < 1:
        raise PianogenError(f"chunk_frames must be >= 1, got {chunk_frames}")
    context = decoder_context_frames(codec) if context_frames is None else context_frames
    B, K, T0 = prompt_codes.shape
    draws: list[torch.Tensor] = []  # every step's drawn codes [B, K], in order
    ready: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def recording_sample(logits: torch.Tensor) -> torch.Tensor:
        codes = sample(logits)
        draws.append(codes)
        return codes

    def frame_done(i: int) -> None:
        ready.put((i, len(draws) - (i + 1)))  # steps drawn beyond frame i: 0, or K - 1 for a delay pattern
        if on_frame is not None:
            on_frame(i)

    def work() -> None:
        try:
            with torch.inference_mode():
                outcome["codes"] = model.generate(prompt_codes, n_frames, recording_sample, on_frame=frame_done)
        except BaseException as error:  # re-raised in the consumer's thread
            outcome["error"] = error
        finally:
            ready.put(None)

    worker = threading.Thread(target=work, name="pianogen-sampling", daemon=True)
    worker.start()
    frames = [prompt_codes]  # prompt, then the continuation's frames [B, K, n] in order
    done = emitted = 0  # continuation frames complete / already decoded
    try:
        while True:
            item = ready.get()
            if item is not None:
                (last, lag) = item
                done = last + 1
                if done - emitted < chunk_frames:
                    continue
            elif done == emitted:
                break
            # frame j's level k was drawn at step j, or at step j + k under a delay pattern (lag K - 1)
            new = torch.stack([torch.stack([draws[j + (k if lag else 0)][:, k] for k in range(K)], dim=1)
                               for j in range(emitted, done)], dim=2)  # [B, K, done - emitted]
            frames.append(new)
            codes = torch.cat(frames, dim=2)  # [B, K, T0 + done]
            first = T0 + emitted
            begin = 0 if context is None else max(0, first - context)
            with torch.inference_mode():
                audio = codec.decode(codes[:, :, begin:])[..., (first - begin) * codec.hop_length:].float()
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


def stream_generate(run_dir: str | Path, request: Any, device: str = "auto", chunk_seconds: float = 0.25,
                    progress: bool = True) -> dict[str, Any]:
    """``pianogen generate --stream``: the continuation WAVs grow chunk by chunk (``continuation_{i}.wav.part``,
    renamed when complete), without post-filters; returns the report with time to first audio."""
    import json

    import soundfile as sf

    from pianogen import pipeline
    from pianogen.device import pick_device
    from pianogen.generate import check_request, open_source
    from pianogen.precision import in_precision
    from pianogen.progress import progress_bar
    from pianogen.sampling import make_sampler

    check_request(request)
    torch_device = pick_device(device)
    recipe, codec, model, meta = pipeline.load_run(run_dir, request.checkpoint, torch_device)
    model = in_precision(model, request.precision)
    start = time.perf_counter()
    # the same prompt window as one-shot generation: the end of the take (or --from/--to), or a take's codes
    prompt_path, source = open_source(recipe, request, codec, torch_device)
    prompt_codes = source.prompt_codes.expand(request.num, -1, -1).contiguous()
    n_frames = max(1, round(request.seconds * codec.frame_rate))
    chunk_frames = max(1, round(chunk_seconds * codec.frame_rate))
    sample = make_sampler(request.temperature, request.top_k, request.top_p, request.seed)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [out / f"continuation_{i}.wav.part" for i in range(request.num)]
    writers = [sf.SoundFile(p, "w", samplerate=codec.sample_rate, channels=1, format="WAV", subtype="PCM_16")
               for p in parts]  # as save_audio writes: 16-bit PCM, clipped to [-1, 1]
    first_audio = None
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("sampling (streaming)", total=n_frames)
            for chunk in stream_audio(model, codec, prompt_codes, n_frames, sample, chunk_frames,
                                      on_frame=lambda i: bar.update(task, completed=i + 1)):
                first_audio = first_audio or time.perf_counter() - start
                for writer, audio in zip(writers, chunk[:, 0].clamp(-1, 1).cpu().numpy()):
                    writer.write(audio)
                    writer.flush()
    finally:
        for writer in writers:
            writer.close()
    elapsed = time.perf_counter() - start
    files = []
    for i, part in enumerate(parts):
        part.replace(out / f"continuation_{i}.wav")
        files.append(f"continuation_{i}.wav")
    report = {"run_dir": str(run_dir), "prompt_file": str(prompt_path), "frames": n_frames, "stream": True,
              "chunk_frames": chunk_frames, "sample_rate": codec.sample_rate, "checkpoint_step": meta["step"],
              "files": files, "device": str(torch_device), "postfilters": "none (streamed raw decoder output)",
              "time_to_first_audio_s": first_audio, "notes": source.notes,
              "prompt_window_s": list(source.window_s),
              "realtime_factor": n_frames / codec.frame_rate * request.num / elapsed}
    atomic_write_bytes(out / "generation.json", json.dumps(report, indent=2).encode())
    return report
