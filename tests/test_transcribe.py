"""The `basic_pitch` transcriber on audio whose notes are known: fluidsynth renders a C-major scale."""

from __future__ import annotations

import os

import pytest
import torch
from pianogen_data.fluidsynth import render_notes as render_fluidsynth

import pianogen
from pianogen.errors import PianogenError
from pianogen.evaluation.notes import note_f1
from pianogen.interfaces import Note

C_MAJOR_SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def rendered(notes: list[Note], sample_rate: int = 44100) -> torch.Tensor:
    """fluidsynth's rendering; skipped where fluidsynth is missing, except on CI (``make system`` installs it)."""
    try:
        return render_fluidsynth(notes, sample_rate)
    except PianogenError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def scale() -> tuple[list[Note], torch.Tensor]:
    notes = [Note(0.2 + 0.4 * i, 0.55 + 0.4 * i, pitch, 90) for i, pitch in enumerate(C_MAJOR_SCALE)]
    return notes, rendered(notes)


def lowest_per_onset(notes: list[Note], tolerance: float = 0.05) -> list[int]:
    """The lowest pitch of each group of notes starting together (a piano tone's strong octave partial may be
    heard as a quieter note an octave up, basic-pitch's usual error)."""
    groups: list[list[Note]] = []
    for n in sorted(notes, key=lambda n: n.onset):
        if groups and n.onset - groups[-1][0].onset < tolerance:
            groups[-1].append(n)
        else:
            groups.append([n])
    return [min(n.pitch for n in group) for group in groups]


def test_a_rendered_c_major_scale_transcribes_to_its_pitches_in_order(scale):
    notes, wav = scale
    heard = pianogen.get_transcriber("basic_pitch").transcribe(wav, 44100)
    assert lowest_per_onset([n for n in heard if n.onset < 3.5]) == C_MAJOR_SCALE
    scores = note_f1(notes, heard)
    assert scores["recall"] == 1.0 and scores["f1"] > 0.7  # every played note found within 50 ms
    assert heard == sorted(heard, key=lambda n: (n.onset, n.pitch))
    assert all(21 <= n.pitch <= 108 and 1 <= n.velocity <= 127 and n.offset > n.onset for n in heard)


def test_any_rate_and_either_shape_hear_the_same_notes(scale):
    notes, wav = scale
    transcriber = pianogen.get_transcriber("basic_pitch")
    import torchaudio.functional as AF

    at_16k = AF.resample(wav, 44100, 16000)
    heard = transcriber.transcribe(at_16k[None], 16000)
    assert note_f1(notes, heard)["recall"] == 1.0
    with pytest.raises(PianogenError, match="mono"):
        transcriber.transcribe(torch.stack([wav, wav]), 44100)


def test_silence_has_no_notes():
    assert pianogen.get_transcriber("basic_pitch").transcribe(torch.zeros(22050), 22050) == []


def test_thresholds_are_the_config():
    """A frame threshold near 1 keeps almost nothing: the config reaches the decoding."""
    wav = rendered([Note(0.1, 0.8, 60, 100), Note(0.9, 1.6, 64, 100)], 22050)
    strict = pianogen.get_transcriber("basic_pitch", frame_threshold=0.95, onset_threshold=0.95)
    loose = pianogen.get_transcriber("basic_pitch")
    assert len(strict.transcribe(wav, 22050)) < len(loose.transcribe(wav, 22050))


def test_a_held_note_is_struck_once_across_the_window_seams():
    """basic-pitch's own decoding strikes a held C5 again at 1.64 s, where its first two 2 s windows meet (the
    frame posterior steps up between them); the default decoding does not."""
    wav = rendered([Note(0.1, 5.0, 72, 90)], 22050)
    held = [n for n in pianogen.get_transcriber("basic_pitch").transcribe(wav, 22050) if n.pitch == 72]
    assert len(held) == 1 and held[0].onset < 0.15 and held[0].offset > 3.0
    as_the_wheel = pianogen.get_transcriber("basic_pitch", onsets_at_seams=True).transcribe(wav, 22050)
    assert [round(n.onset, 2) for n in as_the_wheel if n.pitch == 72][1:] == [1.64]


def test_a_missing_onnx_file_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(PianogenError) as err:
        pianogen.get_transcriber("basic_pitch", model_path=str(tmp_path / "nmp.onnx"))
    message = str(err.value)
    assert "\n" not in message and "does not exist" in message
    assert "pip install --no-deps basic-pitch==0.4.0" in message


def test_a_broken_onnx_file_is_one_line_naming_the_fix(tmp_path):
    broken = tmp_path / "nmp.onnx"
    broken.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")  # what an LFS checkout leaves
    with pytest.raises(PianogenError) as err:
        pianogen.get_transcriber("basic_pitch", model_path=str(broken))
    assert "\n" not in str(err.value) and "pip install --no-deps basic-pitch==0.4.0" in str(err.value)


def test_bad_thresholds_and_unknown_keys_are_user_errors():
    with pytest.raises(PianogenError, match="onset_threshold"):
        pianogen.get_transcriber("basic_pitch", onset_threshold=1.5)
    with pytest.raises(PianogenError, match="unknown key 'frame_treshold'.*frame_threshold"):
        pianogen.get_transcriber("basic_pitch", frame_treshold=0.2)


def test_the_wheel_is_found_without_importing_it():
    import subprocess
    import sys

    code = ("import sys, pianogen; t = pianogen.get_transcriber('basic_pitch'); "
            "print(t.model_path.name, 'basic_pitch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["nmp.onnx", "False"]



WHEEL_CHECK = """
import logging, sys, types
import numpy as np
logging.disable(logging.WARNING)
# the wheel's modules import librosa, resampy and pretty_midi at the top; the functions compared use none of them
# but librosa.load, given the audio the port sees
audio = {}
librosa = types.SimpleNamespace(load=lambda path, sr, mono: (audio["x"], sr))
sys.modules.update({"librosa": librosa, "librosa.core": librosa, "resampy": types.ModuleType("resampy"),
                    "pretty_midi": types.SimpleNamespace(PrettyMIDI=object)})
import pianogen
from pianogen.interfaces import Note
from pianogen_data.fluidsynth import render_notes as render_fluidsynth
from pianogen_transcribe.note_decoding import output_to_notes_polyphonic
from basic_pitch import inference, note_creation
rng = np.random.default_rng(0)
notes = [Note(0.1 + 0.15 * i, 0.4 + 0.15 * i, int(rng.integers(40, 90)), 80) for i in range(30)]
audio["x"] = render_fluidsynth(notes, 22050).numpy()  # the model's rate: no resampling
ours = pianogen.get_transcriber("basic_pitch")
theirs = inference.run_inference("x.wav", inference.Model(ours.model_path))
post = ours.posteriors(audio["x"])
print(max(float(np.abs(theirs[k] - post[k]).max()) for k in ("note", "onset")))
a = note_creation.output_to_notes_polyphonic(theirs["note"], theirs["onset"], onset_thresh=0.5, frame_thresh=0.3,
    min_note_len=11, infer_onsets=True, max_freq=None, min_freq=None, melodia_trick=True)
b = output_to_notes_polyphonic(theirs["note"], theirs["onset"], 0.5, 0.3, 11)
print(len(a), [(int(s), int(e), int(p), round(float(m), 6)) for s, e, p, m in a] == [
    (s, e, p, round(m, 6)) for s, e, p, m in b])
"""


def test_the_port_decodes_what_the_wheels_own_code_decodes():
    """basic-pitch's own inference.run_inference and note_creation.output_to_notes_polyphonic (the wheel's
    code, run in a subprocess with its unused imports stubbed) against the port, on 5 s of rendered notes:
    the same posteriors and the same note events."""
    import subprocess
    import sys

    rendered([Note(0.0, 0.1, 60, 80)], 22050)  # skips like the others where fluidsynth is missing
    done = subprocess.run([sys.executable, "-c", WHEEL_CHECK], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    difference, events = done.stdout.split("\n")[:2]
    assert float(difference) < 1e-5
    count, same = events.split()
    assert int(count) > 20 and same == "True"
