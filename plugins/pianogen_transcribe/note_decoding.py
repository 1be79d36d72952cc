"""basic-pitch's note decoding: the model's frame and onset posteriorgrams -> note events, in numpy.

Ported from Spotify's basic-pitch 0.4.0, ``basic_pitch/note_creation.py`` (``output_to_notes_polyphonic``,
``get_infered_onsets``, ``constrain_frequency``). Copyright 2022 Spotify AB, licensed under the Apache
License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0); this port keeps the algorithm and its
constants and drops the librosa / pretty_midi dependencies. Changes: a silent input (no frame activation
change at all) gives no inferred onsets instead of a division by zero; ``seams`` (optional) keeps the rise of
the frame activation where two model windows meet from inferring an onset; loops read the same but run on
float32 copies.

Layout: T = model frames (ANNOTATIONS_FPS a second), P = 88 piano keys (index 0 = MIDI 21, A0).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

MIDI_OFFSET = 21  # MIDI number of the lowest key (pitch index 0)
MAX_FREQ_IDX = 87  # the highest pitch index
ENERGY_TOLERANCE = 11  # frames a note may dip below the frame threshold and still go on


def hz_to_midi(hz: float) -> float:
    return 12.0 * math.log2(hz / 440.0) + 69.0


def inferred_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2, seams: np.ndarray | None = None
                    ) -> np.ndarray:
    """Onsets [T, P] raised where the frame activation [T, P] jumps: the smallest rise over the last 1..n_diff
    frames, rescaled to the largest predicted onset; the larger of that and the predicted onset.

    seams: first frames of each model window but the first. A rise measured across one compares two windows'
    outputs, not two moments of the sound: on a held Salamander note the frame posterior steps 0.75 -> 0.84
    there and basic-pitch strikes the note again every 1.64 s; those rises are dropped."""
    diffs = []
    for n in range(1, n_diff + 1):
        padded = np.concatenate([np.zeros((n, frames.shape[1]), dtype=frames.dtype), frames])
        diffs.append(padded[n:, :] - padded[:-n, :])
    frame_diff = np.min(diffs, axis=0)
    frame_diff[frame_diff < 0] = 0
    frame_diff[:n_diff, :] = 0
    for seam in seams if seams is not None else ():
        frame_diff[seam:seam + n_diff, :] = 0
    peak = np.max(frame_diff)
    if peak > 0:  # basic-pitch divides unguarded: NaN everywhere on silence
        frame_diff = np.max(onsets) * frame_diff / peak
    return np.maximum(onsets, frame_diff)


def constrain_frequency(onsets: np.ndarray, frames: np.ndarray, max_freq: float | None,
                        min_freq: float | None) -> None:
    """Zero (in place) the activations of keys above ``max_freq`` / below ``min_freq`` Hz."""
    if max_freq is not None:
        top = int(round(hz_to_midi(max_freq) - MIDI_OFFSET))
        onsets[:, max(top, 0):] = 0
        frames[:, max(top, 0):] = 0
    if min_freq is not None:
        bottom = int(round(hz_to_midi(min_freq) - MIDI_OFFSET))
        onsets[:, :max(bottom, 0)] = 0
        frames[:, :max(bottom, 0)] = 0


def _clear_neighbours(energy: np.ndarray, times: slice | int, pitch: int) -> None:
    """A found note takes its energy and its neighbouring keys' (the model smears a semitone either side)."""
    energy[times, pitch] = 0
    if pitch < MAX_FREQ_IDX:
        energy[times, pitch + 1] = 0
    if pitch > 0:
        energy[times, pitch - 1] = 0


def notes_from_onsets(frames: np.ndarray, onset_peaks: np.ndarray, energy: np.ndarray, onset_thresh: float,
                      frame_thresh: float, min_note_len: int) -> list[tuple[int, int, int, float]]:
    """Notes that start at an onset peak >= onset_thresh and last while the frame activation stays above
    frame_thresh (with ENERGY_TOLERANCE frames of grace); later onsets first, as basic-pitch walks them."""
    n_frames = frames.shape[0]
    onset_time, onset_pitch = np.where(onset_peaks >= onset_thresh)
    events = []
    for start, pitch in zip(onset_time[::-1], onset_pitch[::-1]):
        if start >= n_frames - 1:  # too close to the end of the audio
            continue
        i, below = start + 1, 0  # below: frames since the energy dropped under the threshold
        while i < n_frames - 1 and below < ENERGY_TOLERANCE:
            below = below + 1 if energy[i, pitch] < frame_thresh else 0
            i += 1
        i -= below  # back to the last frame above the threshold
        if i - start <= min_note_len:
            continue
        _clear_neighbours(energy, slice(start, i), pitch)
        events.append((int(start), int(i), int(pitch) + MIDI_OFFSET, float(np.mean(frames[start:i, pitch]))))
    return events


def _walk(energy: np.ndarray, start: int, pitch: int, frame_thresh: float, step: int) -> int:
    """Melodia trick: from ``start`` walk in ``step`` direction clearing energy until it has stayed under
    ``frame_thresh`` for ENERGY_TOLERANCE frames; returns the frame index where the walk stopped and the
    count of trailing frames below threshold folded in (the note's last frame above threshold)."""
    n_frames = energy.shape[0]
    i, below = start + step, 0
    while (i < n_frames - 1 if step > 0 else i > 0) and below < ENERGY_TOLERANCE:
        below = below + 1 if energy[i, pitch] < frame_thresh else 0
        _clear_neighbours(energy, i, pitch)
        i += step
    return i - step - below * step


def notes_from_leftover_energy(frames: np.ndarray, energy: np.ndarray, frame_thresh: float,
                               min_note_len: int) -> list[tuple[int, int, int, float]]:
    """basic-pitch's "melodia trick": notes without a detected onset, grown forwards and backwards from the
    strongest frame activation left, until none above frame_thresh remains."""
    events = []
    while np.max(energy) > frame_thresh:
        mid, pitch = np.unravel_index(np.argmax(energy), energy.shape)
        energy[mid, pitch] = 0
        end = _walk(energy, int(mid), int(pitch), frame_thresh, +1)
        begin = _walk(energy, int(mid), int(pitch), frame_thresh, -1)
        if end - begin <= min_note_len:
            continue
        events.append((begin, end, int(pitch) + MIDI_OFFSET, float(np.mean(frames[begin:end, pitch]))))
    return events


def output_to_notes_polyphonic(frames: np.ndarray, onsets: np.ndarray, onset_thresh: float, frame_thresh: float,
                               min_note_len: int, infer_onsets: bool = True, max_freq: float | None = None,
                               min_freq: float | None = None, melodia_trick: bool = True,
                               seams: np.ndarray | None = None) -> list[tuple[int, int, int, float]]:
    """frames, onsets FloatArray[T, P] (the model's note and onset posteriors) -> note events
    (start frame, end frame, MIDI pitch, amplitude 0..1), as basic-pitch decodes them (``seams`` None;
    see ``inferred_onsets`` for what they change)."""
    frames = np.array(frames, dtype=np.float32)
    onsets = np.array(onsets, dtype=np.float32)
    constrain_frequency(onsets, frames, max_freq, min_freq)
    if infer_onsets:
        onsets = inferred_onsets(onsets, frames, seams=seams)
    onset_peaks = np.zeros_like(onsets)  # local maxima in time only
    peaks = scipy.signal.argrelmax(onsets, axis=0)
    onset_peaks[peaks] = onsets[peaks]
    energy = frames.copy()  # what is left for later notes to claim
    events = notes_from_onsets(frames, onset_peaks, energy, onset_thresh, frame_thresh, min_note_len)
    if melodia_trick:
        events += notes_from_leftover_energy(frames, energy, frame_thresh, min_note_len)
    return events
