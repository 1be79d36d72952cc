"""The skeleton both trainers share: token training (train.py) and codec training (codec_train.py).

A trainer is a ``Trainer``: ``fit`` runs ``run_epoch`` then ``end_epoch`` until ``finished``, the
shape of audiocraft's solvers (run_epoch / commit) and torchtune's recipes (setup / train /
save_checkpoint). Where the loop stands is one ``TrainState``, which is what a checkpoint records
of the loop, so nothing is read back from loop variables. The pieces every run needs are here
once: the metrics log (metrics.jsonl, cut back on resume, its loss curve), the random state of
every generator, the processes under torchrun, and the trainer state file written atomically.
"""

from __future__ import annotations

import abc
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianogen.distributed import Distributed, init_distributed
from pianogen.paths import atomic_path, atomic_write_bytes
from pianogen.progress import StepBar


@dataclass
class TrainState:
    """Where a training stands: what a checkpoint saves of the loop (``to_dict`` / ``from_dict``)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs done (token training; the codec trainer counts steps only)
    micro_done: int = 0  # micro-batches of the current epoch already done
    best_val: float = math.inf  # the best validation loss so far
    # The open logging window: per-metric sums over its steps so far. Saved too, so that the first
    # average logged after a resume covers the same steps as in an uninterrupted run.
    window_sums: dict[str, float] = field(default_factory=dict)
    window_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "micro_done": self.micro_done, "best_val": self.best_val,
                "log_window": {"sums": dict(self.window_sums), "steps": self.window_steps}}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainState:
        """The state ``to_dict`` wrote; what a file of an older version lacks starts empty."""
        window = saved.get("log_window", {"sums": {}, "steps": 0})
        return cls(int(saved["step"]), int(saved.get("epoch", 0)), int(saved.get("micro_done", 0)),
                   float(saved.get("best_val", math.inf)), dict(window["sums"]), int(window["steps"]))

    def accumulate(self, metrics: dict[str, float], divisor: int = 1) -> None:
        """Add one micro-batch's metrics (divided by the micro-batches of a step) to the open window."""
        for key, value in metrics.items():
            self.window_sums[key] = self.window_sums.get(key, 0.0) + value / divisor

    def close_window(self) -> dict[str, float]:
        """The window's per-step means; the next window starts empty."""
        means = {key: value / self.window_steps for key, value in self.window_sums.items()}
        self.window_sums, self.window_steps = {}, 0
        return means


class MetricsLog:
    """A run's metrics as JSON lines, with their loss curve as a PNG beside them; silent when not ``enabled``
    (DDP ranks other than 0)."""

    def __init__(self, path: Path, figure: Path, enabled: bool = True) -> None:
        self.path, self.figure, self.enabled = path, figure, enabled

    def start(self, resumed_at: int | None) -> None:
        """A fresh run starts an empty log; a resumed one forgets what was logged after its checkpoint's
        step (and a line cut by a kill): those steps run again."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resumed_at is None:
            self.path.unlink(missing_ok=True)
        else:
            atomic_write_bytes(self.path, metrics_up_to(self.path, resumed_at))

    def append(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def plot(self) -> None:
        if self.enabled and self.path.is_file() and self.path.stat().st_size:
            from pianogen.plots import plot_losses  # matplotlib only once there is a curve to draw

            plot_losses(self.path, self.figure)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; a line that does not parse (a kill mid-append) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def metrics_up_to(path: Path, step: int) -> bytes:
    """metrics.jsonl as it stood at ``step`` (what a resumed run continues from), partial lines dropped."""
    return "".join(json.dumps(r) + "\n" for r in read_metrics(path) if r["step"] <= step).encode()


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


def save_trainer_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save through a temp file: a kill mid-save keeps the previous state file whole."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def join_processes(device: torch.device) -> tuple[torch.device, Distributed]:
    """This process's place under torchrun: its device (its own GPU on a multi-GPU run) and the group."""
    ddp = init_distributed(device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    return device, ddp


class Trainer(abc.ABC):
    """One training: ``fit`` alternates ``run_epoch`` and ``end_epoch`` until ``finished``.

    An "epoch" is the stretch between two ends: a pass over the data for token training (validation,
    checkpoints, plot at its end), the steps up to the next checkpoint for codec training."""

    state: TrainState
    bar: StepBar

    @abc.abstractmethod
    def finished(self) -> bool:
        """True when the recipe's length is reached."""

    @abc.abstractmethod
    def run_epoch(self) -> None:
        """Train up to the next end: steps, logging windows, progress."""

    @abc.abstractmethod
    def end_epoch(self) -> None:
        """Validate, checkpoint and plot, as the trainer does at an end."""

    def fit(self) -> None:
        with self.bar:
            while not self.finished():
                self.run_epoch()
                self.end_epoch()


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
