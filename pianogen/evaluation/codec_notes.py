"""Do the notes survive coding? Note F1 of decoded audio, heard by a transcriber.

Mel L1 says how far a decoded spectrum is from the input's; it does not say whether a listener still hears
the same notes. So each input clip and each decoded version of it (per level count, per Opus bitrate) is
transcribed, and ``note_f1`` scores the decoded notes against the input's own transcription: 1.0 means
the transcriber hears exactly what it heard in the input, whatever its own errors. Where the clip comes
with MIDI (MAESTRO's layout: the ``.midi`` beside the audio), ``note_f1_midi`` scores against the notes
actually played in the clip's window, beside the floor of the input audio itself.

F1 is pooled over clips (micro-averaged): every clip's notes are laid end to end on one timeline, far
enough apart that no note can match across clips, and scored once, so a clip with few notes weighs little.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from pianogen.interfaces import Note, Transcriber

ONSET_TOLERANCE = 0.05  # seconds; mir_eval's default for note onsets
CLIP_GAP = 10.0  # seconds between clips on the pooled timeline: far beyond any onset tolerance


def midi_beside(audio: Path) -> Path | None:
    """The MIDI file beside an audio file in MAESTRO's layout (same stem, .midi or .mid), if there is one."""
    for suffix in (".midi", ".mid"):
        path = Path(audio).with_suffix(suffix)
        if path.is_file():
            return path
    return None


def clip_midi_notes(audio: Path, seconds: float) -> list[Note] | None:
    """The notes of the MIDI beside ``audio`` that start in its first ``seconds`` (0 = all); None without MIDI."""
    import pianogen

    path = midi_beside(audio)
    if path is None:
        return None
    notes = pianogen.read_midi(path).notes
    return [n for n in notes if seconds <= 0 or n.onset < seconds]


class NoteTally:
    """Notes heard in each clip's input and in each decoded version, scored once all clips are in."""

    def __init__(self, transcriber: Transcriber, sample_rate: int) -> None:
        self.transcriber, self.sample_rate = transcriber, sample_rate
        self.start = 0.0  # where the current clip starts on the pooled timeline
        self.length = 0.0
        self.heard: dict[str, list[Note]] = defaultdict(list)  # "input" and each decoded version's label
        self.midi: list[Note] = []
        self.has_midi = False

    def add_input(self, wav: torch.Tensor, midi: list[Note] | None) -> None:
        """Start a clip: wav [S] (the input) and the MIDI notes played in it, if known."""
        if self.length:
            self.start += self.length + CLIP_GAP
        self.length = wav.shape[-1] / self.sample_rate
        self.add("input", wav)
        if midi is not None:
            self.has_midi = True
            self.midi += self._shifted(midi)

    def add(self, label: str, wav: torch.Tensor) -> None:
        """The decoded version ``label`` of the current clip, wav [S]."""
        notes = self.transcriber.transcribe(wav.reshape(-1).detach().float().cpu(), self.sample_rate)
        self.heard[label] += self._shifted(notes)

    def _shifted(self, notes: list[Note]) -> list[Note]:
        return [dataclasses.replace(n, onset=n.onset + self.start, offset=n.offset + self.start) for n in notes]

    def scores(self, label: str) -> dict[str, Any]:
        """{"note_f1": F1 against the input's notes, "note_f1_midi": against the MIDI (when known)}."""
        from pianogen.evaluation.notes import note_f1

        out = {"note_f1": note_f1(self.heard["input"], self.heard[label], onset_tolerance=ONSET_TOLERANCE)}
        if self.has_midi:
            out["note_f1_midi"] = note_f1(self.midi, self.heard[label], onset_tolerance=ONSET_TOLERANCE)
        return out

    def summary(self) -> dict[str, Any]:
        """What the scores stand on: the transcriber, the notes it heard in the input, and (with MIDI) its own
        F1 on the input audio, the ceiling any decoded version's ``note_f1_midi`` is read against."""
        out: dict[str, Any] = {"transcriber": getattr(self.transcriber, "name", type(self.transcriber).__name__),
                               "input_notes": len(self.heard["input"]), "onset_tolerance": ONSET_TOLERANCE}
        if self.has_midi:
            from pianogen.evaluation.notes import note_f1

            out["midi_notes"] = len(self.midi)
            out["input_note_f1_midi"] = note_f1(self.midi, self.heard["input"], onset_tolerance=ONSET_TOLERANCE)
        return out
