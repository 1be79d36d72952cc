"""A sampled grand piano: renders a ``Performance`` with recorded notes (Salamander Grand Piano V3).

Each note plays the recording of the nearest sampled pitch (the set has every minor third, A0..C8), read
at the rate that lands it on the exact equal-tempered pitch (linear interpolation over a fractional read
position). MIDI velocity maps to a continuous position among the 16 velocity layers, and the two layers
around it are crossfaded, so loudness and brightness move smoothly with velocity. By default layer 10 is
never used (crossfade 9 <-> 11 instead): codec evaluation scores layer-10 recordings, so models trained on
rendered audio never hear them. When the damper falls (key-off, or pedal-up for a key released under the
sustain pedal) the note decays exponentially (faster in the treble; the top strings above MIDI 88 have no
damper) and the recorded release noise plays at a level following the velocity. A key struck again cuts
its previous note with a short fade; past ``polyphony`` sounding voices the quietest-and-oldest is stolen
the same way. The soft pedal (una corda) shifts the layer position down: a softer, darker stroke.

Everything is planned first (when each voice starts, is damped, is cut), then each voice is rendered in
one vectorised pass; the same performance gives the same samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from pianogen.errors import PianogenError
from pianogen.interfaces import Performance

SAMPLE_RATE = 44100
PITCH_CLASSES = {"C": 0, "C#": 1, "D": 2, "D#": 3, "E": 4, "F": 5, "F#": 6, "G": 7, "G#": 8, "A": 9, "A#": 10,
                 "B": 11}
HIGHEST_DAMPER = 88  # E6 on a grand: the strings above ring on (they are short and die away by themselves)
SILENCE_DB = -70.0  # a recording is cut where it has decayed this far below its peak


@dataclass
class SamplerConfig:
    polyphony: int = 96  # voices sounding at once; the next steals one (which fades out over cut_fade)
    skip_layer: int | None = 10  # a velocity layer never played (EVAL_VELOCITY); None plays all
    gain: float = 0.8  # master gain (a ff chord can sum past 1: such a piece is scaled down to peak at 0.99)
    release_level: float = 0.06  # release noise at velocity 127 relative to its recording
    cut_fade: float = 0.02  # seconds: the fade of a voice cut by a repeated key or stolen
    damper_tau_bass: float = 0.09  # seconds of the damped decay at A0; halves every 3 octaves up
    soft_layers: float = 2.0  # the soft pedal plays this many layers softer


def midi_pitch(name: str) -> int:
    """``C4`` -> 60, ``F#1`` -> 30, ``A0`` -> 21."""
    match = re.fullmatch(r"([A-G]#?)(-?\d)", name)
    if not match:
        raise PianogenError(f"not a note name: {name!r}")
    return 12 * (int(match[2]) + 1) + PITCH_CLASSES[match[1]]


def load_sample(path: Path, sample_rate: int) -> torch.Tensor:
    """A recording as float16 [2, S] at ``sample_rate``, its tail below SILENCE_DB cut off."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise PianogenError(f"{path}: cannot decode ({err}); delete it and run again") from None
    wav = torch.from_numpy(np.ascontiguousarray(data.T[:2] if data.shape[1] >= 2 else np.repeat(data.T, 2, 0)))
    if rate != sample_rate:
        import torchaudio

        wav = torchaudio.functional.resample(wav, rate, sample_rate)
    level = wav.abs().amax(0)
    loud = torch.nonzero(level > level.max() * 10 ** (SILENCE_DB / 20))
    end = int(loud[-1]) + 1 if len(loud) else 1
    return wav[:, :end].to(torch.float16).contiguous()


@dataclass
class Voice:
    """One note's plan, in samples from the start of the output."""

    start: int
    pitch: int
    velocity: int
    layers: list[tuple[int, float]]  # (velocity layer, weight)
    length: int  # samples until the recording (read at its rate) runs out
    damp: float  # samples after start when the damper falls (inf: no damper)
    tau: float  # damped decay time constant, samples
    cut: float = float("inf")  # samples after start when a repeat or a steal cuts it

    @property
    def end(self) -> int:
        return int(min(self.length, self.damp + 7 * self.tau, self.cut))  # 7 tau: -61 dB


class Sampler:
    """Holds the decoded recordings (loaded once, on first use of each) and renders performances."""

    def __init__(self, layers: dict[int, Path], release: Path | None = None, config: SamplerConfig | None = None,
                 sample_rate: int = SAMPLE_RATE):
        """``layers``: {velocity layer 1..16: folder of ``<note>v<layer>.ogg``}; ``release``: a folder of
        ``rel<key>.ogg`` (key 1 = A0), or None for no release noise."""
        self.config = config or SamplerConfig()
        self.sample_rate = sample_rate
        self.files: dict[int, dict[int, Path]] = {}  # layer -> pitch -> file
        for layer, folder in sorted(layers.items()):
            if layer == self.config.skip_layer:
                continue
            found = {midi_pitch(p.stem.rsplit("v", 1)[0]): p for p in Path(folder).glob(f"*v{layer}.*")
                     if p.suffix.lower() in (".ogg", ".wav", ".flac")}
            if found:
                self.files[layer] = dict(sorted(found.items()))
        if not self.files:
            raise PianogenError(f"no piano samples in {', '.join(str(f) for f in layers.values())}")
        self.release_files = {} if release is None else {
            20 + int(p.stem[3:]): p for p in Path(release).glob("rel*.*") if p.stem[3:].isdigit()}
        self.positions = np.array(sorted(self.files), dtype=np.float64)
        self.cache: dict[Path, torch.Tensor] = {}

    @classmethod
    def salamander(cls, root: Path | None = None, config: SamplerConfig | None = None,
                   progress: bool = True) -> Sampler:
        """The Salamander set from the npm registry (``pianogen_data.salamander_fetch.salamander_samples``), fetched
        once."""
        from pianogen_data.salamander_fetch import salamander_samples

        samples = salamander_samples(root, progress)
        return cls(samples["layers"], samples["release"], config)

    def sample(self, path: Path) -> torch.Tensor:
        if path not in self.cache:
            self.cache[path] = load_sample(path, self.sample_rate)
        return self.cache[path]

    def layer_weights(self, velocity: float) -> list[tuple[int, float]]:
        """Velocity 1..127 -> the one or two layers around its position 1..16 and their crossfade weights."""
        x = 1 + 15 * (velocity - 1) / 126
        pos = self.positions
        if x <= pos[0] or len(pos) == 1:
            return [(int(pos[0]), 1.0)]
        if x >= pos[-1]:
            return [(int(pos[-1]), 1.0)]
        hi = int(np.searchsorted(pos, x))
        if pos[hi] == x:
            return [(int(x), 1.0)]
        w = (x - pos[hi - 1]) / (pos[hi] - pos[hi - 1])
        return [(int(pos[hi - 1]), 1.0 - w), (int(pos[hi]), w)]

    def nearest(self, layer: int, pitch: int) -> tuple[int, Path]:
        """The sampled pitch of ``layer`` nearest ``pitch`` (the lower one on a tie) and its file."""
        pitches = self.files[layer]
        best = min(pitches, key=lambda p: (abs(p - pitch), p))
        return best, pitches[best]

    def plan(self, performance: Performance) -> list[Voice]:
        """Every note's voice: layers, damper time (pedal applied), cuts by repeated keys and stealing."""
        cfg, sr = self.config, self.sample_rate
        notes = performance.arrays()
        ups = sorted(t for t, v in performance.sustain if v < 64)
        held = Performance.pedal_down_at(performance.sustain, notes["offset"])
        soft = Performance.pedal_down_at(performance.soft, notes["onset"])
        voices: list[Voice] = []
        active: list[Voice] = []
        for i in range(len(notes["pitch"])):
            pitch, velocity = int(notes["pitch"][i]), int(notes["velocity"][i])
            start = round(notes["onset"][i] * sr)
            release = float(notes["offset"][i])
            if held[i]:  # released under the pedal: sounds until the pedal lifts
                later = [t for t in ups if t > release]
                release = later[0] if later else float("inf")
            damp = (release - notes["onset"][i]) * sr if pitch <= HIGHEST_DAMPER else float("inf")
            x = velocity - (cfg.soft_layers * 126 / 15 if soft[i] else 0.0)
            layers = self.layer_weights(max(1.0, x))
            length = min(self._sample_length(layer, pitch) for layer, _ in layers)
            tau = cfg.damper_tau_bass * 2 ** (-(pitch - 21) / 36) * sr
            voice = Voice(start, pitch, velocity, layers, length, damp, tau)
            active = [v for v in active if v.start + v.end > start]
            for v in active:
                if v.pitch == pitch:  # the key struck again: its string is restruck, the old sound stops
                    v.cut = min(v.cut, start - v.start + cfg.cut_fade * sr)
            while len([v for v in active if v.start + v.end > start]) >= cfg.polyphony:
                playing = [v for v in active if v.start + v.end > start]
                # the quietest first: voices already damped, then the oldest
                victim = min(playing, key=lambda v: (v.start + v.damp > start, v.start))
                victim.cut = start - victim.start + cfg.cut_fade * sr
                active.remove(victim)
            voices.append(voice)
            active.append(voice)
        return voices

    def _sample_length(self, layer: int, pitch: int) -> int:
        sampled, path = self.nearest(layer, pitch)
        return int(self.sample(path).shape[1] / 2 ** ((pitch - sampled) / 12)) - 1

    def render(self, performance: Performance) -> np.ndarray:
        """The performance as float32 [2, S] at ``sample_rate``, S reaching until the last voice fell silent."""
        voices = self.plan(performance)
        if not voices:
            raise PianogenError("the performance has no notes to render")
        total = max(v.start + v.end for v in voices) + self.sample_rate // 10
        out = torch.zeros(2, total)
        for voice in voices:
            self._add_voice(out, voice)
            self._add_release(out, voice)
        out *= self.config.gain
        peak = float(out.abs().max())
        if peak > 0.99:  # a loud passage: scale the piece down rather than clip it
            out *= 0.99 / peak
        return out.numpy()

    def _add_voice(self, out: torch.Tensor, voice: Voice) -> None:
        n = voice.end
        if n <= 0:
            return
        by_pitch: dict[int, torch.Tensor] = {}  # layers recorded at one pitch are mixed before one resampling
        for layer, weight in voice.layers:
            sampled, path = self.nearest(layer, voice.pitch)
            src = self.sample(path)[:, : int(np.ceil(n * 2 ** ((voice.pitch - sampled) / 12))) + 2].float()
            if sampled in by_pitch:
                m = min(src.shape[1], by_pitch[sampled].shape[1])
                by_pitch[sampled] = by_pitch[sampled][:, :m].add_(src[:, :m], alpha=weight)
            else:
                by_pitch[sampled] = src.mul_(weight) if weight != 1.0 else src
        sound = sum(self._read(src, 2 ** ((voice.pitch - sampled) / 12), n) for sampled, src in by_pitch.items())
        tail = int(min(voice.damp, voice.cut - self.config.cut_fade * self.sample_rate, n))
        if tail < n:  # from the damper's fall or the cut's fade on, the envelope is not 1
            t = torch.arange(max(tail, 0), n, dtype=torch.float64)
            env = torch.exp(-torch.clamp(t - voice.damp, min=0) / voice.tau)
            fade_from = voice.cut - self.config.cut_fade * self.sample_rate
            env *= torch.clamp(1 - (t - fade_from) / (self.config.cut_fade * self.sample_rate), 0, 1)
            sound[:, max(tail, 0):] *= env.float()
        out[:, voice.start:voice.start + n] += sound

    @staticmethod
    def _read(src: torch.Tensor, rate: float, n: int) -> torch.Tensor:
        """``n`` samples of ``src`` float32 [2, S] read ``rate`` times faster (linear interpolation) -> [2, n]."""
        if rate == 1.0:
            return src[:, :n]
        # source index of output j: (j + 0.5) * rate - 0.5 (align_corners=False), the exact pitch ratio
        return F.interpolate(src[None], scale_factor=1 / rate, mode="linear", recompute_scale_factor=False)[0, :, :n]

    def _add_release(self, out: torch.Tensor, voice: Voice) -> None:
        """The damper's own noise where it falls on the strings (not when a cut stopped the voice first)."""
        if not self.release_files or voice.damp >= voice.cut or voice.damp == float("inf"):
            return
        key = min(self.release_files, key=lambda k: (abs(k - voice.pitch), k))
        noise = self.sample(self.release_files[key]).float()
        start = voice.start + int(voice.damp)
        n = min(noise.shape[1], out.shape[1] - start)
        if n > 0:
            out[:, start:start + n] += self.config.release_level * (voice.velocity / 127) ** 2 * noise[:, :n]
