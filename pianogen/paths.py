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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files (``atomic_path``'s ``.<name>.tmp<pid>``) a killed writer of ``path`` left behind;
    a live writer's are kept."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.tmp*"):
        pid = stale.name.rpartition(".tmp")[2]
        if pid.isdigit() and not pid_alive(int(pid)) and stale.is_file():
            stale.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + rename (``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def expand(path: str | Path) -> Path:
    """Expand ``$PIANOGEN_HOME`` (the cache root, default or not), other variables and ``~`` in a recipe path."""
    text = str(path).replace("$PIANOGEN_HOME", str(home())).replace("${PIANOGEN_HOME}", str(home()))
    return Path(os.path.expandvars(text)).expanduser()


def safetensors_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """safetensors.torch.save with its ``__metadata__`` keys in sorted order, so the same tensors and metadata
    always give the same bytes (and sha256). safetensors 0.x writes that table from a Rust HashMap, in a
    per-process random order: identical codecs got different file hashes, and the hash keys the token cache.

    The header is re-written, not the data: tensor offsets are relative to the end of the header."""
    import json

    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__", {}).items()))} if metadata else {}
    ordered.update(sorted(header.items(), key=lambda item: (item[1]["data_offsets"], item[0])))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + size:]
