"""Do a codec's codes hold still while a note sounds?

A held piano note changes slowly: its partials decay over seconds. A token model can only learn to
sustain a note (and so to stay in a key) if the codes of that note repeat, or change slowly, from
frame to frame. A codec whose encoder reads the waveform at each frame instant encodes each
partial's *phase* there instead: at 80 frames/s an A4 (440 Hz) advances 5.5 periods per hop, so
its latent flips sign every frame and its level-1 code alternates, while an A5 (880 Hz, 11 whole
periods per hop) repeats one code. A model trained on such codes must predict phases; what it
samples decodes to broadband hiss (the built-in piano model's failure, issue #28).

``steady_notes`` measures it on synthetic piano-like tones (harmonic partials with 1/k amplitudes,
decaying over seconds) at every key of the piano, with the codec contract only (``encode`` and
``codebooks``). A coder of magnitudes (phase-free) holds every tone's codes: 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from pianogen.evaluation.notes import add_harmonics, midi_hz
from pianogen.interfaces import Codec

PIANO_KEYS = tuple(range(21, 109))  # A0 .. C8
SETTLE_SECONDS = 0.25  # frames before this are left out: the onset and the encoder's receptive field
HELD = 0.5  # a pitch "holds" its level-1 code when at least this fraction of its frames repeats the previous


def steady_tone(pitch: int, sample_rate: int, seconds: float, partials: int = 8, decay_s: float = 2.0
                ) -> torch.Tensor:
    """A piano-like note FloatTensor[S]: harmonics k = 1..``partials`` of MIDI ``pitch`` below Nyquist, amplitude
    1/k, decaying with time constant ``decay_s``, peak 0.3 (no attack transient: the onset is not scored)."""
    t = torch.arange(round(seconds * sample_rate), dtype=torch.float64) / sample_rate
    wav = torch.zeros_like(t)
    add_harmonics(wav, midi_hz(pitch), t, sample_rate, partials, rolloff=1)
    wav *= torch.exp(-t / decay_s)
    return (0.3 * wav / wav.abs().max()).float()


@torch.no_grad()
def steady_notes(codec: Codec, pitches: Sequence[int] = PIANO_KEYS, seconds: float | None = None,
                 batch_size: int = 22) -> dict[str, Any]:
    """How still the codes of held notes stay: per pitch, the fraction of frames whose level-k code equals
    the previous frame's, and the cosine between consecutive frames' quantized latents (sum over levels of
    the codebook vectors: 1 = the same point, -1 = flipped, as a phase-locked encoder does).

    Returns {"pitches", "seconds", "repeat_by_level": [mean over pitches, per level], "level1_repeat",
    "held_pitches" (count with level-1 repeat >= HELD), "latent_cosine", "per_pitch": {pitch: {...}}}.
    """
    device = next((p.device for p in codec.parameters()), torch.device("cpu"))
    settle = max(1, round(SETTLE_SECONDS * codec.frame_rate))
    if seconds is None:  # 1 s, or longer for a codec so slow that 1 s leaves under 16 scored frames
        seconds = max(1.0, (settle + 16) / codec.frame_rate)
    tables = codec.codebooks().to(device).float()  # [K, V, D]
    per_pitch: dict[int, dict[str, Any]] = {}
    pitches = list(pitches)
    for i in range(0, len(pitches), batch_size):
        chunk = pitches[i:i + batch_size]
        wav = torch.stack([steady_tone(p, codec.sample_rate, seconds) for p in chunk])[:, None].to(device)
        codes = codec.encode(wav)[:, :, settle:]  # [B, K, T]
        if codes.shape[-1] < 2:
            raise ValueError(f"{seconds} s of tone leaves fewer than 2 frames after the first {SETTLE_SECONDS} s")
        repeat = (codes[:, :, 1:] == codes[:, :, :-1]).float().mean(dim=2)  # [B, K]
        latent = sum(tables[k][codes[:, k]] for k in range(codes.shape[1]))  # [B, T, D]
        cosine = F.cosine_similarity(latent[:, 1:], latent[:, :-1], dim=-1, eps=1e-8).mean(dim=1)  # [B]
        for j, pitch in enumerate(chunk):
            per_pitch[pitch] = {"repeat_by_level": [round(float(r), 4) for r in repeat[j]],
                                "latent_cosine": round(float(cosine[j]), 4),
                                "distinct_level1_codes": int(codes[j, 0].unique().numel())}
    rows = list(per_pitch.values())
    levels = len(rows[0]["repeat_by_level"])
    by_level = [sum(r["repeat_by_level"][k] for r in rows) / len(rows) for k in range(levels)]
    return {"pitches": len(rows), "seconds": seconds, "repeat_by_level": by_level, "level1_repeat": by_level[0],
            "held_pitches": sum(r["repeat_by_level"][0] >= HELD for r in rows),
            "latent_cosine": sum(r["latent_cosine"] for r in rows) / len(rows), "per_pitch": per_pitch}


def steady_notes_line(result: dict[str, Any]) -> str:
    """One markdown line saying how still held notes' codes stay, beside what a phase-free coder scores."""
    return (f"Held notes ({result['pitches']} piano-like tones, {result['seconds']:g} s each): the level-1 code "
            f"repeats the previous frame's in {result['level1_repeat']:.0%} of frames, and "
            f"{result['held_pitches']} of {result['pitches']} pitches hold it at least {HELD:.0%} of the time; "
            f"consecutive quantized latents have cosine {result['latent_cosine']:.2f} (a phase-free coder: 100 %, "
            f"all pitches, 1.00). Codes that change while a note holds make a token model predict phases.")
