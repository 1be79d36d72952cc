"""Data sources: MAESTRO CSV filtering and splits, missing files, folder hashing, synthetic default path."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from pianogen_data import FolderSource
from pianogen_data.synth import CSV_COLUMNS, CSV_NAME

import pianogen
from pianogen.data.audio import save_audio
from pianogen.data.sources import open_source
from pianogen.errors import PianogenError
from pianogen.recipe import DataConfig
from pianogen.registry import registered

ROWS = [  # (year, split, audio file, exists)
    (2017, "train", "2017/a.wav", True),
    (2018, "train", "2018/b.wav", True),
    (2018, "validation", "2018/c.flac", True),
    (2018, "test", "2018/d.wav", True),
    (2018, "train", "2018/gone.wav", False),
]


def make_maestro(root, rows=ROWS):
    with open(root / CSV_NAME, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for year, split, audio, exists in rows:
            w.writerow(["Composer", f"Title {audio}", split, year, audio.rsplit(".", 1)[0] + ".midi", audio, "0.1"])
            if exists:
                (root / audio).parent.mkdir(parents=True, exist_ok=True)
                save_audio(root / audio, np.zeros(1600, np.float32), 16000)
    return root


def test_builtins_are_registered_through_the_entry_point():
    sources = registered("data_source")
    assert {"maestro", "folder", "synthetic", "rendered", "salamander", "mix"} <= set(sources)
    assert sources["maestro"].package == "pianogen"


def test_maestro_years_and_splits(tmp_path):
    root = make_maestro(tmp_path, [r for r in ROWS if r[3]])
    every = pianogen.get_data_source("maestro", root=str(root), years=[])
    assert [p.audio_filename for p in every.pieces()] == ["2017/a.wav", "2018/b.wav", "2018/c.flac", "2018/d.wav"]
    only = pianogen.get_data_source("maestro", root=str(root), years=[2018]).pieces()
    assert {p.audio_filename: p.split for p in only} == {
        "2018/b.wav": "train", "2018/c.flac": "validation", "2018/d.wav": "test"}
    assert only[0].path == root / "2018/b.wav" and only[0].duration == pytest.approx(0.1)
    with pytest.raises(PianogenError, match="no audio .* years \\[2016\\]"):
        pianogen.get_data_source("maestro", root=str(root), years=[2016]).pieces()


def test_maestro_missing_files_one_error_or_skip(tmp_path):
    root = make_maestro(tmp_path)
    with pytest.raises(PianogenError, match=r"1 of 5 audio files .* missing \(first: 2018/gone.wav\)"):
        pianogen.get_data_source("maestro", root=str(root)).pieces()
    with pytest.warns(UserWarning, match="2018/gone.wav"):
        kept = pianogen.get_data_source("maestro", root=str(root), skip_missing=True).pieces()
    assert len(kept) == 4


def test_maestro_bad_root_and_csv(tmp_path):
    with pytest.raises(PianogenError, match="no maestro-v3.0.0.csv"):
        pianogen.get_data_source("maestro", root=str(tmp_path)).pieces()
    (tmp_path / CSV_NAME).write_text("split,year\ntrain,2018\n")
    with pytest.raises(PianogenError, match="lacks column"):
        pianogen.get_data_source("maestro", root=str(tmp_path)).pieces()
    with pytest.raises(PianogenError, match="unknown key 'minutes'"):
        pianogen.get_data_source("maestro", root=str(tmp_path), minutes=3)


def test_folder_stable_hash_split(tmp_path):
    for i in range(40):
        save_audio(tmp_path / "a" / f"s{i}.wav", np.zeros(160, np.float32), 16000)
    (tmp_path / "a" / "notes.txt").write_text("not audio")
    save_audio(tmp_path / "b" / "deep" / "x.WAV", np.zeros(160, np.float32), 16000)
    pieces = pianogen.get_data_source("folder", root=str(tmp_path)).pieces()
    assert len(pieces) == 41 and pieces[-1].audio_filename == "b/deep/x.WAV"
    splits = [p.split for p in pieces]
    assert splits == [p.split for p in FolderSource(tmp_path, [0.8, 0.1, 0.1]).pieces()]  # stable
    assert splits.count("train") > splits.count("validation") and set(splits) <= {"train", "validation", "test"}
    assert FolderSource(tmp_path, [8, 1, 1]).split_of("a/s3.wav") == FolderSource(tmp_path, [0.8, 0.1, 0.1]).split_of(
        "a/s3.wav")  # ratios are normalised; the split depends only on the relative path
    assert {p.split for p in FolderSource(tmp_path, [0, 0, 1]).pieces()} == {"test"}
    with pytest.raises(PianogenError, match="split_ratios"):
        FolderSource(tmp_path, [0.5, 0.5])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PianogenError, match="no wav/flac/ogg/mp3"):
        FolderSource(tmp_path / "empty", [1, 0, 0]).pieces()


def test_synthetic_default_path_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PIANOGEN_HOME", str(tmp_path))
    data = DataConfig(source="synthetic", options={"minutes": 0.2, "seed": 1})
    pieces = open_source(data).pieces()
    assert (tmp_path / "synthetic" / "m0.2-s1" / CSV_NAME).is_file()
    assert {p.split for p in pieces} == {"train", "validation", "test"}
    assert all(p.path.is_file() and p.duration > 0 for p in pieces)
    mtime = (tmp_path / "synthetic" / "m0.2-s1" / CSV_NAME).stat().st_mtime_ns
    open_source(data).pieces()  # reused, not written again
    assert (tmp_path / "synthetic" / "m0.2-s1" / CSV_NAME).stat().st_mtime_ns == mtime
