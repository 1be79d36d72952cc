"""Another sampled piano: Debian's FluidSynth playing a General MIDI soundfont's acoustic grand.

Evaluation needs performances played by a piano the models never heard (the Salamander grand is what they
train on); ``pianogen data render --soundfont FILE.sf2`` renders through this instead of the sampler.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import pianogen
from pianogen.errors import PianogenError
from pianogen.interfaces import Performance

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")  # Debian's timgm6mb-soundfont


class FluidSynth:
    """``render(performance) -> float32 [2, S]`` at ``sample_rate``, like the sampler."""

    def __init__(self, soundfont: Path = DEFAULT_SOUNDFONT, sample_rate: int = 44100, gain: float = 0.5):
        self.binary = shutil.which("fluidsynth")
        if self.binary is None:
            raise PianogenError("fluidsynth not found: it plays the other piano (apt-get install fluidsynth)")
        self.soundfont = Path(soundfont).expanduser()
        if not self.soundfont.is_file():
            raise PianogenError(f"soundfont {self.soundfont} not found (e.g. apt-get install timgm6mb-soundfont)")
        self.sample_rate, self.gain = sample_rate, gain

    def render(self, performance: Performance) -> np.ndarray:
        if not performance.notes:
            raise PianogenError("the performance has no notes to render")
        with tempfile.TemporaryDirectory(prefix="pianogen-fluidsynth-") as tmp:
            midi, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
            pianogen.write_midi(performance, midi)
            # -n -i: no MIDI driver, no shell; -F: render the file faster than real time
            command = [self.binary, "-n", "-i", "-q", "-F", str(wav), "-r", str(self.sample_rate),
                       "-g", str(self.gain), str(self.soundfont), str(midi)]
            try:
                done = subprocess.run(command, capture_output=True, timeout=60 + 2 * performance.duration)
            except subprocess.TimeoutExpired:
                raise PianogenError(f"fluidsynth took over {60 + 2 * performance.duration:.0f} s; stopped") from None
            if done.returncode != 0 or not wav.is_file():
                last = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise PianogenError(f"fluidsynth failed (exit {done.returncode}): {last[0]}")
            audio, _ = sf.read(wav, dtype="float32", always_2d=True)
        audio = audio.T  # [channels, S]
        if audio.shape[0] == 1:
            audio = np.repeat(audio, 2, axis=0)
        peak = float(np.abs(audio).max(initial=0.0))
        return audio * (0.9 / peak) if peak > 0.99 else audio


def render_notes(notes: list, sample_rate: int = 44100, soundfont: Path = DEFAULT_SOUNDFONT) -> torch.Tensor:
    """Notes -> mono FloatTensor[S] at fluidsynth's default gain: audio whose notes are known, for tests and
    benchmarks of transcription. PianogenError when fluidsynth or the soundfont is missing (``make system``)."""
    audio = FluidSynth(soundfont, sample_rate, gain=0.2).render(Performance(list(notes)))
    return torch.from_numpy(audio.mean(axis=0))
