"""The ``encodec`` package's causal 24 kHz model as a PianoGen codec (75 frames/s, up to 32 x 1024).

Weights come from a local file: nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from encodec import EncodecModel

import pianogen
from pianogen import expand
from pianogen.errors import PianogenError
from pianogen.interfaces import Codec

WEIGHTS_FILE = "encodec_24khz-d7cc33bc.th"  # the official file name (its sha256 starts with d7cc33bc)
WEIGHTS_URL = f"https://dl.fbaipublicfiles.com/encodec/v0/{WEIGHTS_FILE}"
BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)  # kbps the model was trained for -> 2, 4, 8, 16, 32 levels


@dataclass
class EncodecOptions:
    checkpoint: str = ""  # the weights file, or a directory holding it; "" = $PIANOGEN_HOME/codecs/
    bandwidth: float = 6.0  # kbps, one of 1.5, 3, 6, 12, 24: selects 2..32 RVQ levels


def weights_path(checkpoint: str) -> Path:
    """The weights file named by ``checkpoint`` (a file or a directory holding WEIGHTS_FILE)."""
    path = expand(checkpoint or "$PIANOGEN_HOME/codecs")
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise PianogenError(f"encodec weights not found: {path} (expected {WEIGHTS_FILE}; `pianogen codec get "
                            f"encodec` fetches it from {WEIGHTS_URL})")
    return path


class EncodecCodec(Codec):
    """Wraps EncodecModel.encodec_model_24khz; the 24 kHz model does not normalise its input."""

    def __init__(self, checkpoint: str = "", bandwidth: float = 6.0):
        super().__init__()
        if float(bandwidth) not in BANDWIDTHS:
            raise PianogenError(f"encodec: 'bandwidth' must be one of {list(BANDWIDTHS)} kbps, got {bandwidth}")
        path = weights_path(checkpoint)
        data = path.read_bytes()
        state = pianogen.load_tensors(path, "an encodec state dict")
        self.model = EncodecModel.encodec_model_24khz(pretrained=False)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as err:
            raise PianogenError(f"{path}: not the 24 kHz encodec model ({str(err).splitlines()[0]})") from None
        self.model.set_target_bandwidth(float(bandwidth))
        self.model.eval()
        self.bandwidth = float(bandwidth)
        self.sample_rate = self.model.sample_rate
        self.hop_length = self.model.encoder.hop_length
        self.frame_rate = self.sample_rate / self.hop_length
        self.n_levels = self.model.quantizer.get_num_quantizers_for_bandwidth(self.model.frame_rate, self.bandwidth)
        self.codebook_size = self.model.quantizer.bins
        self._weights_sha256 = hashlib.sha256(data).hexdigest()

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise PianogenError(f"encodec expects audio [B, 1, S], got {list(wav.shape)}")
        (codes, _scale), = self.model.encode(wav)  # one frame: the 24 kHz model has no segmenting
        return codes  # [B, K, ceil(S / hop)]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.n_levels:
            raise PianogenError(f"encodec decodes codes [B, 1..{self.n_levels}, T], got {list(codes.shape)}")
        return self.model.decoder(self.model.quantizer.decode(codes.transpose(0, 1)))  # [B, 1, T * hop]

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, 128, T] (a sum of codebook vectors: the quantizer's projections are identities) ->
        wav [B, 1, T * hop]; differentiable. Its decoder's LSTM sees the whole past, so the contract's
        decoder_context_frames stays None (unknown): streaming decodes from the start."""
        return self.model.decoder(latent)

    def codebooks(self) -> torch.Tensor:
        layers = self.model.quantizer.vq.layers[: self.n_levels]
        return torch.stack([layer.codebook for layer in layers])  # [K, 1024, 128]

    def identity(self) -> dict[str, Any]:
        config = json.dumps({"model": "encodec_24khz", "bandwidth": self.bandwidth})
        digest = hashlib.sha256((config + self._weights_sha256).encode()).hexdigest()[:16]
        return {"name": "encodec", "config_hash": digest}
