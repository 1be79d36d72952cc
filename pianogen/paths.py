"""Where caches live: ``$PIANOGEN_HOME`` (default ``~/.cache/pianogen``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def home() -> Path:
    """The cache root for synthetic corpora, token caches and trained demo codecs."""
    return Path(os.environ.get("PIANOGEN_HOME") or Path.home() / ".cache" / "pianogen").expanduser()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside ``path`` for the block to write; renamed over ``path`` when the block succeeds,
    removed when it fails, so a killed or failing writer never leaves half a file under ``path``.

    The one atomic write of the package: ``atomic_write_bytes`` and every writer that needs a file
    name (torch.save, safetensors, matplotlib, a copy) go through it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + rename (``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def expand(path: str | Path) -> Path:
    """Expand ``$PIANOGEN_HOME`` (the cache root, default or not), other variables and ``~`` in a recipe path."""
    text = str(path).replace("$PIANOGEN_HOME", str(home())).replace("${PIANOGEN_HOME}", str(home()))
    return Path(os.path.expandvars(text)).expanduser()
