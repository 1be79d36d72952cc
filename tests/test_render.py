"""``pianogen data render`` and the data source ``rendered`` on a fake Salamander set: MAESTRO's layout and
splits kept, bad MIDI skipped in one line, nothing rendered twice, a killed run resumed, same seed same bytes."""

from __future__ import annotations

import csv
import warnings

import mido
import pytest
import soundfile as sf
from click.testing import CliRunner
from pianogen_data import render as render_module
from pianogen_data.sampler import Sampler

import pianogen
from pianogen.commands.cli import cli, main
from pianogen.interfaces import Note, Performance
from pianogen.paths import home
from tests.test_sampler import write_fake_set

COLUMNS = ["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename", "duration"]


@pytest.fixture
def fake_set():
    # where salamander_samples() looks, so nothing is downloaded; short notes over the keyboard keep voices short
    pitches = {"A1": 33, "A3": 57, "C4": 60, "A5": 81, "A6": 93}
    return write_fake_set(home() / "real", layers=(1, 8, 16), pitches=pitches, seconds=1.0)


@pytest.fixture
def renders(monkeypatch):
    """Counts the pieces the sampler renders."""
    done = []
    real = Sampler.render

    def counted(self, performance):
        done.append(len(performance.notes))
        return real(self, performance)

    monkeypatch.setattr(Sampler, "render", counted)
    return done


def midi_folder(root, with_csv=True):
    """Three short pieces in MAESTRO's layout (2004 and 2006) and one broken file the CSV lists too."""
    rows = []
    for i, (year, split) in enumerate([(2004, "validation"), (2006, "test"), (2006, "train")]):
        name = f"{year}/piece_{i}.midi"
        notes = [Note(0.2 * k, 0.2 * k + 0.3, 57 + 3 * k + i, 60 + 10 * k) for k in range(4)]
        (root / str(year)).mkdir(parents=True, exist_ok=True)
        pianogen.write_midi(Performance(notes, [(0.0, 127), (0.9, 0)]), root / name)
        rows.append(["Someone", f"Piece {i}", split, year, name, name.replace(".midi", ".wav"), "1.0"])
    (root / "2006" / "broken.midi").write_bytes(b"MThd garbage")
    rows.append(["Nobody", "Broken", "train", 2006, "2006/broken.midi", "2006/broken.wav", "1.0"])
    if with_csv:
        with open(root / "maestro-v3.0.0.csv", "w", newline="") as f:
            csv.writer(f).writerows([COLUMNS] + rows)
    return root


def test_render_midi_keeps_maestro_splits_skips_bad_files_and_never_renders_twice(tmp_path, fake_set, renders):
    source = midi_folder(tmp_path / "in")
    with pytest.warns(UserWarning, match="skipping 2006/broken: .*broken.midi") as caught:
        out = render_module.render_corpus(tmp_path / "out", midi=source, progress=False)
    assert len([w for w in caught if "broken" in str(w.message)]) == 1
    assert "\n" not in str(caught[0].message)
    rows = list(csv.DictReader(open(out / "maestro-v3.0.0.csv")))
    assert [(r["audio_filename"], r["split"], r["year"], r["canonical_title"]) for r in rows] == [
        ("2004/piece_0.wav", "validation", "2004", "Piece 0"), ("2006/piece_1.wav", "test", "2006", "Piece 1"),
        ("2006/piece_2.wav", "train", "2006", "Piece 2")]
    for r in rows:
        info = sf.info(str(out / r["audio_filename"]))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_16")
        assert info.duration == pytest.approx(float(r["duration"]), abs=1e-4)
        played, written = (pianogen.read_midi(root / r["midi_filename"]) for root in (out, source))
        assert played.notes == written.notes
    assert len(renders) == 3
    pieces = pianogen.get_data_source("maestro", root=str(out)).pieces()
    assert {p.split for p in pieces} == {"train", "validation", "test"}

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with warnings.catch_warnings(record=True):
        result = CliRunner().invoke(cli, ["data", "render", str(out), "--midi", str(source)])
    assert result.exit_code == 0, result.output
    assert len(renders) == 3 and {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing new


def test_a_folder_without_csv_is_split_by_name_and_a_killed_run_resumes(tmp_path, fake_set, renders, monkeypatch):
    source = midi_folder(tmp_path / "in", with_csv=False)
    real = Sampler.render
    calls = []

    def die_on_the_second(self, performance):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, performance)

    monkeypatch.setattr(Sampler, "render", die_on_the_second)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings(record=True):
        render_module.render_corpus(tmp_path / "out", midi=source, progress=False)
    assert not (tmp_path / "out").exists()
    (left,) = tmp_path.glob(".out.tmp*")
    left.rename(tmp_path / ".out.tmp999999999")  # its process is gone
    monkeypatch.setattr(Sampler, "render", lambda self, p: calls.append(1) or real(self, p))
    with warnings.catch_warnings(record=True):
        out = render_module.render_corpus(tmp_path / "out", midi=source, progress=False)
    assert len(calls) == 2 + 2  # the piece finished before the kill was not rendered again
    rows = list(csv.DictReader(open(out / "maestro-v3.0.0.csv")))
    assert sorted(r["audio_filename"] for r in rows) == ["2018/2004_piece_0.wav", "2018/2006_piece_1.wav",
                                                          "2018/2006_piece_2.wav"]
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    assert not list(tmp_path.glob(".out.tmp*"))


def test_split_by_name_is_stable_and_fills_every_split():
    names = [f"piece_{i}" for i in range(50)]
    splits = render_module.split_by_name(names)
    assert splits == render_module.split_by_name(list(reversed(names)))
    counts = {s: list(splits.values()).count(s) for s in ("train", "validation", "test")}
    assert counts["train"] >= 30 and counts["validation"] >= 1 and counts["test"] >= 1
    assert set(render_module.split_by_name(["a", "b", "c"]).values()) == {"train", "validation", "test"}


def test_composed_corpus_same_seed_same_bytes_and_the_rendered_source(tmp_path, fake_set, renders):
    a = render_module.render_corpus(tmp_path / "a", minutes=0.5, seed=3, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 7  # three pieces (WAV + MIDI) and the CSV
    rows = list(csv.DictReader(open(a / "maestro-v3.0.0.csv")))
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    assert sum(float(r["duration"]) for r in rows) == pytest.approx(30, rel=0.3)
    assert len(pianogen.read_midi(a / rows[0]["midi_filename"]).notes) > 10
    assert len(renders) == 3
    pieces = pianogen.get_data_source("rendered", minutes=0.5, seed=3).pieces()  # rendered under $PIANOGEN_HOME
    b = home() / "rendered" / "m0.5-s3"
    assert len(pieces) == 3 and all(p.path.is_relative_to(b) for p in pieces) and len(renders) == 6
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)  # same seed, same bytes
    pianogen.get_data_source("rendered", minutes=0.5, seed=3).pieces()
    assert len(renders) == 6  # rendered once


def test_the_command_wants_one_input(tmp_path, capsys):
    result = CliRunner().invoke(cli, ["data", "render", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--midi DIR or --minutes M" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as stopped:
        main(["data", "render", str(tmp_path / "x"), "--midi", str(empty)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("error: ") and "no .mid/.midi files" in err
    assert len(err.strip().splitlines()) == 1


def test_humanize_moves_notes_a_little_and_deterministically():
    performance = Performance([Note(0.5 * i, 0.5 * i + 0.4, 60 + i, 80) for i in range(20)])
    a, b = render_module.humanize(performance, 1), render_module.humanize(performance, 1)
    assert a.notes == b.notes != performance.notes
    shifts = [x.onset - y.onset for x, y in zip(a.notes, performance.notes)]
    assert max(abs(s) for s in shifts) <= 0.025 and len(set(shifts)) > 10
    assert all(abs(x.velocity - 80) <= 20 for x in a.notes)
    assert mido  # the MIDI layer the fixtures write through


def test_another_piano_through_fluidsynth_plays_the_same_notes(tmp_path):
    """--soundfont: the composed corpus played by Debian's FluidSynth (the other piano evaluation uses): the MIDI
    beside each WAV is what it plays, so transcribing the WAV finds the MIDI's pitches."""
    import os
    import shutil

    from pianogen_data.fluidsynth import DEFAULT_SOUNDFONT

    if shutil.which("fluidsynth") is None or not DEFAULT_SOUNDFONT.is_file():
        if os.environ.get("CI"):
            pytest.fail("fluidsynth and timgm6mb-soundfont must be installed in CI (make system)")
        pytest.skip("needs Debian's fluidsynth and timgm6mb-soundfont")
    out = tmp_path / "other"
    result = CliRunner().invoke(cli, ["data", "render", str(out), "--minutes", "0.5", "--seed", "1",
                                      "--soundfont", str(DEFAULT_SOUNDFONT)])
    assert result.exit_code == 0, result.output
    with open(out / pianogen.MAESTRO_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    row = max(rows, key=lambda r: float(r["duration"]))
    audio, rate = sf.read(out / row["audio_filename"], dtype="float32", always_2d=True)
    assert rate == 44100 and audio.shape[1] == 2 and 0.05 < abs(audio).max() < 1.0
    played = pianogen.read_midi(out / row["midi_filename"])
    assert abs(audio.shape[0] / rate - played.duration) < 5.0
    heard = {n.pitch for n in pianogen.get_transcriber("basic_pitch").transcribe(
        __import__("torch").from_numpy(audio[: 10 * rate].mean(1)), rate)}
    written = {n.pitch for n in played.notes if n.onset < 9.5}
    assert len(heard & written) >= 0.5 * len(written)


def test_a_missing_soundfont_is_one_line_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["data", "render", str(tmp_path / "o"), "--minutes", "0.2", "--soundfont", str(tmp_path / "none.sf2")])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "none.sf2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / pianogen.MAESTRO_CSV).exists()
