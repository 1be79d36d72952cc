"""The ``basic_pitch`` transcriber: Spotify's basic-pitch (ICASSP 2022) ONNX model on onnxruntime's CPU.

The model and its windowing come from basic-pitch 0.4.0 (``basic_pitch/inference.py``: ``window_audio_file``,
``get_audio_input``, ``unwrap_output``, ``predict``), Copyright 2022 Spotify AB, licensed under the Apache
License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0). The wheel is installed ``--no-deps`` and
never imported (it would pull in TensorFlow's warnings): only its ``nmp.onnx`` file is read, found through
``importlib.util.find_spec``. Audio is resampled with torchaudio, notes decoded by ``note_decoding`` (numpy).

Layout: S = samples at 22050 Hz, W = windows of WINDOW_SAMPLES, T = model frames (86 a second), P = 88 keys.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF

from pianogen.errors import PianogenError
from pianogen.interfaces import Note, Transcriber
from pianogen_transcribe.note_decoding import output_to_notes_polyphonic

MODEL_SAMPLE_RATE = 22050
FFT_HOP = 256  # samples a model frame
WINDOW_SAMPLES = MODEL_SAMPLE_RATE * 2 - FFT_HOP  # 43844: the model's fixed input
ANNOT_FRAMES = 172  # frames the model outputs for one window
OVERLAP_FRAMES = 30  # consecutive windows overlap by this many frames; half is dropped at each edge
OVERLAP_SAMPLES = OVERLAP_FRAMES * FFT_HOP
WINDOW_HOP = WINDOW_SAMPLES - OVERLAP_SAMPLES
KEPT_FRAMES = ANNOT_FRAMES - OVERLAP_FRAMES  # 142 frames of each window make the unwrapped posteriorgram
FRAMES_PER_SECOND = MODEL_SAMPLE_RATE // FFT_HOP  # 86, basic-pitch's ANNOTATIONS_FPS
WHEEL_MODEL = ("saved_models", "icassp_2022", "nmp.onnx")
INSTALL = "pip install --no-deps basic-pitch==0.4.0"
# the ONNX graph's names: posteriors of note (frame), onset and pitch contour
INPUT_NAME = "serving_default_input_2:0"
OUTPUT_NAMES = {"note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2"}


@dataclass
class BasicPitchConfig:
    """basic-pitch's own defaults (``basic_pitch.inference.predict``)."""

    onset_threshold: float = 0.5  # an onset posterior peak at least this starts a note
    frame_threshold: float = 0.3  # a note goes on while its frame posterior stays at least this
    minimum_note_length_ms: float = 127.70  # shorter notes are dropped (11 model frames)
    melodia_trick: bool = True  # also grow notes with no detected onset from the frame posterior left
    infer_onsets: bool = True  # add onsets where the frame posterior jumps
    minimum_frequency: float = 0.0  # Hz; keys below are ignored (0 = none)
    maximum_frequency: float = 0.0  # Hz; keys above are ignored (0 = none)
    model_path: str = ""  # an ONNX file; "" = the nmp.onnx of the installed basic-pitch wheel
    threads: int = 0  # onnxruntime intra-op threads; 0 = the CPUs this process may use, at most 4
    batch_windows: int = 8  # 2 s windows per onnxruntime call
    # True = basic-pitch's own decoding, where the step of the frame posterior between two 2 s windows may
    # infer an onset: a note held across one is struck again (every 1.64 s on Salamander's held notes)
    onsets_at_seams: bool = False

    def __post_init__(self) -> None:
        for key in ("onset_threshold", "frame_threshold"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise PianogenError(f"transcriber.{key} must be in (0, 1), got {getattr(self, key)}")
        if self.minimum_note_length_ms < 0 or self.minimum_frequency < 0 or self.maximum_frequency < 0:
            raise PianogenError("transcriber.minimum_note_length_ms, minimum_frequency and maximum_frequency "
                                "must be >= 0")
        if self.threads < 0 or self.batch_windows < 1:
            raise PianogenError(f"transcriber.threads must be >= 0 and batch_windows >= 1, got {self.threads} "
                                f"and {self.batch_windows}")

    @property
    def min_note_frames(self) -> int:
        return int(np.round(self.minimum_note_length_ms / 1000 * (MODEL_SAMPLE_RATE / FFT_HOP)))


def wheel_model_path() -> Path:
    """The installed basic-pitch wheel's ICASSP 2022 ONNX model, located without importing the package."""
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise PianogenError(f"the basic_pitch transcriber needs the basic-pitch wheel's ONNX model, and "
                            f"basic-pitch is not installed: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*WHEEL_MODEL)
    if not path.is_file():
        raise PianogenError(f"basic-pitch is installed but its ONNX model {path} is missing: {INSTALL}")
    return path


def default_threads() -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, available))


@functools.lru_cache(maxsize=4)
def onnx_session(path: str, threads: int) -> Any:
    """One onnxruntime session per (model file, threads) and process: loading costs ~0.3 s."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise PianogenError(f"the basic_pitch transcriber runs on onnxruntime, which does not import ({err}): "
                            f"pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no graph-optimisation chatter
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PianogenError(f"cannot load the basic_pitch ONNX model {path} ({first}): {INSTALL}") from None


def windows(audio: np.ndarray) -> np.ndarray:
    """audio FloatArray[S] at 22050 Hz -> FloatArray[W, WINDOW_SAMPLES, 1]: half an overlap of zeros in front,
    then windows every WINDOW_HOP samples, the last zero-padded (basic-pitch's get_audio_input)."""
    padded = np.concatenate([np.zeros(OVERLAP_SAMPLES // 2, dtype=np.float32), audio.astype(np.float32)])
    starts = range(0, padded.shape[0], WINDOW_HOP)
    out = np.zeros((len(starts), WINDOW_SAMPLES, 1), dtype=np.float32)
    for w, start in enumerate(starts):
        chunk = padded[start:start + WINDOW_SAMPLES]
        out[w, :chunk.shape[0], 0] = chunk
    return out


def unwrap(output: np.ndarray, n_samples: int) -> np.ndarray:
    """Per-window posteriors FloatArray[W, 172, P] -> FloatArray[T, P] for the whole audio: half the overlap
    cut from each window's edges, the rest concatenated and trimmed to the audio's length (unwrap_output)."""
    half = OVERLAP_FRAMES // 2
    kept = output[:, half:-half, :]
    n_frames = int(np.floor(n_samples * (FRAMES_PER_SECOND / MODEL_SAMPLE_RATE)))
    return kept.reshape(-1, output.shape[2])[:n_frames]


def frame_times(n_frames: int) -> np.ndarray:
    """Seconds of each unwrapped frame FloatArray[T]. Frame j of window w lies at w * WINDOW_HOP + j * FFT_HOP
    samples of the audio (the half-overlap of leading zeros cancels the frames cut from the window's start).
    basic-pitch's model_frames_to_time approximates this with a correction of about 10 ms every 172 frames;
    this is the exact place, the same on average without the sawtooth."""
    n = np.arange(n_frames)
    return ((n // KEPT_FRAMES) * WINDOW_HOP + (n % KEPT_FRAMES) * FFT_HOP) / MODEL_SAMPLE_RATE



class BasicPitch(Transcriber):
    """wav FloatTensor[S] or [1, S] (mono, any rate) -> notes sorted by onset, then pitch."""

    name = "basic_pitch"

    def __init__(self, config: BasicPitchConfig) -> None:
        self.config = config
        path = Path(config.model_path).expanduser() if config.model_path else wheel_model_path()
        if not path.is_file():
            raise PianogenError(f"transcriber.model_path {path} does not exist: point it at basic-pitch's "
                                f"nmp.onnx, or leave it empty for the installed wheel's ({INSTALL})")
        self.model_path = path
        self.session = onnx_session(str(path.resolve()), config.threads or default_threads())

    def posteriors(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """audio FloatArray[S] at 22050 Hz -> {"note", "onset": FloatArray[T, P]}."""
        batches = windows(audio)
        names = list(OUTPUT_NAMES.values())
        outputs: dict[str, list[np.ndarray]] = {key: [] for key in OUTPUT_NAMES}
        for i in range(0, batches.shape[0], self.config.batch_windows):
            result = self.session.run(names, {INPUT_NAME: batches[i:i + self.config.batch_windows]})
            for key, value in zip(OUTPUT_NAMES, result):
                outputs[key].append(value)
        return {key: unwrap(np.concatenate(parts), audio.shape[0]) for key, parts in outputs.items()}

    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> list[Note]:
        if wav.dim() > 2 or (wav.dim() == 2 and wav.shape[0] != 1):
            raise PianogenError(f"transcribe takes mono audio [S] or [1, S], got shape {list(wav.shape)}")
        if sample_rate <= 0:
            raise PianogenError(f"sample_rate must be positive, got {sample_rate}")
        x = wav.detach().reshape(-1).float().cpu()
        if sample_rate != MODEL_SAMPLE_RATE:
            x = AF.resample(x, sample_rate, MODEL_SAMPLE_RATE)
        if x.numel() == 0:
            return []
        post = self.posteriors(x.numpy())
        n_frames, c = post["note"].shape[0], self.config
        events = output_to_notes_polyphonic(
            post["note"], post["onset"], onset_thresh=c.onset_threshold, frame_thresh=c.frame_threshold,
            min_note_len=c.min_note_frames, infer_onsets=c.infer_onsets, melodia_trick=c.melodia_trick,
            max_freq=c.maximum_frequency or None, min_freq=c.minimum_frequency or None,
            seams=None if c.onsets_at_seams else np.arange(KEPT_FRAMES, n_frames, KEPT_FRAMES))
        times = frame_times(n_frames)
        notes = [Note(onset=float(times[start]), offset=float(times[end]), pitch=pitch,
                      velocity=int(np.clip(np.round(127 * amplitude), 1, 127)))
                 for start, end, pitch, amplitude in events]
        return sorted(notes, key=lambda n: (n.onset, n.pitch))


def basic_pitch(**config: Any) -> BasicPitch:
    return BasicPitch(BasicPitchConfig(**config))
