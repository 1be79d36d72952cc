"""Where a generation's audio goes: the last step of the one pipeline (``pianogen.generation.generate.generate``).

The pipeline loads the run, opens the prompt, samples codes, decodes and post-filters them, then hands the
result to a sink. Three sinks:

- ``FileSink`` (``pianogen generate``): whole files per continuation — the take spliced onto the original,
  the continuation, the codec's re-synthesis, the codes, a Mel PNG — into the generation's staging folder,
  which is renamed into place whole (``generate_output.staged``);
- ``generation.stream.ChunkSink`` (``generate --stream``, the page's streaming): also gets the continuation chunk
  by chunk while sampling goes on, grows ``continuation_<i>.wav.part`` in the same staging folder and hands each
  chunk to ``on_chunk``; then writes what ``FileSink`` writes;
- ``MemorySink`` (``pianogen.continue_audio``): keeps the continuations as tensors; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pianogen.data.audio import save_audio
from pianogen.evaluation.plots import plot_mel
from pianogen.generation.generate_output import MEL_MIN_SAMPLES, writing
from pianogen.generation.take_codes import save_take_codes
from pianogen.generation.takes import splice, write_recording

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class Generated:
    """What the pipeline hands a sink once every code is drawn."""

    request: Any  # the GenerationRequest (pianogen.generation.generate imports this module, not the other way round)
    source: Any  # the generate.Source: the recording continued, where it is cut, the codes before
    prompt_path: Path | None  # the file continued (None: audio given in memory)
    codec: Any
    levels: int
    prompt_frames: int
    new_codes: torch.Tensor  # LongTensor[num, K, frames]: the continuation's codes
    audio: torch.Tensor  # FloatTensor[num, 1, S]: the post-filtered decoding of prompt + continuation, codec rate

    @property
    def continuations(self) -> torch.Tensor:
        """FloatTensor[num, S']: the continuation alone, at the codec's rate (what continuation_<i>.wav holds)."""
        return self.audio[:, 0, self.prompt_frames * self.codec.hop_length:]


class Sink:
    """The interface: ``begin`` before sampling (streaming sinks open their files), ``sample`` (streaming sinks
    only: draws the codes while handing out their audio), ``close`` when sampling ends (also on failure),
    ``finish`` with everything generated: returns (files written, per-take report entries)."""

    writes_files = False  # True: the pipeline gives begin/finish a staging folder, renamed to request.out at the end
    streams = False  # True: the pipeline samples with stream_audio and calls chunk() as audio comes
    hears_notes = False  # True: generation.json's note_metrics are measured (a transcription per take)

    def begin(self, folder: Path | None, num: int, sample_rate: int) -> None:
        pass

    def close(self) -> None:
        pass

    def finish(self, folder: Path | None, generated: Generated,
               tell: "Callable[[str, int, int], None]") -> tuple[list[str], list[dict[str, Any]]]:
        raise NotImplementedError


class FileSink(Sink):
    """Whole files per continuation i: take_i.wav (spliced onto the original), continuation_i.wav, full_i.wav,
    codes_i.safetensors and mel_i.png."""

    writes_files = True
    hears_notes = True

    def finish(self, folder: Path | None, generated: Generated,
               tell: "Callable[[str, int, int], None]") -> tuple[list[str], list[dict[str, Any]]]:
        assert folder is not None
        g, source, codec = generated, generated.source, generated.codec
        boundary, num = g.prompt_frames * codec.hop_length, g.request.num
        files, takes = [], []
        for i in range(num):
            tell("write", i, num)
            full, continuation = g.audio[i, 0].cpu(), g.audio[i, 0, boundary:].cpu()
            with writing(folder / f"full_{i}.wav") as path:
                save_audio(path, full, codec.sample_rate)
            with writing(folder / f"continuation_{i}.wav") as path:
                save_audio(path, continuation, codec.sample_rate)
            joined = splice(source.recording, source.cut, source.prompt_start, full, codec.sample_rate, boundary,
                            g.request.crossfade)
            with writing(folder / f"take_{i}.wav") as path:
                write_recording(path, joined.take)
            with writing(folder / f"codes_{i}.safetensors") as path:
                save_take_codes(path, torch.cat([source.history, g.new_codes[i].cpu()], dim=-1), codec, g.levels,
                                take=f"take_{i}.wav")
            rate = joined.take.sample_rate
            shown = joined.take.samples[:, source.prompt_start:].mean(dim=0)
            shown = torch.nn.functional.pad(shown, (0, max(0, MEL_MIN_SAMPLES - shown.numel())))  # a very short take
            name = g.prompt_path.name if g.prompt_path else "the prompt"
            with writing(folder / f"mel_{i}.png") as path:
                plot_mel(shown, rate, path, boundary_s=(source.cut - source.prompt_start) / rate,
                         title=f"take {i}: {name} from {source.prompt_start / rate:.1f} s | continuation")
            names = {"take": f"take_{i}.wav", "continuation": f"continuation_{i}.wav",
                     "resynthesis": f"full_{i}.wav", "mel": f"mel_{i}.png", "codes": f"codes_{i}.safetensors"}
            files += list(names.values())
            takes.append({**names, "seconds": joined.take.seconds, "prompt_lufs": joined.prompt_lufs,
                          "prompt_end_lufs": joined.prompt_end_lufs, "rendering_lufs": joined.rendering_lufs,
                          "continuation_lufs": joined.continuation_lufs, "gain_db": joined.gain_db,
                          "crossfade_s": joined.crossfade_s})
        return files, takes


class MemorySink(Sink):
    """The continuations kept in memory (``pianogen.continue_audio``): nothing is written, no notes heard."""

    def __init__(self) -> None:
        self.generated: Generated | None = None

    def finish(self, folder: Path | None, generated: Generated,
               tell: "Callable[[str, int, int], None]") -> tuple[list[str], list[dict[str, Any]]]:
        self.generated = generated
        return [], []
