"""Training segments for codec training: fixed-length excerpts cut from bounded in-memory pools of audio.

A corpus larger than the pool rotates through it; a mixed corpus (``DataSource.shares``) has one pool per
part, each drawn at its share. The pools and their rotation periods are saved with the trainer state, so a
resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from pianogen.data.audio import load_audio
from pianogen.errors import PianogenError

POOL_SECONDS = 1200.0  # audio kept in memory to cut segments from; bigger corpora rotate through it
# A pool that cannot hold its whole group swaps in about ROTATE_SECONDS of new audio a step (one 12 s note every
# two steps: a 63 ms load, ~4 % of a codec_small step), but never fewer than one piece every ROTATE_EVERY steps
# (a 10-minute MAESTRO piece every 50). One piece every 50 steps whatever its length left 1700 steps of
# codec_piano holding 83 of its 270 notes (seed 0, replayed; 261 now: benchmarks/RESULTS.md).
ROTATE_SECONDS = 6.0
ROTATE_EVERY = 50


class _Pool:
    """A bounded pool of loaded pieces of one group, filled in a shuffled order up to ``samples`` of audio."""

    def __init__(self, paths: list[Path], load, length: int, rng: random.Random, samples: float,
                 pooled: list[str] | None, sample_rate: int, period: int | None = None) -> None:
        """``pooled``/``period``: a saved run's pool and rotation period, restored as they were."""
        self.paths, self.load, self.length = paths, load, length
        self.pool: list[torch.Tensor] = []
        self.pool_paths: list[str] = []
        if pooled is not None:
            for path in pooled:
                self.pool.append(load(path))
                self.pool_paths.append(path)
        else:
            order = paths[:]
            rng.shuffle(order)
            filled = 0.0
            for path in order:
                if self.pool and filled >= samples:
                    break
                wav = load(path)
                if wav.numel() >= length:
                    self.pool.append(wav)
                    self.pool_paths.append(str(path))
                    filled += wav.numel()
        self.rotates = len(self.pool) < len(paths)
        if period is None:  # from the first pool's mean piece; a resumed pool keeps the period it was given
            piece_seconds = sum(w.numel() for w in self.pool) / len(self.pool) / sample_rate if self.pool else 0.0
            period = max(1, min(ROTATE_EVERY, round(piece_seconds / ROTATE_SECONDS)))
        self.period = period

    def rotate(self, step: int, rng: random.Random) -> None:
        if self.rotates and step % self.period == 0:
            path = rng.choice(self.paths)
            wav = self.load(path)
            if wav.numel() >= self.length:
                slot = rng.randrange(len(self.pool))
                self.pool[slot], self.pool_paths[slot] = wav, str(path)


class SegmentSampler:
    """Random fixed-length segments FloatTensor[B, 1, L] from bounded pools of loaded pieces.

    ``groups`` maps a group of a mixed corpus (``DataSource.shares``) to its training files; each group has
    its own pool, POOL_SECONDS split by ``shares``, and every segment first picks its group by share, then
    a pooled piece, then a start. One group draws exactly as a sampler without groups did."""

    def __init__(self, groups: dict[str, list[Path]], shares: dict[str, float], sample_rate: int, length: int,
                 generator: random.Random, pooled: dict[str, list[str]] | None = None,
                 periods: dict[str, int] | None = None):
        """``pooled`` / ``periods``: the pools and rotation periods of a saved run (``pool_paths``,
        ``rotation_periods``), restored as they were (a group it lacks is drawn anew; a pool saved without
        its period rotates every ROTATE_EVERY steps, as every pool did before periods were saved)."""
        def load(path: Path | str) -> torch.Tensor:  # [S]
            return load_audio(path, sample_rate)[0]

        self.length, self.rng = length, generator
        self.groups = list(groups)
        self.weights = [shares.get(g, 1.0) for g in self.groups]
        self.pools = []
        for g, w in zip(self.groups, self.weights):
            saved = None if pooled is None else pooled.get(g)
            period = None if saved is None else (periods or {}).get(g, ROTATE_EVERY)
            samples = POOL_SECONDS * sample_rate * w / sum(self.weights)
            self.pools.append(_Pool(groups[g], load, length, generator, samples, saved, sample_rate, period))
        empty = [g or "the corpus" for g, pool in zip(self.groups, self.pools) if not pool.pool]
        if empty:
            raise PianogenError(f"no training audio at least {length / sample_rate:.2f} s long in {empty[0]}")

    @property
    def pool_paths(self) -> dict[str, list[str]]:
        return {g: pool.pool_paths for g, pool in zip(self.groups, self.pools)}

    @property
    def rotation_periods(self) -> dict[str, int]:
        return {g: pool.period for g, pool in zip(self.groups, self.pools)}

    def rotate(self, step: int) -> None:
        """After ``step``: in each group whose period divides it, replace one pooled piece by a random piece,
        so a large corpus is all seen over time."""
        for pool in self.pools:
            pool.rotate(step, self.rng)

    def batch(self, batch_size: int, rng: random.Random | None = None) -> torch.Tensor:
        rng = rng or self.rng
        rows = []
        for _ in range(batch_size):
            pool = self.pools[0] if len(self.pools) == 1 else rng.choices(self.pools, self.weights)[0]
            wav = rng.choice(pool.pool)
            start = rng.randrange(wav.numel() - self.length + 1)
            rows.append(wav[start : start + self.length])
        return torch.stack(rows).unsqueeze(1)
