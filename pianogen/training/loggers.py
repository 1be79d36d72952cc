"""Where a training's metrics go: loggers, chosen in the recipe (``[train] loggers = ["jsonl", "tensorboard"]``,
``[codec_train] loggers = ...``) and registered through the ``register_loggers`` hook like every other plugin.

Built-ins (this module is a plugin of the host's own, as simonw/llm's default plugins are):

- ``jsonl``: every record as a JSON line (``metrics.jsonl``) and, at each checkpoint, its loss curve as a PNG;
- ``tensorboard``: the same scalars as TensorBoard events (``torch.utils.tensorboard``; ``pip install
  'pianogen[tensorboard]'``), under ``tensorboard/``.

A logger is built with ``factory(place=LogPlace)`` and must survive a resume: ``start(resumed_at)`` forgets
what it logged after the checkpoint's step (those steps run again), so a resumed run logs what an unbroken one
would. Records are dicts with ``step`` (int) and ``split`` ("train", "validation") and numbers, or lists of
numbers (one per codec level).
"""

from __future__ import annotations

import abc
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from pianogen.errors import PianogenError
from pianogen.paths import atomic_write_bytes

hookimpl = pluggy.HookimplMarker("pianogen")  # pianogen.hookimpl, without importing the facade (a leaf)


@dataclass(frozen=True)
class LogPlace:
    """Where a training's logs go: ``folder`` / ``prefix`` + name (a run: ``runs/x/metrics.jsonl``; a codec:
    ``codecs/tiny.metrics.jsonl`` beside ``codecs/tiny.safetensors``)."""

    folder: Path
    prefix: str = ""

    def path(self, name: str) -> Path:
        return self.folder / f"{self.prefix}{name}"


class Logger(abc.ABC):
    """One destination of a training's metrics (rank 0 only)."""

    @abc.abstractmethod
    def start(self, resumed_at: int | None) -> None:
        """A fresh run (``None``) starts empty; a resumed one forgets what was logged after ``resumed_at``."""

    @abc.abstractmethod
    def log(self, record: dict[str, Any]) -> None:
        """One record: ``step``, ``split`` and metrics."""

    def checkpoint(self) -> None:  # noqa: B027 (an optional hook: doing nothing is right)
        """The training just saved a checkpoint: make what was logged durable (flush, draw a figure)."""

    def close(self) -> None:  # noqa: B027 (an optional hook: doing nothing is right)
        """The training ended (or failed)."""


class JsonlLogger(Logger):
    """metrics.jsonl, cut back on resume, and its loss curve (loss.png) at every checkpoint."""

    def __init__(self, place: LogPlace) -> None:
        self.path, self.figure = place.path("metrics.jsonl"), place.path("loss.png")

    def start(self, resumed_at: int | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resumed_at is None:
            self.path.unlink(missing_ok=True)
        else:
            atomic_write_bytes(self.path, metrics_up_to(self.path, resumed_at))

    def log(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def checkpoint(self) -> None:
        if self.path.is_file() and self.path.stat().st_size:
            from pianogen.evaluation.plots import plot_losses  # matplotlib only once there is a curve to draw

            plot_losses(self.path, self.figure)


class TensorBoardLogger(Logger):
    """TensorBoard event files under ``tensorboard/``: each number as the scalar ``<split>/<name>``, a list as
    ``<split>/<name>/<index>``. A resume purges the events after the checkpoint's step (SummaryWriter's
    ``purge_step``), so the curves show one trajectory."""

    def __init__(self, place: LogPlace) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PianogenError("logger 'tensorboard' needs the tensorboard package: pip install "
                                "'pianogen[tensorboard]' (or choose loggers = [\"jsonl\"])") from None
        self.folder, self.writer_class, self.writer = place.path("tensorboard"), SummaryWriter, None

    def start(self, resumed_at: int | None) -> None:
        if resumed_at is None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.writer = self.writer_class(str(self.folder), purge_step=None if resumed_at is None else resumed_at + 1)

    def log(self, record: dict[str, Any]) -> None:
        split, step = record.get("split", "train"), record["step"]
        for name, value in record.items():
            if name in ("step", "split", "epoch"):
                continue
            values = value if isinstance(value, list) else [value]
            for i, v in enumerate(values):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    tag = f"{split}/{name}" if not isinstance(value, list) else f"{split}/{name}/{i}"
                    self.writer.add_scalar(tag, v, step)

    def checkpoint(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Loggers(Logger):
    """The recipe's loggers as one (none on DDP ranks other than 0)."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def start(self, resumed_at: int | None) -> None:
        for logger in self.loggers:
            logger.start(resumed_at)

    def log(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(record)

    def checkpoint(self) -> None:
        for logger in self.loggers:
            logger.checkpoint()

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def build_loggers(names: list[str], place: LogPlace, enabled: bool = True) -> Loggers:
    """The named loggers (registered under kind ``logger``), built now, so a missing package stops the training
    before it writes anything."""
    from pianogen import registry

    return Loggers([registry.create("logger", name, place=place) for name in dict.fromkeys(names)] if enabled else [])


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


@hookimpl
def register_loggers(register: Any) -> None:
    register("jsonl", JsonlLogger)
    register("tensorboard", TensorBoardLogger)
