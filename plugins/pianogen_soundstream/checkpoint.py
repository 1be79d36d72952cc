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
    stored = stored_config(path, meta["config"])
    for key, value in given.items():
        if key in stored and _normalise(value) != _normalise(stored[key]):
            raise PianogenError(f"codec option '{key}' = {value!r} disagrees with {path}, which has {stored[key]!r}")
    try:
        model = SoundStream(SoundStreamConfig(**stored))
    except PianogenError as err:
        raise PianogenError(f"{path}: its metadata 'config' is not a usable soundstream config ({err})") from None
    except (RuntimeError, MemoryError, OverflowError, ValueError) as err:  # sizes no machine can build
        raise PianogenError(f"{path}: its metadata 'config' describes a codec that cannot be built "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    data = path.read_bytes()
    try:
        model.load_state_dict(load_bytes(data), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise PianogenError(f"{path}: weights do not match its config ({first})") from None
    model.weights_sha256 = hashlib.sha256(data).hexdigest()
    return model.eval()


def stored_config(path: Path, text: str) -> dict[str, Any]:
    """The metadata's ``config`` JSON, each key a SoundStreamConfig field of the field's type (a file is data
    from anywhere: a string where a size belongs must be one line, not a TypeError deep in a conv layer)."""
    try:
        stored = json.loads(text)
    except ValueError as err:
        raise PianogenError(f"{path}: its metadata 'config' is not JSON ({err})") from None
    if not isinstance(stored, dict):
        raise PianogenError(f"{path}: its metadata 'config' is not a JSON object, got {type(stored).__name__}")
    fields = {f.name: f for f in dataclasses.fields(SoundStreamConfig)}
    if set(stored) - set(fields):
        raise PianogenError(f"{path}: unknown config keys {sorted(set(stored) - set(fields))} in its metadata")
    for key, value in stored.items():
        kind = fields[key].type
        ok = {"int": _is_int(value), "float": _is_int(value) or isinstance(value, float), "str": isinstance(value, str),
              "list[int]": isinstance(value, list) and all(map(_is_int, value))}.get(kind, True)
        if not ok:
            raise PianogenError(f"{path}: its metadata config '{key}' must be {kind}, got {value!r}")
    return stored


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _normalise(value: Any) -> Any:
    return [_normalise(v) for v in value] if isinstance(value, (list, tuple)) else value
