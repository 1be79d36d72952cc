"""SoundStream (Zeghidour et al. 2021) with the module layout of haydenshively/SoundStream 0.0.1.

The state-dict keys under ``encoder.`` and ``decoder.`` are the reference's own, so its
pretrained checkpoint (``soundstream_variant_naturalspeech2.pt``) loads after renaming only the
quantizer buffers (see convert.py). The RVQ is encodec's tested implementation (k-means
initialised EMA codebooks with dead-code expiry) with the reference's update rules (see rvq.py).

B = batch, S = samples, C = base channels, D = latent dim, T = frames, K = levels, V = codes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pianogen import atomic_write_bytes, safetensors_bytes
from pianogen.errors import PianogenError
from pianogen.interfaces import TrainableCodec
from pianogen_soundstream.phase_free import MagnitudeEncoder, SineBankDecoder
from pianogen_soundstream.rvq import (
    REFERENCE_DEAD_CODE_THRESHOLD,
    REFERENCE_DECAY,
    REFERENCE_KMEANS_ITERS,
    ReferenceResidualVQ,
)

CODEC_NAME = "soundstream"  # written into checkpoint metadata so other codecs' files are refused
TOKEN_MODULES = ("encoder", "quantizer")  # what makes the tokens: hashed into the identity; the decoder is not


@dataclass
class SoundStreamConfig:
    sample_rate: int = 16000  # Hz of the audio the codec reads and writes
    channels: int = 58  # C: the first conv's width; block i has C * 2**(i+1) channels
    dim: int = 256  # D: latent and codebook dimension
    strides: list[int] = field(default_factory=lambda: [2, 4, 5, 5])  # encoder downsampling per block
    n_levels: int = 16  # K: residual quantizers
    codebook_size: int = 1024  # V: codes per quantizer
    ema_decay: float = REFERENCE_DECAY  # codebook EMA decay (training only)
    kmeans_iters: int = REFERENCE_KMEANS_ITERS  # k-means iterations that initialise each codebook on its first batch
    dead_code_threshold: float = REFERENCE_DEAD_CODE_THRESHOLD  # codes used less (EMA) move to batch vectors
    activation: str = "elu"  # "elu" (the reference) | "snake" (periodic, as DAC / BigVGAN: suits piano partials)
    # "waveform" (the reference) | "magnitude": log-magnitude spectra, so a held note's codes hold still
    # (phase_free.py says why); "magnitude" needs decoder = "sines", which keeps the phase a latent no longer has
    encoder: str = "waveform"
    decoder: str = "conv"  # "conv" (the reference, transposed convolutions) | "sines" (an oscillator bank)

    def __post_init__(self) -> None:
        self.strides = [int(s) for s in self.strides]
        for key in ("sample_rate", "channels", "dim", "n_levels", "codebook_size", "kmeans_iters"):
            if int(getattr(self, key)) < 1:
                raise PianogenError(f"soundstream: '{key}' must be >= 1, got {getattr(self, key)}")
        if not self.strides or min(self.strides) < 1:
            raise PianogenError(f"soundstream: 'strides' must be a non-empty list of positive ints, got {self.strides}")
        if self.activation not in ACTIVATIONS:
            raise PianogenError(f"soundstream: 'activation' must be one of {sorted(ACTIVATIONS)}, "
                                f"got {self.activation!r}")
        for key, allowed in (("encoder", ("waveform", "magnitude")), ("decoder", ("conv", "sines"))):
            if getattr(self, key) not in allowed:
                raise PianogenError(f"soundstream: '{key}' must be one of {', '.join(allowed)}, "
                                    f"got {getattr(self, key)!r}")
        if self.encoder == "magnitude" and self.decoder != "sines":
            raise PianogenError("soundstream: encoder = \"magnitude\" needs decoder = \"sines\" (a convolutional "
                                "decoder cannot give a phase-free latent its pitch: see phase_free.py)")
        if not 0.0 < self.ema_decay < 1.0:
            raise PianogenError(f"soundstream: 'ema_decay' must be in (0, 1), got {self.ema_decay}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        for key, reference in (("activation", "elu"), ("encoder", "waveform"), ("decoder", "conv")):
            if fields[key] == reference:  # written only when not the reference's: older files keep their hash
                del fields[key]
        return json.dumps(fields, sort_keys=True)


def causal_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Left-pad x[..., L] by ``pad`` with reflection, as the reference does.

    The reference's F.pad(mode='reflect') needs pad < L; shorter inputs are reflected again and
    again (identical whenever the reference works), and a single sample is replicated.
    """
    while pad > 0:
        n = x.shape[-1]
        if n == 1:
            return F.pad(x, [pad, 0], mode="replicate")
        step = min(pad, n - 1)
        x = F.pad(x, [step, 0], mode="reflect")
        pad -= step
    return x


class CausalConv1d(nn.Module):
    """Conv1d whose output at t sees inputs <= t: [B, Cin, L] -> [B, Cout, L // stride]."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.causal_padding = dilation * (kernel_size - 1) + 1 - stride
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, stride=stride, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(causal_pad(x, self.causal_padding))


class CausalConvTranspose1d(nn.Module):
    """Transposed conv trimmed to n * stride so frame t only feeds samples of frames >= t."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, Cin, n] -> [B, Cout, n * stride]
        return self.conv(x)[..., : x.shape[-1] * self.stride]


class Snake(nn.Module):
    """x + sin²(αx) / α with a learned α per channel (Ziyin et al. 2020): a periodic inductive bias that
    lets a small decoder make sustained partials; at α -> 0 it is x + αx², near the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, L] -> [B, C, L]
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9)


ACTIVATIONS = {"elu": lambda channels: nn.ELU(), "snake": Snake}


class ResidualUnit(nn.Module):
    """x + act(conv1x1(act(conv7_dilated(x)))), channels unchanged; act is ELU in the reference."""

    def __init__(self, channels: int, dilation: int, activation: str = "elu"):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.layers = nn.Sequential(
            CausalConv1d(channels, channels, 7, dilation=dilation),
            act(channels),
            CausalConv1d(channels, channels, 1),
            act(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class EncoderBlock(nn.Module):
    """Three residual units (dilations 1, 3, 9) at c_out / 2, then a strided conv to c_out."""

    def __init__(self, c_out: int, stride: int, activation: str = "elu"):
        super().__init__()
        c = c_out // 2
        self.layers = nn.Sequential(
            *(ResidualUnit(c, d, activation) for d in (1, 3, 9)), CausalConv1d(c, c_out, 2 * stride, stride=stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, c_out/2, L] -> [B, c_out, L / stride]
        return self.layers(x)


class DecoderBlock(nn.Module):
    """An upsampling transposed conv from 2 * c_out to c_out, then three residual units."""

    def __init__(self, c_out: int, stride: int, activation: str = "elu"):
        super().__init__()
        self.layers = nn.Sequential(
            CausalConvTranspose1d(2 * c_out, c_out, stride),
            *(ResidualUnit(c_out, d, activation) for d in (1, 3, 9)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 2 c_out, n] -> [B, c_out, n * stride]
        return self.layers(x)


class Encoder(nn.Module):
    """[B, 1, S] -> [B, D, S / hop]: conv7 to C, blocks to 2C, 4C, ..., conv3 to D."""

    def __init__(self, cfg: SoundStreamConfig):
        super().__init__()
        c, n = cfg.channels, len(cfg.strides)
        self.layers = nn.Sequential(
            CausalConv1d(1, c, 7),
            *(EncoderBlock(c * 2 ** (i + 1), s, cfg.activation) for i, s in enumerate(cfg.strides)),
            CausalConv1d(c * 2**n, cfg.dim, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """[B, D, T] -> [B, 1, T * hop]: the encoder mirrored."""

    def __init__(self, cfg: SoundStreamConfig):
        super().__init__()
        c, n = cfg.channels, len(cfg.strides)
        self.layers = nn.Sequential(
            CausalConv1d(cfg.dim, c * 2**n, 7),
            *(DecoderBlock(c * 2**i, s, cfg.activation) for i, s in reversed(list(enumerate(cfg.strides)))),
            CausalConv1d(c, 1, 7),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SoundStream(TrainableCodec):
    """The codec: encoder -> residual VQ -> decoder."""

    def __init__(self, cfg: SoundStreamConfig):
        super().__init__()
        self.config = cfg
        self.sample_rate = cfg.sample_rate
        self.hop_length = cfg.hop_length
        self.frame_rate = cfg.sample_rate / cfg.hop_length
        self.n_levels = cfg.n_levels
        self.codebook_size = cfg.codebook_size
        width = cfg.channels * 2 ** len(cfg.strides)  # the reference encoder's last width
        self.encoder = Encoder(cfg) if cfg.encoder == "waveform" else MagnitudeEncoder(cfg.hop_length, cfg.dim, width)
        self.quantizer = ReferenceResidualVQ(
            num_quantizers=cfg.n_levels, dim=cfg.dim, codebook_size=cfg.codebook_size, decay=cfg.ema_decay,
            kmeans_iters=cfg.kmeans_iters, threshold_ema_dead_code=cfg.dead_code_threshold,
        )
        self.decoder = Decoder(cfg) if cfg.decoder == "conv" else SineBankDecoder(cfg.hop_length, cfg.sample_rate,
                                                                                  cfg.dim, width)
        self.weights_sha256 = ""  # of the safetensors file the weights came from; "" = in memory only
        self.tokens_frozen = False  # freeze_tokens: encoder and codebooks stay as they are

    def _latent(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> latent [B, D, ceil(S / hop)]; zero right-padding never reaches earlier frames."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise PianogenError(f"soundstream expects audio [B, 1, S], got {list(wav.shape)}")
        pad = -wav.shape[-1] % self.hop_length
        return self.encoder(F.pad(wav, [0, pad]))

    def forward(self, wav: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass through the first n_q levels: wav [B, 1, S] -> (reconstruction [B, 1, S'], commitment loss)."""
        quantized, _, losses = self.quantizer(self._latent(wav), n_q=n_q or self.n_levels)
        return self.decoder(quantized), losses.mean()

    @torch.no_grad()
    def init_codebooks(self, wav: torch.Tensor) -> None:
        """k-means-initialise still-untrained codebooks from audio wav [B, 1, S], as the first training
        batch does. encodec keeps them at zero until then, so every frame of a fresh codec gets code 0."""
        was_training = self.training
        self.train()
        self.quantizer(self._latent(wav))
        self.train(was_training)

    @torch.no_grad()
    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> the encoder's continuous output [B, D, T], before any quantization."""
        return self._latent(wav)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        codes = self.quantizer.encode(self._latent(wav), n_q=self.n_levels)  # [K, B, T]
        return codes.transpose(0, 1).contiguous()

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, D, T] (a sum of codebook vectors) -> wav [B, 1, T * hop]; differentiable."""
        return self.decoder(latent)

    def decoder_context_frames(self) -> int:
        """The decoder's receptive field in frames, walked back from one output sample through its causal convs
        and trimmed transposed convs (residual units counted as their conv path: an upper bound). For the sine
        bank, its own context; it decodes from a multiple of its period (``decoder_alignment_frames``)."""
        if self.config.decoder == "sines":
            return self.decoder.context_frames
        span = 1  # inputs of the current layer that one output sample depends on
        for layer in reversed([m for m in self.decoder.modules()
                               if isinstance(m, (CausalConv1d, CausalConvTranspose1d))]):
            if isinstance(layer, CausalConv1d):
                conv = layer.conv
                span = (span - 1) * conv.stride[0] + conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
            else:  # output n of a trimmed transposed conv reads inputs n // s and n // s - 1
                span = math.ceil(span / layer.stride) + 1
        return span

    def decoder_alignment_frames(self) -> int:
        """The sine bank's oscillators count their phase from the first decoded sample and repeat every period:
        a chunk decoded from a multiple of it sounds as in one piece."""
        return self.decoder.period if self.config.decoder == "sines" else 1

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.n_levels:
            raise PianogenError(f"soundstream decodes codes [B, 1..{self.n_levels}, T], got {list(codes.shape)}")
        return self.decoder(self.quantizer.decode(codes.transpose(0, 1)))

    def codebooks(self) -> torch.Tensor:
        return torch.stack([layer.codebook for layer in self.quantizer.layers])  # [K, V, D]

    def identity(self) -> dict[str, Any]:
        """The config and the weights that make the tokens (encoder and codebooks), not the decoder's: a
        decoder trained again on the same codes (``freeze_tokens``) keeps it, and with it every token model
        and token cache made with the codec."""
        weights = _state_sha256(self, tuple(f"{name}." for name in TOKEN_MODULES))
        digest = hashlib.sha256((self.config.to_json() + weights).encode()).hexdigest()[:16]
        return {"name": CODEC_NAME, "config_hash": digest}

    def former_identities(self) -> list[dict[str, Any]]:
        """pianogen <= 0.2 hashed the config with the whole file it was loaded from, decoder included."""
        if not self.weights_sha256:
            return []
        digest = hashlib.sha256((self.config.to_json() + self.weights_sha256).encode()).hexdigest()[:16]
        return [{"name": CODEC_NAME, "config_hash": digest}]

    def freeze_tokens(self) -> None:
        """Encoder and codebooks stop learning: no gradients, and kept in eval mode, so the codebooks' EMA,
        k-means and dead-code resets never run (``train`` below); only the decoder trains."""
        self.tokens_frozen = True
        for name in TOKEN_MODULES:
            getattr(self, name).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> SoundStream:
        super().train(mode)
        if self.tokens_frozen:
            for name in TOKEN_MODULES:
                getattr(self, name).eval()
        return self

    def save(self, path: Path) -> None:
        """Weights + EMA codebook buffers as safetensors, the config as JSON metadata; atomic."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        data = safetensors_bytes(tensors, metadata={"codec": CODEC_NAME, "config": self.config.to_json()})
        atomic_write_bytes(Path(path), data)
        self.weights_sha256 = hashlib.sha256(data).hexdigest()


def _state_sha256(model: nn.Module, prefixes: tuple[str, ...]) -> str:
    """Hash of the in-memory weights (buffers included) whose names start with one of ``prefixes``."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if not key.startswith(prefixes):
            continue
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return h.hexdigest()
