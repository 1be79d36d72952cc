"""The one rich progress bar every long task shows: training, tokenizing, synthesis, sampling, downloads.

``progress_bar`` builds the bar (label, bar, count, optional live info, time); ``StepBar`` is the
trainers' view of it: one task counting optimizer steps, with a line of live metrics and a log
that stays silent off rank 0.

Bars live on stderr, never stdout: a command's stdout (JSON, markdown, paths) is its output alone. And a
bar is drawn only when stderr is a terminal: off one (a pipe, a CI log, ``nohup``) rich would print the
bar's last frame when it stops — noise in logs, and a second line after an error that must be one line.
Rich's own switches decide what counts as a terminal (``TTY_COMPATIBLE=1``, ``FORCE_COLOR``).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or already closed
        return False


def progress_bar(enabled: bool = True, *, units: Literal["count", "bytes", "none"] = "count", info: bool = False,
                 elapsed: bool = False, transient: bool = False) -> Progress:
    """A bar of ``description | bar | done/total (or bytes and speed) | info | time`` on stderr, drawn when
    ``enabled`` and stderr is a terminal (otherwise it shows nothing at all; ``bar.console`` still prints).

    ``info`` adds the task field ``info`` (live text such as the loss); ``elapsed`` shows the time
    spent instead of the time remaining (for work whose total is not known in advance)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn()]
    if units == "count":
        columns.append(MofNCompleteColumn())
    elif units == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    columns.append(TimeElapsedColumn() if elapsed else TimeRemainingColumn())
    console = Console(stderr=True)
    # a live bar reroutes print() through its console so lines land above it; that is right only when stdout is
    # a terminal too (the same screen) — stdout sent to a pipe or file must keep every line it is given
    return Progress(*columns, console=console, disable=not (enabled and console.is_terminal), transient=transient,
                    redirect_stdout=_stdout_is_terminal())


def log_line(console: Console, text: str) -> None:
    """``text`` on ``console``: rich's log (time, text, source) above a live bar on a terminal; elsewhere one
    plain ``[HH:MM:SS] text`` line, unwrapped, so a log file under nohup holds one greppable line per call."""
    if console.is_terminal:
        console.log(text)
    else:
        console.print(f"[{datetime.now():%H:%M:%S}] {text}", markup=False, highlight=False, soft_wrap=True)


class StepBar:
    """A trainer's bar: ``label``, steps done of ``total``, live metrics; silent when not ``enabled``
    (its log lines too); off a terminal the bar is hidden but the log lines still reach stderr."""

    def __init__(self, label: str, total: int, done: int, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = progress_bar(enabled, info=True)
        self.task = self.progress.add_task(label, total=total, completed=done, info="")

    def __enter__(self) -> StepBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, step: int, info: str | None = None) -> None:
        fields = {} if info is None else {"info": info}
        self.progress.update(self.task, completed=step, **fields)

    def log(self, text: str) -> None:
        if self.enabled:
            log_line(self.progress.console, text)
