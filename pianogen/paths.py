"""Where caches live: ``$PIANOGEN_HOME`` (default ``~/.cache/pianogen``)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The cache root for synthetic corpora, token caches and trained demo codecs."""
    return Path(os.environ.get("PIANOGEN_HOME") or Path.home() / ".cache" / "pianogen").expanduser()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temp file + rename so a killed process never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def expand(path: str | Path) -> Path:
    """Expand ``$PIANOGEN_HOME`` (the cache root, default or not), other variables and ``~`` in a recipe path."""
    text = str(path).replace("$PIANOGEN_HOME", str(home())).replace("${PIANOGEN_HOME}", str(home()))
    return Path(os.path.expandvars(text)).expanduser()
