"""Windows: count formula, overlap, end alignment, padding + mask, lazy slicing, seeded loaders."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from pianogen.data.tokenize import TokenCache
from pianogen.data.windows import WindowDataset, iter_windows, window_starts
from pianogen.errors import PianogenError

FRAMES = {"train": [100, 10, 37, 64], "validation": [40]}


@pytest.fixture
def cache(tmp_path):
    pieces = []
    for split, lengths in FRAMES.items():
        for i, n in enumerate(lengths):
            name = f"{split}{i}.npy"
            codes = (np.arange(3 * n).reshape(3, n) % 1000 + 1000 * i).astype(np.uint16)
            np.save(tmp_path / name, codes)
            pieces.append({"audio_filename": f"{split}{i}.wav", "split": split, "frames": n, "file": name})
    manifest = {"codec": {"name": "x", "config_hash": "0"}, "frame_rate": 50.0, "levels": 3, "pieces": pieces}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return TokenCache(tmp_path)


def expected_count(frames: int, window: int, overlap: float) -> int:
    if frames <= window:
        return 1
    stride = max(1, round(window * (1 - overlap)))
    n = (frames - window) // stride + 1
    return n + ((n - 1) * stride + window < frames)


@pytest.mark.parametrize("window,overlap", [(16, 0.5), (16, 0.0), (8, 0.75), (33, 0.5), (5, 0.99)])
def test_window_starts_formula_and_coverage(window, overlap):
    for frames in [1, 5, 16, 17, 37, 64, 100, 101]:
        starts = window_starts(frames, window, overlap)
        assert len(starts) == expected_count(frames, window, overlap)
        covered = np.zeros(frames, bool)
        for s in starts:
            covered[s:s + window] = True
        assert covered.all() and starts[0] == 0
        assert all(s + window <= frames for s in starts) or frames < window
    assert window_starts(100, 16, 0.5) == [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 84]
    assert window_starts(64, 16, 0.5)[-1] == 48 and window_starts(0, 16, 0.5) == []


def test_dataset_items_slice_the_cache(cache):
    ds = WindowDataset(cache, "train", levels=2, window=16, overlap=0.5)
    assert len(ds) == sum(expected_count(n, 16, 0.5) for n in FRAMES["train"]) == 12 + 1 + 4 + 7
    item = ds[1]  # piece 0, start 8
    assert item["codes"].dtype == torch.long and item["codes"].shape == (2, 16)
    expected = cache.codes(cache.pieces("train")[0])[:2, 8:24].astype(np.int64)
    assert torch.equal(item["codes"], torch.from_numpy(expected))
    assert item["mask"].all()
    short = ds[12]  # the 10-frame piece: one window, right-padded with 0, masked
    assert short["mask"].sum() == 10 and not short["mask"][10:].any()
    assert (short["codes"][:, 10:] == 0).all() and short["codes"][0, 9] == 1009
    assert len(pickle.dumps(ds)) < 20000  # index only; memory maps are not shipped to workers


def test_levels_and_split_checked(cache):
    with pytest.raises(PianogenError, match="levels=4"):
        WindowDataset(cache, "train", 4, 16, 0.5)
    with pytest.raises(PianogenError, match="'test'"):
        WindowDataset(cache, "test", 1, 16, 0.5)
    with pytest.raises(PianogenError, match="window_overlap"):
        WindowDataset(cache, "train", 1, 16, 1.0)


def test_iter_windows(cache):
    batches = list(iter_windows(cache, "train", levels=3, window=16, batch_size=4))
    n = sum(expected_count(f, 16, 0.0) for f in FRAMES["train"])
    assert sum(b["codes"].shape[0] for b in batches) == n
    assert all(b["codes"].shape[1:] == (3, 16) and b["mask"].shape[1] == 16 for b in batches)
    assert sum(int(b["mask"].sum()) for b in batches) >= sum(FRAMES["train"])
