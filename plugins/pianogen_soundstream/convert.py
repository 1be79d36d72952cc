"""Import the reference haydenshively/SoundStream checkpoint (``soundstream_variant_naturalspeech2.pt``).

Its encoder/decoder keys already match ours. Its quantizer is vector-quantize-pytorch 1.6.11's
ResidualVQ, whose EuclideanCodebook keeps one extra leading "heads" axis and spells ``initted``;
encodec's codebook (ours) has the same buffers without that axis and spells ``inited``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

import pianogen
from pianogen.errors import PianogenError
from pianogen_soundstream.model import SoundStream, SoundStreamConfig

_VQ_KEY = re.compile(r"quantizer\.layers\.(\d+)\._codebook\.(embed|embed_avg|cluster_size|initted)")
_RENAME = {"initted": "inited"}


def import_reference(ckpt: Path, out: Path, sample_rate: int = 16000) -> None:
    """Reference ``.pt`` state dict -> our ``.safetensors`` (weights + config metadata)."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise PianogenError(f"reference checkpoint not found: {ckpt}")
    state = pianogen.load_tensors(ckpt, "a PyTorch state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PianogenError(f"{ckpt} does not hold a state dict of tensors")
    mapped = {_map_key(ckpt, k): _map_value(ckpt, k, v) for k, v in state.items()}
    model = SoundStream(_infer_config(ckpt, mapped, sample_rate))
    expected = model.state_dict()
    for key in sorted(set(expected) | set(mapped)):
        if key not in mapped:
            raise PianogenError(f"{ckpt}: missing '{key}'; not a haydenshively/SoundStream checkpoint")
        if key not in expected:
            raise PianogenError(f"{ckpt}: unexpected '{key}'; not a haydenshively/SoundStream checkpoint")
        if mapped[key].shape != expected[key].shape:
            raise PianogenError(
                f"{ckpt}: '{key}' has shape {list(mapped[key].shape)}, the inferred architecture "
                f"needs {list(expected[key].shape)}"
            )
    model.load_state_dict(mapped)
    model.save(Path(out))


def _map_key(ckpt: Path, key: str) -> str:
    if not key.startswith("quantizer."):
        return key
    m = _VQ_KEY.fullmatch(key)
    if m is None:
        raise PianogenError(f"{ckpt}: unexpected quantizer entry '{key}' (only plain EuclideanCodebook RVQs import)")
    return f"quantizer.layers.{m[1]}._codebook.{_RENAME.get(m[2], m[2])}"


def _map_value(ckpt: Path, key: str, value: torch.Tensor) -> torch.Tensor:
    """Drop the reference codebook's heads axis: embed [1, V, D] -> [V, D], cluster_size [1, V] -> [V]."""
    m = _VQ_KEY.fullmatch(key)
    if m is None or m[2] == "initted":
        return value.float()
    if value.dim() < 2 or value.shape[0] != 1:
        raise PianogenError(f"{ckpt}: '{key}' has shape {list(value.shape)}; expected a single codebook head [1, ...]")
    return value[0].float()


def _infer_config(ckpt: Path, state: dict[str, torch.Tensor], sample_rate: int) -> SoundStreamConfig:
    """C, D, strides, levels and codebook size read off the tensor shapes."""
    try:
        channels = state["encoder.layers.0.conv.weight"].shape[0]
        n_blocks = sum(1 for k in state if re.fullmatch(r"encoder\.layers\.\d+\.layers\.3\.conv\.weight", k))
        strides = [state[f"encoder.layers.{i}.layers.3.conv.weight"].shape[-1] // 2 for i in range(1, n_blocks + 1)]
        dim = state[f"encoder.layers.{n_blocks + 1}.conv.weight"].shape[0]
        n_levels = sum(1 for k in state if k.endswith("._codebook.embed"))
        codebook_size = state["quantizer.layers.0._codebook.embed"].shape[0]
    except KeyError as err:
        raise PianogenError(f"{ckpt}: missing {err}; not a haydenshively/SoundStream checkpoint") from None
    return SoundStreamConfig(
        sample_rate=sample_rate, channels=channels, dim=dim, strides=strides, n_levels=n_levels,
        codebook_size=codebook_size,
    )
