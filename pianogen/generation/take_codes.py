"""The codes behind a take, saved beside it (``codes_<i>.safetensors`` next to ``take_<i>.wav``).

They let ``generate --extend`` continue a take from exactly the tokens that were sampled, instead of
re-encoding its audio (which would lose what the codec cannot reproduce). safetensors, never pickle:
a codes file from elsewhere is data, not code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load

from pianogen.errors import PianogenError
from pianogen.paths import atomic_write_bytes, safetensors_bytes

TAKE_NAME = re.compile(r"take_(\d+)\.wav")


def codes_path_for(take: Path) -> Path:
    """``.../take_2.wav`` -> ``.../codes_2.safetensors``."""
    match = TAKE_NAME.fullmatch(take.name)
    if match is None:
        raise PianogenError(f"--extend wants a take_<i>.wav written by pianogen generate, got {take}")
    return take.with_name(f"codes_{match.group(1)}.safetensors")


def _identity(codec: Any) -> str:
    return json.dumps(codec.identity(), sort_keys=True)


def save_take_codes(path: Path, codes: torch.Tensor, codec: Any, levels: int, take: str) -> None:
    """codes LongTensor[K, T] (ending where the take ends) with what is needed to check them on reuse."""
    metadata = {"codec": _identity(codec), "levels": str(levels), "frame_rate": str(codec.frame_rate),
                "take": take}
    atomic_write_bytes(path, safetensors_bytes({"codes": codes.to(torch.int64).contiguous().cpu()}, metadata=metadata))


def load_take_codes(path: Path, codec: Any, levels: int) -> torch.Tensor:
    """The codes saved beside a take -> LongTensor[K, T], refused unless the run's codec and levels made them."""
    if not path.is_file():
        raise PianogenError(f"no {path.name} beside the take ({path.parent}): --extend continues a take that "
                            f"pianogen generate wrote, from the codes it saved")
    try:
        data = path.read_bytes()
        codes = load(data)["codes"]
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__", {})
    except (SafetensorError, KeyError, ValueError, OSError) as err:
        raise PianogenError(f"cannot read take codes {path}: {err}") from None
    try:
        recognized = codec.recognizes(json.loads(metadata.get("codec")))
    except (TypeError, ValueError):  # no codec recorded, or not JSON
        recognized = False
    if not recognized or metadata.get("levels") != str(levels):
        raise PianogenError(f"{path} was sampled with codec {metadata.get('codec')} at {metadata.get('levels')} "
                            f"levels, but this run's codec is {_identity(codec)} at {levels} levels")
    if (codes.dim() != 2 or codes.shape[0] != levels or codes.shape[-1] < 1 or codes.min() < 0
            or codes.max() >= codec.codebook_size):
        raise PianogenError(f"{path} does not hold codes of this codec (shape {tuple(codes.shape)})")
    return codes
