"""The loop's pieces both trainers share (the lifecycle itself is ``trainer_base.Trainer``).

Where the loop stands is one ``TrainState``, which is what a checkpoint records of the loop, so nothing is
read back from loop variables; the random state of every generator; this process's place under torchrun; the
learning-rate shape both trainers draw from.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pianogen.training.distributed import Distributed, init_distributed


@dataclass
class TrainState:
    """Where a training stands: what a checkpoint saves of the loop (``to_dict`` / ``from_dict``)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs done (token training; the codec trainer counts steps only)
    micro_done: int = 0  # micro-batches of the current epoch already done
    best_val: float = math.inf  # the best validation loss so far
    best_epoch: int = 0  # epochs done when best_val was reached (early stopping counts from it)
    # The open logging window: per-metric sums over its steps so far. Saved too, so that the first
    # average logged after a resume covers the same steps as in an uninterrupted run.
    window_sums: dict[str, float] = field(default_factory=dict)
    window_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "micro_done": self.micro_done, "best_val": self.best_val,
                "best_epoch": self.best_epoch,
                "log_window": {"sums": dict(self.window_sums), "steps": self.window_steps}}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainState:
        """The state ``to_dict`` wrote; what a file of an older version lacks starts empty."""
        window = saved.get("log_window", {"sums": {}, "steps": 0})
        return cls(int(saved["step"]), int(saved.get("epoch", 0)), int(saved.get("micro_done", 0)),
                   float(saved.get("best_val", math.inf)), int(saved.get("best_epoch", saved.get("epoch", 0))),
                   dict(window["sums"]), int(window["steps"]))

    def accumulate(self, metrics: dict[str, float], divisor: int = 1) -> None:
        """Add one micro-batch's metrics (divided by the micro-batches of a step) to the open window."""
        for key, value in metrics.items():
            self.window_sums[key] = self.window_sums.get(key, 0.0) + value / divisor

    def close_window(self) -> dict[str, float]:
        """The window's per-step means; the next window starts empty."""
        means = {key: value / self.window_steps for key, value in self.window_sums.items()}
        self.window_sums, self.window_steps = {}, 0
        return means


def capture_rng(python: dict[str, random.Random] | None = None) -> dict[str, Any]:
    """Every random generator training draws from (torch, CUDA, NumPy, the trainer's own Python ones),
    as tensors and plain values only, so ``torch.load(weights_only=True)`` reads it back."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss],
             "python": {name: rng.getstate() for name, rng in (python or {}).items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any], python: dict[str, random.Random] | None = None) -> None:
    """Put back what ``capture_rng`` saved (what a state lacks is left as it is)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    if "numpy" in state:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    for name, rng in (python or {}).items():
        rng.setstate(state["python"][name])


def join_processes(device: torch.device) -> tuple[torch.device, Distributed]:
    """This process's place under torchrun: its device (its own GPU on a multi-GPU run) and the group."""
    ddp = init_distributed(device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    return device, ddp


def lr_factor(schedule: str, warmup: float, total_steps: int) -> Callable[[int], float]:
    """step -> multiple of the peak lr: "cosine" warms up linearly over the first ``warmup`` fraction of
    the steps, then falls to 0 along a half cosine; "constant" is 1 throughout."""
    if schedule != "cosine":
        return lambda step: 1.0
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm))))
    return factor
