"""One training per run directory: a lock file that names its owner.

``<run dir>/.lock`` is held with ``flock`` for the whole training. The kernel drops the lock when
its holder dies, even by ``kill -9``, so a lock file left by a dead process is stale by
construction and is simply taken over; a live holder makes the second process stop with one
line naming the holder's pid, host and start time (written into the file for that purpose).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from pianogen.errors import PianogenError

LOCK_FILE = ".lock"


def _describe_owner(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {owner['pid']} on {owner['host']}, since {owner['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"


def _take(path: Path, busy: str | None = None) -> int:
    """An fd holding the lock on ``path``, or PianogenError naming the live owner (``busy``: the message's
    start, default for a run directory)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _describe_owner(fd)
            os.close(fd)
            raise PianogenError(f"{busy or f'{path.parent} is in use by another training'} ({owner}); wait for "
                                f"it to end{'' if busy else ', or choose another run.dir'}") from None
        # The previous owner unlinks the file on release; if it did so between our open and flock,
        # we hold a lock on a file nobody else can see: open the current one again.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: Path, enabled: bool = True, name: str = LOCK_FILE, busy: str | None = None) -> Iterator[None]:
    """Hold ``run_dir``'s lock file ``name`` while the block runs (``enabled=False``: DDP ranks other than 0);
    ``busy`` starts the error a second training gets (``file_lock``). Both trainers lock through here: a run
    directory's ``.lock``, a codec's ``<codec file>.lock`` beside it.

    A run directory created here only to hold the lock is removed again if the block leaves it empty.
    """
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with file_lock(run_dir / name, busy):
            yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only succeeds when the training failed before writing anything


@contextlib.contextmanager
def file_lock(path: Path, busy: str | None = None) -> Iterator[None]:
    """Hold the lock file ``path`` (its folder must exist) while the block runs; ``busy`` starts the error a
    second holder gets (a codec's training locks ``<codec>.lock``)."""
    fd = _take(path, busy)
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding the lock, so no one else is using this file
        os.close(fd)
