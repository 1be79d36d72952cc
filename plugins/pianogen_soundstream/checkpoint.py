"""Load a SoundStream safetensors checkpoint: the architecture comes from its metadata."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_bytes

from pianogen import expand
from pianogen.errors import PianogenError
from pianogen_soundstream.model import CODEC_NAME, SoundStream, SoundStreamConfig


def read_metadata(path: Path) -> dict[str, str]:
    """The safetensors header metadata, or a one-line PianogenError for files that are not ours."""
    if not path.is_file():
        raise PianogenError(f"codec checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise PianogenError(f"{path} is not a safetensors checkpoint ({err})") from None
    codec = meta.get("codec")
    if codec is None or "config" not in meta:
        raise PianogenError(
            f"{path} has no PianoGen codec metadata; convert a reference .pt with `pianogen codec import soundstream`"
        )
    if codec != CODEC_NAME:
        raise PianogenError(f"{path} was written by codec '{codec}', not '{CODEC_NAME}'")
    return meta


def load_soundstream(path: str | os.PathLike[str], **given: Any) -> SoundStream:
    """The checkpoint's codec; ``given`` architecture keys must agree with what it stores."""
    path = expand(path)
    meta = read_metadata(path)
    stored = json.loads(meta["config"])
    known = {f.name for f in dataclasses.fields(SoundStreamConfig)}
    if set(stored) - known:
        raise PianogenError(f"{path}: unknown config keys {sorted(set(stored) - known)} in its metadata")
    for key, value in given.items():
        if key in stored and _normalise(value) != _normalise(stored[key]):
            raise PianogenError(f"codec option '{key}' = {value!r} disagrees with {path}, which has {stored[key]!r}")
    model = SoundStream(SoundStreamConfig(**stored))
    data = path.read_bytes()
    try:
        model.load_state_dict(load_bytes(data), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise PianogenError(f"{path}: weights do not match its config ({first})") from None
    model.weights_sha256 = hashlib.sha256(data).hexdigest()
    return model.eval()


def _normalise(value: Any) -> Any:
    return [_normalise(v) for v in value] if isinstance(value, (list, tuple)) else value
