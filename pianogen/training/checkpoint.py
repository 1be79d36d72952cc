"""Checkpoints of both trainers: weights in safetensors, trainer state beside them, swapped in atomically.

Layout: ``checkpoints/<tag>/model.safetensors`` + ``trainer_state.pt`` + ``meta.json`` (a codec's training:
``<codec stem>.checkpoints/last/``). A new
checkpoint is written to ``<tag>.new`` and swapped in with renames, so a killed run always
finds one complete checkpoint (``<tag>`` or, mid-swap, ``<tag>.old``). A write that fails (disk
full, quota) removes ``<tag>.new`` and keeps ``<tag>``; a damaged file is named with what to do.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pianogen.errors import PianogenError, first_line

MODEL_FILE, STATE_FILE, META_FILE = "model.safetensors", "trainer_state.pt", "meta.json"


def save(root: Path, tag: str, model: torch.nn.Module, meta: dict[str, Any],
         trainer_state: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final, new, old = root / tag, root / f"{tag}.new", root / f"{tag}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    writing = MODEL_FILE
    try:
        save_file(state, new / MODEL_FILE, metadata={"format": "pt"})
        _as_umask_allows(new / MODEL_FILE)
        if trainer_state is not None:
            writing = STATE_FILE
            torch.save(trainer_state, new / STATE_FILE)
        writing = META_FILE
        (new / META_FILE).write_text(json.dumps(meta, indent=2))
    except (OSError, RuntimeError, SafetensorError) as err:  # torch.save reports a full disk as RuntimeError
        shutil.rmtree(new, ignore_errors=True)
        kept = [t for t in dict.fromkeys((tag, "last")) if find(root, t)]  # --resume continues from 'last'
        way_on = (f"the previous '{kept[0]}' checkpoint is kept (free disk space, then continue with --resume)"
                  if "last" in kept else f"the previous '{tag}' checkpoint is kept" if kept else
                  f"there is no earlier '{tag}' checkpoint to resume from (free disk space, then train again)")
        raise PianogenError(f"could not write checkpoint {final}: {writing}: {_write_failure(err)}; "
                            f"{way_on}") from None
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    # else a kill came mid-swap last time: <tag>.old is the one complete checkpoint, kept until <tag> is whole
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _as_umask_allows(path: Path) -> None:
    """safetensors creates files 0600; give them the mode any other file of the run gets (usually 0644)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _write_failure(err: BaseException) -> str:
    """Why a write failed, in words: the OS's reason, not torch's or safetensors' internals (torch.save says
    'PytorchStreamWriter failed writing file data/0: file write failed' for a full disk)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return "the write failed (no space left on the device, or a file size limit)"


def damaged(file: Path, err: BaseException | str) -> PianogenError:
    """The one-line error for an unreadable checkpoint file: which file, why, and the way out."""
    tag = file.parent.name.removesuffix(".old")
    other = "last" if tag == "best" else "best"
    reason = err if isinstance(err, str) else first_line(err)
    if file.parent.parent.name != "checkpoints":  # a codec's training (<codec>.checkpoints): one tag only
        return PianogenError(f"{file} is damaged ({reason}); train the codec afresh (codec train --force)")
    return PianogenError(f"{file} is damaged ({reason}); use the '{other}' checkpoint instead (generate "
                         f"--checkpoint {other}), or copy checkpoints/{other} over checkpoints/{tag}")


def find(root: Path, tag: str) -> Path | None:
    """The complete checkpoint for ``tag``, also when a kill interrupted the swap."""
    for candidate in (root / tag, root / f"{tag}.old"):
        if (candidate / META_FILE).is_file() and (candidate / MODEL_FILE).is_file():
            return candidate
    return None


def load_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / META_FILE).read_bytes())
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise damaged(path / META_FILE, err) from None
    if not isinstance(meta, dict) or "step" not in meta:
        raise damaged(path / META_FILE, "not a checkpoint record")
    return meta


def load_weights(path: Path, model: torch.nn.Module, config: dict[str, Any] | None = None) -> None:
    """Load ``path``'s weights into ``model``; ``config`` (the recipe's model options) names what differs."""
    try:
        saved = load_file(path / MODEL_FILE)
    except (OSError, SafetensorError) as err:
        raise damaged(path / MODEL_FILE, err) from None
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    resized = [k for k in expected if k in saved and saved[k].shape != expected[k].shape]
    if missing or unexpected or resized:
        raise PianogenError(f"{path / MODEL_FILE} does not fit this model: "
                            f"{_size_difference(path, config, saved, expected, missing, unexpected, resized)}")
    model.load_state_dict(saved)


def _size_difference(path: Path, config: dict[str, Any] | None, saved: dict, expected: dict, missing: list[str],
                     unexpected: list[str], resized: list[str]) -> str:
    """'d_model 128 vs 64' when the checkpoint's recorded model config says why; else the first tensors."""
    try:
        recorded = json.loads((path / META_FILE).read_bytes()).get("model_config", {})
    except (OSError, ValueError, AttributeError):
        recorded = {}
    if config is not None and recorded:
        differ = [f"{k} {recorded.get(k, 'default')} vs {config.get(k, 'default')}"
                  for k in sorted(set(recorded) | set(config)) if recorded.get(k) != config.get(k)]
        if differ:
            return f"it was trained with another model size ({', '.join(differ)}; checkpoint vs recipe)"
    if resized:
        k = resized[0]
        return f"{k} is {tuple(saved[k].shape)} in the checkpoint but {tuple(expected[k].shape)} in the model"
    return f"missing {missing[:3]}, unexpected {unexpected[:3]}"


def load_tensors(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure one line: a file holding Python objects other
    than tensors is refused without torch's advice (``weights_only=False`` would run the file's code); a file that
    is no checkpoint at all says so. ``what`` names what the file should be ("an encodec state dict")."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # it names a class or function to import: Python objects, not data
            raise PianogenError(f"refusing to load {path}: it holds Python objects other than tensors and plain "
                                f"values, which {what} never holds (a tampered or foreign file)") from None
        raise PianogenError(f"{path} is not {what} (not a PyTorch file: {first_line(err)})") from None
    except Exception as err:  # zip or format errors of every kind
        raise PianogenError(f"{path} is not {what} ({type(err).__name__}: {first_line(err)})") from None



def load_trainer_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    try:
        # Our own file, but still never unpickle arbitrary objects.
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise PianogenError(f"refusing to load {file}: it holds Python objects other than tensors and plain "
                            f"values, which pianogen never writes (a tampered or foreign file)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise damaged(file, err) from None
