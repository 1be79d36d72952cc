"""Timing and peak FLOP/s for ``pianogen bench``: best-of-n timing on any clock, MFU's denominators."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

# Dense (no sparsity) bf16 tensor-core peak FLOP/s by the exact torch.cuda.get_device_name(), for MFU
# (PaLM / nanoGPT). Exact names, because variants share substrings: the H100 PCIe (756 TF) and NVL
# (835 TF) are not the SXM (989 TF), and "L4" is in "L40". V100 and T4 have no bf16 tensor cores.
PEAK_BF16_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA H100 NVL": 835e12,  # SXM5, PCIe, NVL
    "NVIDIA H200": 989e12, "NVIDIA H200 NVL": 835e12, "NVIDIA GH200 480GB": 989e12,
    "NVIDIA A100-SXM4-40GB": 312e12, "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA L40S": 362e12, "NVIDIA L40": 181e12, "NVIDIA L4": 121e12, "NVIDIA A10G": 70e12, "NVIDIA A10": 125e12,
    "NVIDIA GeForce RTX 4090": 165e12, "NVIDIA GeForce RTX 3090": 71e12,
}


def peak_flops_of(name: str) -> float | None:
    """The dense bf16 peak of a CUDA device named exactly ``name``; None when it is not in the table."""
    return PEAK_BF16_FLOPS.get(name.strip())


def peak_flops(device: torch.device) -> float | None:
    return peak_flops_of(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def mfu_note(device: torch.device) -> str | None:
    """Why MFU is missing, when it is: a CPU, or a CUDA device whose peak the table does not know."""
    if device.type != "cuda":
        return "MFU is reported for CUDA devices only"
    name = torch.cuda.get_device_name(device)
    if peak_flops_of(name) is None:
        return f"unknown device '{name}': no dense bf16 peak in PEAK_BF16_FLOPS, so no MFU"
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int = 1, warmup: bool = True,
          clock: Callable[[], float] = time.perf_counter) -> float:
    """Best seconds of ``repeat`` calls by ``clock`` (wall time unless told), after one untimed warm-up
    call unless ``warmup`` is False."""
    if warmup:
        fn()
    best = math.inf
    for _ in range(repeat):
        _sync(device)
        start = clock()
        fn()
        _sync(device)
        best = min(best, clock() - start)
    return best


