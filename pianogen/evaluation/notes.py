"""Note-level metrics: what a continuation plays, heard through a transcriber, next to its floors.

Pure functions over ``list[Note]`` (pianogen.interfaces) and mono audio FloatTensor[S]:
- ``note_f1``: the transcription literature's note F1 (onsets within 50 ms, pitch within 50 cents, offsets
  ignored), by mir_eval; ``note_f1_with_offsets`` adds mir_eval's offset criterion.
- pitch-class profiles, their Pearson correlation, Krumhansl-Schmuckler key estimation and the MIREX
  weighted key score; distinct pitches and notes per second;
- ``continuation_note_metrics``: those per second after the prompt and averaged;
- struck notes per second: the heard notes whose partials jump at their onset (``strikes``), so that a held,
  wavering chord is not counted as playing;
- ``drone``: the floor that today's failure mode (a continuation stuck on one sustained chord) scores;
- ``notes_summary``: the block ``pianogen generate`` writes to generation.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pianogen.data.midi import midi_hz
from pianogen.evaluation.strikes import struck
from pianogen.generation.prompt_end import level_slope
from pianogen.interfaces import Note, Transcriber

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Krumhansl & Kessler (1982) probe-tone ratings, tonic first: the key profiles of Krumhansl-Schmuckler
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
TRIADS = {"major": (0, 4, 7), "minor": (0, 3, 7)}
NOTE_METRICS = ("notes_per_second", "struck_notes_per_second", "pitch_class_correlation", "key_agreement",
                "distinct_pitches")
STRUCK = "struck_notes_per_second"  # measured only where the audio is at hand (pianogen.evaluation.strikes)
# the continuation's level trend, dB a second (prompt_end.level_slope): a lone note's true continuation fades; a
# model that holds it at the prompt's last level (a drone) scores 0 here while every note count passes
LEVEL = "level_db_per_second"
# harmonics of each drone note, amplitude 1 / h**2: with 1 / h, or fewer partials, basic-pitch hears the strong
# upper partials of a tone held this steady as extra notes (measured on the 8 kHz test corpus)
DRONE_PARTIALS = 8
DRONE_ROOT = 48  # C3: the drone's root is the key's tonic in the octave from here
DRONE_FADE_SECONDS = 0.01  # fade-in, so the drone starts without a click
# a note heard starting this little before the prompt's end belongs to the continuation: the transcriber's
# frames (11.6 ms) smear an onset at the boundary (the drone's) to just before it
BOUNDARY_TOLERANCE = 0.03

Key = tuple[int, str]  # (tonic pitch class 0..11, "major" | "minor")


def load_transcriber(name: str | None) -> tuple[Transcriber | None, str | None]:
    """(the registered transcriber, None), or (None, why it cannot be used, in one line): every evaluation that
    hears notes goes on without them rather than fail."""
    if name is None:
        return None, "no transcriber asked"
    import pianogen
    from pianogen.errors import PianogenError, first_line

    try:
        return pianogen.get_transcriber(name), None
    except Exception as err:  # a plugin's factory may raise anything: one line, and the rest runs
        kind = "" if isinstance(err, PianogenError) else f"{type(err).__name__}: "
        return None, f"transcriber '{name}' unavailable: {kind}{first_line(err)}"


def add_harmonics(wav: torch.Tensor, f0: float, t: torch.Tensor, sample_rate: int, partials: int,
                  rolloff: float) -> None:
    """Add to ``wav`` (in place) harmonics h = 1..``partials`` of ``f0`` below Nyquist at times ``t`` (seconds),
    harmonic h at amplitude 1 / h**``rolloff``, zero phase: the additive tones of the drone floor and of
    ``code_stability``'s held notes."""
    for h in range(1, partials + 1):
        if h * f0 < sample_rate / 2:
            wav += torch.sin(2 * math.pi * h * f0 * t) / h**rolloff


def _intervals_and_hz(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    """mir_eval's form: intervals FloatArray[N, 2] (seconds) and pitches FloatArray[N] (Hz); a note with
    offset <= onset gets 1 ms so mir_eval accepts it (offsets play no part in onset-only matching)."""
    intervals = np.array([[n.onset, max(n.offset, n.onset + 1e-3)] for n in notes], dtype=np.float64)
    return intervals.reshape(-1, 2), np.array([midi_hz(n.pitch) for n in notes], dtype=np.float64)


def _precision_recall_f1(reference: Sequence[Note], estimate: Sequence[Note], onset_tolerance: float,
                         offset_ratio: float | None) -> dict[str, float]:
    """Empty lists: precision is 1 when nothing was estimated, recall 1 when nothing was to be found
    (so two empty lists score 1, and one empty list against a non-empty one scores F1 0)."""
    if not reference or not estimate:
        precision, recall = float(not estimate), float(not reference)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1}
    from mir_eval.transcription import precision_recall_f1_overlap

    ref_intervals, ref_hz = _intervals_and_hz(reference)
    est_intervals, est_hz = _intervals_and_hz(estimate)
    precision, recall, f1, _ = precision_recall_f1_overlap(
        ref_intervals, ref_hz, est_intervals, est_hz, onset_tolerance=onset_tolerance, pitch_tolerance=50.0,
        offset_ratio=offset_ratio)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def note_f1(reference: Sequence[Note], estimate: Sequence[Note], onset_tolerance: float = 0.05
            ) -> dict[str, float]:
    """Note precision / recall / F1 with onsets within ``onset_tolerance`` s and pitch within 50 cents,
    offsets ignored (mir_eval.transcription, one-to-one matching): "note F1 (onsets, 50 ms)"."""
    return _precision_recall_f1(reference, estimate, onset_tolerance, None)


def note_f1_with_offsets(reference: Sequence[Note], estimate: Sequence[Note], onset_tolerance: float = 0.05,
                         offset_ratio: float = 0.2) -> dict[str, float]:
    """``note_f1`` that also asks the offset within 20% of the reference note's duration (at least 50 ms)."""
    return _precision_recall_f1(reference, estimate, onset_tolerance, offset_ratio)


def pitch_class_profile(notes: Sequence[Note], weight: str = "duration") -> np.ndarray:
    """FloatArray[12] (index 0 = C) summing to 1 (all zeros without notes): each note's pitch class weighted
    by its duration (``weight="duration"``) or counted once (``"count"``)."""
    if weight not in ("duration", "count"):
        raise ValueError(f"weight must be 'duration' or 'count', got {weight!r}")
    profile = np.zeros(12)
    for n in notes:
        profile[n.pitch % 12] += max(n.offset - n.onset, 0.0) if weight == "duration" else 1.0
    total = profile.sum()
    return profile / total if total > 0 else profile


def _profile(x: Sequence[Note] | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) if isinstance(x, np.ndarray) else pitch_class_profile(x)


def pitch_class_correlation(a: Sequence[Note] | np.ndarray, b: Sequence[Note] | np.ndarray) -> float:
    """Pearson correlation of two pitch-class profiles (note lists or 12-vectors), -1..1; 0 when either is
    flat (no notes, or every pitch class alike): nothing to correlate."""
    pa, pb = _profile(a), _profile(b)
    if pa.std() == 0 or pb.std() == 0:
        return 0.0
    return float(np.corrcoef(pa, pb)[0, 1])


def key_from_profile(profile: np.ndarray) -> Key | None:
    """Krumhansl-Schmuckler: the (tonic, mode) whose rotated Krumhansl-Kessler profile correlates best with a
    pitch-class profile FloatArray[12]; None for a flat profile (no notes)."""
    profile = np.asarray(profile, dtype=np.float64)
    if profile.std() == 0:
        return None
    best, best_r = None, -math.inf
    for mode, template in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if r > best_r:
                best, best_r = (tonic, mode), r
    return best


def estimate_key(notes: Sequence[Note]) -> Key | None:
    """The notes' key, e.g. (0, "major") for C major; None without notes."""
    return key_from_profile(pitch_class_profile(notes))


def key_name(key: Key | None) -> str:
    return "none" if key is None else f"{PITCH_CLASSES[key[0]]} {key[1]}"


def key_agreement(prompt_notes: Sequence[Note], notes: Sequence[Note]) -> float:
    """How well the key of ``notes`` agrees with the prompt's: the MIREX weighted key score (mir_eval.key), with
    the prompt's key as reference: 1 the same key, 0.5 a fifth above (same mode), 0.3 the relative
    major/minor, 0.2 the parallel one, 0 otherwise or when either has no notes."""
    from mir_eval.key import weighted_score

    ref, est = estimate_key(prompt_notes), estimate_key(notes)
    if ref is None or est is None:
        return 0.0
    return float(weighted_score(key_name(ref), key_name(est)))


def distinct_pitches(notes: Sequence[Note]) -> int:
    return len({n.pitch for n in notes})


def notes_per_second(notes: Sequence[Note], seconds: float) -> float:
    return len(notes) / seconds if seconds > 0 else 0.0


def _clip(notes: Sequence[Note], start: float, end: float) -> list[Note]:
    """The parts of ``notes`` sounding in [start, end) (a note held over the edge counts for its part)."""
    return [Note(max(n.onset, start), min(n.offset, end), n.pitch, n.velocity) for n in notes
            if n.onset < end and n.offset > start]


def continuation_note_metrics(prompt_notes: Sequence[Note], continuation_notes: Sequence[Note], seconds: float,
                              per_second: bool = True, struck_notes: Sequence[Note] | None = None) -> dict[str, Any]:
    """The continuation's notes in each second after the prompt, against the prompt's notes.

    continuation_notes: times in seconds from the prompt's end (a note held over from the prompt starts
    before 0). Per 1 s bin k (``floor(seconds)`` of them; one bin of ``seconds`` when shorter than 1 s):
    ``notes_per_second`` counts onsets in it, ``distinct_pitches`` the pitches sounding in it,
    ``pitch_class_correlation`` correlates the duration profile of what sounds in it with the prompt's,
    ``key_agreement`` scores its key against the prompt's; with ``struck_notes`` (those of the continuation's notes
    that ``strikes.struck`` finds struck), ``struck_notes_per_second`` counts their onsets in it.
    Returns {metric: mean over the bins} and, with ``per_second``, "per_second": {metric: [value per bin]}.
    """
    prompt_profile = pitch_class_profile(prompt_notes)
    edges = [(float(k), float(k + 1)) for k in range(math.floor(seconds + 1e-6))] or [(0.0, max(seconds, 1e-3))]
    measured = [metric for metric in NOTE_METRICS if metric != STRUCK or struck_notes is not None]
    bins: dict[str, list[float]] = {metric: [] for metric in measured}
    for lo, hi in edges:
        sounding = _clip(continuation_notes, lo, hi)
        onsets = [n for n in continuation_notes if lo <= n.onset < hi]
        bins["notes_per_second"].append(len(onsets) / (hi - lo))
        if struck_notes is not None:
            bins[STRUCK].append(sum(lo <= n.onset < hi for n in struck_notes) / (hi - lo))
        bins["distinct_pitches"].append(float(distinct_pitches(sounding)))
        bins["pitch_class_correlation"].append(pitch_class_correlation(prompt_profile, pitch_class_profile(sounding)))
        bins["key_agreement"].append(key_agreement(prompt_notes, sounding))
    out: dict[str, Any] = {metric: float(np.mean(values)) for metric, values in bins.items()}
    if per_second:
        out["per_second"] = bins
    return out


def drone(prompt_wav: torch.Tensor, prompt_notes: Sequence[Note] | None, sample_rate: int, seconds: float
          ) -> torch.Tensor:
    """The `drone` floor, FloatTensor[round(seconds * sample_rate)]: the tonic triad of the prompt's key (from
    its notes; from the prompt audio's chroma when there are none or ``prompt_notes`` is None), root in the
    octave from C3, held for ``seconds`` as additive partials (harmonics 1..8 at 1/h², zero phase) at the
    prompt's RMS. What a continuation stuck on one sustained chord sounds like; deterministic."""
    from pianogen.evaluation.drift import chroma

    x = prompt_wav.reshape(-1).float()
    key = estimate_key(prompt_notes) if prompt_notes else None
    if key is None and x.numel() and float(x.abs().max()) > 0:
        key = key_from_profile(chroma(x, sample_rate).double().numpy())
    tonic, mode = key or (0, "major")
    n = round(seconds * sample_rate)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    wav = torch.zeros(n, dtype=torch.float64)
    for interval in TRIADS[mode]:
        add_harmonics(wav, midi_hz(DRONE_ROOT + tonic + interval), t, sample_rate, DRONE_PARTIALS, rolloff=2)
    fade = min(n, max(1, round(DRONE_FADE_SECONDS * sample_rate)))
    wav[:fade] *= torch.linspace(0, 1, fade, dtype=torch.float64)
    rms = float(x.pow(2).mean().sqrt()) if x.numel() else 0.0
    level = float(wav.pow(2).mean().sqrt())
    return (wav * (rms / level if level > 0 else 0.0)).float()


def split_at(notes: Sequence[Note], boundary: float) -> tuple[list[Note], list[Note]]:
    """Notes of prompt + continuation audio -> (the prompt's: onset before ``boundary`` s, less
    BOUNDARY_TOLERANCE; the continuation's: the others and the prompt's still sounding after ``boundary``,
    times shifted so the continuation starts at 0; an onset within the tolerance before it moves to 0)."""
    cut = boundary - BOUNDARY_TOLERANCE
    prompt = [n for n in notes if n.onset < cut]
    after = [Note(n.onset - boundary if n.onset < cut else max(n.onset - boundary, 0.0), n.offset - boundary,
                  n.pitch, n.velocity) for n in notes if n.offset > boundary]
    return prompt, after


def signal_note_metrics(transcriber: Transcriber, signals: dict[str, torch.Tensor], sample_rate: int,
                        boundary: int, seconds: float, heard: dict[str, list[Note]] | None = None,
                        prompt_notes: Sequence[Note] | None = None) -> dict[str, dict[str, Any]]:
    """Each signal (prompt + continuation audio FloatTensor[S], the prompt ``boundary`` samples long)
    transcribed whole and its continuation scored by ``continuation_note_metrics`` (struck notes too) against
    ``prompt_notes`` (evaluation: the original prompt's, the same reference for every signal, so a codec that
    turns prompt and continuation alike into one hum does not correlate with itself), else against its own
    prompt's notes.
    ``heard``: notes already transcribed, by signal name (reused, not transcribed again)."""
    out = {}
    for name, wav in signals.items():
        notes = heard[name] if heard and name in heard else transcriber.transcribe(wav, sample_rate)
        own_prompt, after = split_at(notes, boundary / sample_rate)
        out[name] = continuation_note_metrics(own_prompt if prompt_notes is None else prompt_notes, after, seconds,
                                              struck_notes=struck(wav, sample_rate, after, boundary / sample_rate))
        slope = level_slope(wav[boundary:], sample_rate)
        if slope is not None:
            out[name][LEVEL] = slope
    return out


def average_note_metrics(per_prompt: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """``signal_note_metrics`` of several prompts -> {signal: {metric: mean, "per_second": {metric: [mean]}}}."""
    first = per_prompt[0]
    averaged = {name: {**{metric: float(np.mean([p[name][metric] for p in per_prompt])) for metric in measured},
                       "per_second": {metric: np.mean([p[name]["per_second"][metric] for p in per_prompt],
                                                      axis=0).tolist() for metric in measured}}
                for name in first for measured in [[m for m in NOTE_METRICS if m in first[name]]]}
    for name in first:  # the level's slope: one number a prompt, no per-second bins
        if all(LEVEL in p[name] for p in per_prompt):
            averaged[name][LEVEL] = float(np.mean([p[name][LEVEL] for p in per_prompt]))
    return averaged


def notes_summary(prompt_wav: torch.Tensor, continuation_wav: torch.Tensor, sample_rate: int,
                  transcriber: Transcriber) -> dict[str, Any]:
    """What generation.json carries about notes: the prompt's key and note rate, the continuation's note
    metrics (per second and averaged) and, beside them, the same metrics of the `drone` floor on that prompt.
    Each is transcribed with its prompt in front, so a note held over the boundary is not heard as new."""
    prompt = prompt_wav.reshape(-1).float()
    continuation = continuation_wav.reshape(-1).float()
    boundary, seconds = prompt.numel() / sample_rate, continuation.numel() / sample_rate
    whole = torch.cat([prompt, continuation])
    prompt_notes, after = split_at(transcriber.transcribe(whole, sample_rate), boundary)
    floor = torch.cat([prompt, drone(prompt, prompt_notes, sample_rate, seconds)])
    _, drone_after = split_at(transcriber.transcribe(floor, sample_rate), boundary)
    return {
        "transcriber": transcriber.name,
        "prompt": {"notes": len(prompt_notes), "key": key_name(estimate_key(prompt_notes)),
                   "notes_per_second": notes_per_second(prompt_notes, boundary),
                   "distinct_pitches": distinct_pitches(prompt_notes)},
        "continuation": {"notes": sum(1 for n in after if n.onset >= 0), "key": key_name(estimate_key(after)),
                         **continuation_note_metrics(prompt_notes, after, seconds,
                                                     struck_notes=struck(whole, sample_rate, after, boundary))},
        "floors": {"drone": continuation_note_metrics(prompt_notes, drone_after, seconds,
                                                      struck_notes=struck(floor, sample_rate, drone_after, boundary))},
    }
