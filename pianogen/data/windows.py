"""Token windows for training and evaluation, sliced lazily from the cache's memory maps.

Window rule, per piece of ``frames`` frames, ``stride = max(1, round(window * (1 - overlap)))``:
starts are 0, stride, 2*stride, ... while ``start + window <= frames``, plus one window aligned to
the end (start ``frames - window``) when the last one leaves a tail uncovered. A piece shorter
than ``window`` gives ONE window: its frames, right-padded with code 0, with ``mask`` False on
the padding. Every frame of every piece lies in at least one window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data.dataloader import default_collate

from pianogen.data.tokenize import TokenCache
from pianogen.errors import PianogenError


def window_starts(frames: int, window: int, overlap: float) -> list[int]:
    """Window start frames inside one piece (see the module docstring)."""
    if frames <= 0:
        return []
    if frames <= window:
        return [0]
    stride = max(1, round(window * (1 - overlap)))
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


def check_window(cache: TokenCache, window: int, split: str = "train") -> None:
    """Refuse a window longer than every piece of the split: it would be mostly padding, and the model's
    context (attention, positions) is allocated at window size before any data is seen."""
    longest = max((p["frames"] for p in cache.pieces(split)), default=0)
    if window > longest:
        raise PianogenError(f"data.window = {window} frames ({window / cache.frame_rate:.1f} s) is longer than the "
                            f"longest {split} piece ({longest} frames, {longest / cache.frame_rate:.1f} s): "
                            f"use data.window <= {longest}")


class WindowDataset(Dataset):
    """Items ``{"codes": LongTensor[levels, window], "mask": BoolTensor[window]}`` from one split.

    Holds only (piece, start) pairs; each item slices the piece's memory map.
    """

    def __init__(self, cache: TokenCache, split: str, levels: int, window: int, overlap: float = 0.0):
        if not 1 <= levels <= cache.levels:
            raise PianogenError(f"levels={levels} but the token cache holds {cache.levels} levels")
        if window < 1 or not 0 <= overlap < 1:
            raise PianogenError(f"need data.window >= 1 and 0 <= data.window_overlap < 1, got {window}, {overlap}")
        self.cache, self.levels, self.window = cache, levels, window
        self.pieces = cache.pieces(split)
        if not self.pieces:
            held = Counter(p["split"] for p in cache.pieces())
            raise PianogenError(f"the corpus has no '{split}' pieces (pieces by split: "
                                f"{', '.join(f'{s} {n}' for s, n in sorted(held.items())) or 'none'})")
        index = [(i, s) for i, p in enumerate(self.pieces) for s in window_starts(p["frames"], window, overlap)]
        self.index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
        self._maps: dict[int, np.ndarray] = {}

    def draw_weights(self, shares: dict[str, float]) -> torch.Tensor | None:
        """DoubleTensor[len(self)]: each window's chance of being drawn so that the groups of a mixed corpus
        get their shares (``DataSource.shares``, each spread evenly over the group's windows); None for {}."""
        if not shares:
            return None
        groups = [self.pieces[i].get("group", "") for i in self.index[:, 0]]
        counts = Counter(groups)
        present = sum(shares.get(g, 0.0) for g in counts)  # a split may lack a group: the others share its draws
        if present <= 0:
            raise PianogenError(f"no window of this split belongs to a group of the mix {sorted(shares)}")
        return torch.tensor([shares.get(g, 0.0) / present / counts[g] for g in groups], dtype=torch.float64)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}  # a pickled memmap would copy the data into each worker

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        piece, start = (int(v) for v in self.index[i])
        if piece not in self._maps:
            self._maps[piece] = self.cache.codes(self.pieces[piece])
        part = np.asarray(self._maps[piece][: self.levels, start:start + self.window], dtype=np.int64)
        codes = torch.zeros(self.levels, self.window, dtype=torch.long)
        codes[:, : part.shape[1]] = torch.from_numpy(part)
        mask = torch.arange(self.window) < part.shape[1]
        return {"codes": codes, "mask": mask}


def iter_windows(cache: TokenCache, split: str, levels: int, window: int,
                 batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """A split's windows with overlap 0 (only a piece's end-aligned last window overlaps), in cache
    order, batched, no workers: for fitting artefacts and evaluation."""
    dataset = WindowDataset(cache, split, levels, window, overlap=0.0)
    for i in range(0, len(dataset), batch_size):
        yield default_collate([dataset[j] for j in range(i, min(i + batch_size, len(dataset)))])
