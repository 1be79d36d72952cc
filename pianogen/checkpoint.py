"""Run checkpoints: weights in safetensors, trainer state beside them, swapped in atomically.

Layout: ``checkpoints/<tag>/model.safetensors`` + ``trainer_state.pt`` + ``meta.json``. A new
checkpoint is written to ``<tag>.new`` and swapped in with renames, so a killed run always
finds one complete checkpoint (``<tag>`` or, mid-swap, ``<tag>.old``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pianogen.errors import PianogenError

MODEL_FILE, STATE_FILE, META_FILE = "model.safetensors", "trainer_state.pt", "meta.json"


def save(root: Path, tag: str, model: torch.nn.Module, meta: dict[str, Any],
         trainer_state: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final, new, old = root / tag, root / f"{tag}.new", root / f"{tag}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, new / MODEL_FILE, metadata={"format": "pt"})
    if trainer_state is not None:
        torch.save(trainer_state, new / STATE_FILE)
    (new / META_FILE).write_text(json.dumps(meta, indent=2))
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find(root: Path, tag: str) -> Path | None:
    """The complete checkpoint for ``tag``, also when a kill interrupted the swap."""
    for candidate in (root / tag, root / f"{tag}.old"):
        if (candidate / META_FILE).is_file() and (candidate / MODEL_FILE).is_file():
            return candidate
    return None


def load_meta(path: Path) -> dict[str, Any]:
    return json.loads((path / META_FILE).read_text())


def load_weights(path: Path, model: torch.nn.Module) -> None:
    try:
        missing, unexpected = model.load_state_dict(load_file(path / MODEL_FILE), strict=False)
    except RuntimeError as err:
        raise PianogenError(f"{path / MODEL_FILE} does not fit this model: {str(err).splitlines()[0]}") from None
    if missing or unexpected:
        raise PianogenError(f"{path / MODEL_FILE} does not fit this model: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}")


def load_trainer_state(path: Path) -> dict[str, Any]:
    # Our own file, but still never unpickle arbitrary objects.
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
