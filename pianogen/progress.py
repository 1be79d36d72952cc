"""The one rich progress bar every long task shows: training, tokenizing, synthesis, sampling, downloads.

``progress_bar`` builds the bar (label, bar, count, optional live info, time); ``StepBar`` is the
trainers' view of it: one task counting optimizer steps, with a line of live metrics and a log
that stays silent off rank 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.progress import Progress


def progress_bar(enabled: bool = True, *, units: Literal["count", "bytes", "none"] = "count", info: bool = False,
                 elapsed: bool = False, transient: bool = False) -> Progress:
    """A bar of ``description | bar | done/total (or bytes and speed) | info | time``.

    ``info`` adds the task field ``info`` (live text such as the loss); ``elapsed`` shows the time
    spent instead of the time remaining (for work whose total is not known in advance)."""
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
    return Progress(*columns, disable=not enabled, transient=transient)


class StepBar:
    """A trainer's bar: ``label``, steps done of ``total``, live metrics; silent when not ``enabled``."""

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
            self.progress.console.log(text)
