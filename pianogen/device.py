"""Which torch device a run uses: a leaf module, importable from anywhere without pulling in the pipeline."""

from __future__ import annotations

import torch

from pianogen.errors import PianogenError


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; a one-line error otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PianogenError(f"unknown device '{name}' (run.device or --device): use auto, cpu, cuda or cuda:N"
                            ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PianogenError(f"device '{name}' (run.device or --device) needs CUDA, which this machine lacks")
    return device
