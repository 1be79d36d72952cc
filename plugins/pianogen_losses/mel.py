"""The report's perceptual loss, made precise: L1 between log-Mel spectrograms of the audio of
the *expected* latent and of the target's latent.

    predicted latent  z_hat[t] = Σ_k softmax(logits[k, t]) @ codebook_k        (differentiable)
    target latent     z[t]     = Σ_k codebook_k[targets[k, t]]

Each latent becomes audio through either
  * ``linear``: a fixed frame -> samples map (a ConvTranspose1d, hop stride, no nonlinearity)
    fitted once by least squares to the codec's decoder on a few training windows and stored as
    safetensors beside the token cache (keyed on every fit option), so later runs reload it. Its
    error against the real decoder is measured on validation windows (held-out training windows
    when the trainer gives none), printed, and logged with every loss value as ``mel_fit_error``; or
  * ``decoder``: the frozen codec decoder itself (``Codec.decode_latent``, for codecs that offer it) on a
    short random crop.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from safetensors import safe_open
from safetensors.torch import save_file

from pianogen import atomic_path
from pianogen.errors import PianogenError
from pianogen.interfaces import Codec, Loss, LossContext

RECONSTRUCTIONS = ("linear", "decoder")
# Relative RMS error e means the stand-in explains 1 - e² of the decoder's output energy. Above
# sqrt(1/2) it explains less than half: what the loss then pushes towards is shaped more by what the
# linear map gets wrong than by the decoder, so we warn.
FIT_ERROR_WARNING = math.sqrt(0.5)


@dataclass
class MelConfig:
    reconstruction: str = "linear"  # latent -> audio: "linear" (fitted map, cheap) | "decoder" (frozen codec decoder)
    crop_frames: int = 64  # decoder: frames decoded per window (one random crop per step); linear uses whole windows
    context_frames: int = 8  # linear: latent frames each output frame is built from (past, itself, lookahead)
    lookahead_frames: int = 1  # linear: how many of those come after the output frame (0 = strictly causal)
    fit_batches: int = 4  # linear: training batches the least-squares fit decodes
    fit_frames: int = 256  # linear: frames of each training window used by the fit
    ridge: float = 1e-6  # linear: Tikhonov term of the fit, relative to the mean diagonal of XᵀX
    n_fft: int = 0  # STFT size; 0 = about 64 ms at the codec's rate, a power of two (1024 at 16 kHz)
    hop_length: int = 0  # STFT hop in samples; 0 = n_fft // 4
    n_mels: int = 64  # Mel bands
    f_min: float = 0.0  # lowest band edge (Hz); the highest is Nyquist
    log_floor: float = 1e-5  # log(mel + log_floor): keeps silence finite

    def __post_init__(self) -> None:
        if self.reconstruction not in RECONSTRUCTIONS:
            raise PianogenError(f"loss.reconstruction must be one of {', '.join(RECONSTRUCTIONS)}, "
                                f"got '{self.reconstruction}'")
        for name in ("crop_frames", "context_frames", "fit_batches", "fit_frames", "n_mels"):
            if getattr(self, name) < 1:
                raise PianogenError(f"loss.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.lookahead_frames < self.context_frames:
            raise PianogenError(f"loss.lookahead_frames must be in [0, context_frames), got {self.lookahead_frames}")
        if self.n_fft < 0 or self.hop_length < 0 or self.ridge < 0 or self.log_floor <= 0:
            raise PianogenError("loss.n_fft, loss.hop_length and loss.ridge must be >= 0, loss.log_floor > 0")


def frame_context(latent: torch.Tensor, past: int, lookahead: int) -> torch.Tensor:
    """latent [B, D, T] -> features [B, T, C·D]: frames t-past..t+lookahead of each t (zeros beyond the edges)."""
    C = past + 1 + lookahead
    windows = F.pad(latent, (past, lookahead)).unfold(2, C, 1)  # [B, D, T, C], window c = frame t - past + c
    return windows.permute(0, 2, 3, 1).flatten(2)


class LinearReconstruction(torch.nn.Module):
    """latent [B, D, T] -> wav [B, 1, T·hop]: each frame's hop samples are a linear function of the
    latents of its C = past + 1 + lookahead neighbouring frames, i.e. a ConvTranspose1d with kernel
    C·hop and stride hop (plus a per-sample-of-frame bias)."""

    def __init__(self, dim: int, hop: int, context: int, lookahead: int) -> None:
        super().__init__()
        self.hop, self.context, self.lookahead = hop, context, lookahead
        self.register_buffer("weight", torch.zeros(dim, 1, context * hop))  # ConvTranspose1d weight [D, 1, C·hop]
        self.register_buffer("bias", torch.zeros(hop))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        B, _, T = latent.shape
        wav = F.conv_transpose1d(latent, self.weight, stride=self.hop)  # [B, 1, (T - 1 + C)·hop]
        start = self.lookahead * self.hop  # frame t writes from (t - lookahead)·hop
        wav = wav[:, :, start:start + T * self.hop].reshape(B, T, self.hop) + self.bias
        return wav.reshape(B, 1, T * self.hop)

    def set_least_squares(self, solution: torch.Tensor) -> None:
        """solution [C·D + 1, hop] from ``frame_context`` features (+ a ones column) -> weight and bias."""
        C, hop = self.context, self.hop
        W = solution[:-1].view(C, -1, hop)  # [C, D, hop], context slot c = frame offset c - past
        # ConvTranspose places frame t's kernel slice s at output frame t - lookahead + s, i.e. s = C - 1 - c
        self.weight.copy_(W.flip(0).permute(1, 0, 2).reshape(-1, 1, C * hop))
        self.bias.copy_(solution[-1])

    @torch.no_grad()
    def fit(self, codec: Codec, codebooks: torch.Tensor, batches: list[torch.Tensor], ridge: float) -> float:
        """Least squares against ``codec.decode`` on code batches [B, K, T]; returns the relative RMS error."""
        past = self.context - 1 - self.lookahead
        xtx = xty = None
        y_energy = 0.0
        for codes in batches:
            B, _, T = codes.shape
            wav = codec.decode(codes).float()[:, :, :T * self.hop]  # [B, 1, T·hop]
            x = frame_context(latent_of(codes, codebooks), past, self.lookahead).reshape(B * T, -1).double()
            x = torch.cat([x, x.new_ones(B * T, 1)], dim=1)  # ones column = bias
            y = wav.reshape(B * T, self.hop).double()
            xtx = x.T @ x if xtx is None else xtx + x.T @ x
            xty = x.T @ y if xty is None else xty + x.T @ y
            y_energy += float((y * y).sum())
        if xtx is None:
            raise PianogenError("the mel loss needs training windows to fit its linear reconstruction; none found")
        damping = ridge * xtx.diagonal().mean() * torch.eye(xtx.shape[0], dtype=xtx.dtype, device=xtx.device)
        solution = torch.linalg.lstsq(xtx + damping, xty).solution  # [C·D + 1, hop]
        # ||XW - Y||² from the accumulated normal equations, without a second pass over the data
        residual = y_energy - 2 * float((solution * xty).sum()) + float((solution * (xtx @ solution)).sum())
        self.set_least_squares(solution.float())
        return math.sqrt(max(residual, 0.0) / max(y_energy, 1e-12))

    @torch.no_grad()
    def error(self, codec: Codec, codebooks: torch.Tensor, batches: Iterable[torch.Tensor]) -> float:
        """Relative RMS error ||linear - decoder|| / ||decoder|| on code batches [B, K, T] it was not fitted on."""
        err = energy = 0.0
        for codes in batches:
            T = codes.shape[2]
            wav = codec.decode(codes).float()[:, :, :T * self.hop]
            err += float((self(latent_of(codes, codebooks)) - wav).square().sum())
            energy += float(wav.square().sum())
        return math.sqrt(err / energy) if energy > 0 else float("nan")


def latent_of(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """codes [B, K, T], codebooks [K, V, D] -> latent Σ_k codebooks[k, codes[:, k]] as [B, D, T]."""
    return sum(codebooks[k][codes[:, k]] for k in range(codes.shape[1])).transpose(1, 2)


class MelLoss(Loss):
    """L1 between log-Mel spectrograms of the expected latent's audio and the target latent's audio."""

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        self.reconstruct: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.fit_error: float | None = None  # linear: relative RMS error of the fitted map vs the decoder
        self.validation_error: float | None = None  # linear: the same on windows the fit never saw

    def prepare(self, ctx: LossContext) -> None:
        c = self.config
        codec, K = ctx.codec, ctx.levels
        self.register_buffer("codebooks", codec.codebooks()[:K].detach().float().to(ctx.device))  # [K, V, D]
        n_fft = c.n_fft or 2 ** round(math.log2(0.064 * codec.sample_rate))
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=codec.sample_rate, n_fft=n_fft, hop_length=c.hop_length or n_fft // 4, n_mels=c.n_mels,
            f_min=c.f_min, power=1.0,
        ).to(ctx.device)
        if c.reconstruction == "decoder":
            # asked before any step: the contract's default decode_latent would fail only in the first one
            if not getattr(codec, "decodes_latent", callable(getattr(codec, "decode_latent", None))):
                raise PianogenError(f"the mel loss's reconstruction = \"decoder\" needs latent decoding, which "
                                    f"codec '{type(codec).__name__}' does not offer (Codec.decode_latent); use "
                                    f"reconstruction = \"linear\"")
            self.reconstruct = codec.decode_latent  # a bound method: the codec does not become a submodule
            return
        self.linear = LinearReconstruction(self.codebooks.shape[2], codec.hop_length, c.context_frames,
                                           c.lookahead_frames).to(ctx.device)
        path = Path(ctx.cache_dir) / f"mel_linear_l{K}_{self._fit_key(K)}.safetensors"
        loaded = self._load(path) if path.exists() else None
        if loaded is None:
            windows = (codes[:, :K, :c.fit_frames].to(ctx.device) for codes in ctx.train_codes())
            fit_batches = [b for _, b in zip(range(c.fit_batches), windows)]
            self.fit_error = self.linear.fit(codec, self.codebooks, fit_batches, c.ridge)
            validation = getattr(ctx, "validation_codes", None)
            held_out = (codes[:, :K, :c.fit_frames].to(ctx.device) for codes in validation()) if validation \
                else windows  # the training windows after the fitted ones
            self.validation_error = self.linear.error(codec, self.codebooks,
                                                      [b for _, b in zip(range(c.fit_batches), held_out)])
            with atomic_path(path) as tmp:
                save_file({"weight": self.linear.weight.cpu(), "bias": self.linear.bias.cpu()}, str(tmp),
                          metadata={"levels": str(K), "relative_error": repr(self.fit_error),
                                    "validation_error": repr(self.validation_error)})
        else:
            self.fit_error, self.validation_error = loaded
        print(f"mel loss: linear stand-in for the decoder, relative RMS error {self.fit_error:.3f} on its fit "
              f"windows, {self.validation_error:.3f} on held-out windows", file=sys.stderr)
        if not self.validation_error <= FIT_ERROR_WARNING:
            print(f"warning: the mel loss's linear stand-in misses {self.validation_error:.0%} (RMS) of the "
                  f"decoder's output on held-out windows (over {FIT_ERROR_WARNING:.0%}): consider more "
                  f"context_frames or reconstruction = \"decoder\"", file=sys.stderr)
        self.reconstruct = self.linear

    def _fit_key(self, levels: int) -> str:
        """A hash of everything the fit depends on besides the codec (the cache directory is the codec's)."""
        c = self.config
        options = {"levels": levels, "context": c.context_frames, "lookahead": c.lookahead_frames,
                   "batches": c.fit_batches, "frames": c.fit_frames, "ridge": c.ridge}
        return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]

    def _load(self, path: Path) -> tuple[float, float] | None:
        """Stored map -> (fit error, held-out error), or None when the file no longer matches (refitted)."""
        with safe_open(str(path), framework="pt") as f:
            weight, bias, metadata = f.get_tensor("weight"), f.get_tensor("bias"), f.metadata() or {}
        if weight.shape != self.linear.weight.shape or bias.shape != self.linear.bias.shape:
            return None
        if "validation_error" not in metadata:
            return None  # written before held-out errors were measured
        self.linear.weight.copy_(weight)
        self.linear.bias.copy_(bias)
        return float(metadata.get("relative_error", "nan")), float(metadata["validation_error"])

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wav.float()) + self.config.log_floor)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """logits [B, K, T, V], targets [B, K, T], mask [B, T] -> (loss, {"mel": value}).

        Masked frames get a zero latent in both signals, so they contribute (almost) nothing.
        """
        if self.reconstruct is None:
            raise RuntimeError("MelLoss.prepare(ctx) must run before the loss is used")
        probs = logits.float().softmax(dim=-1)  # [B, K, T, V]
        predicted = torch.einsum("bktv,kvd->bdt", probs, self.codebooks)  # expected latent [B, D, T]
        target = latent_of(targets, self.codebooks)  # [B, D, T]
        if mask is not None:
            keep = mask[:, None, :].to(predicted.dtype)
            predicted, target = predicted * keep, target * keep
        T, crop = predicted.shape[2], self.config.crop_frames
        if self.config.reconstruction == "decoder" and T > crop:
            start = int(torch.randint(0, T - crop + 1, ()))
            predicted, target = predicted[:, :, start:start + crop], target[:, :, start:start + crop]
        with torch.no_grad():
            target_mel = self.log_mel(self.reconstruct(target))
        loss = F.l1_loss(self.log_mel(self.reconstruct(predicted)), target_mel)
        metrics = {"mel": float(loss.detach())}
        if self.validation_error is not None:
            metrics["mel_fit_error"] = self.validation_error
        return loss, metrics


def mel(**config) -> MelLoss:
    """``get_loss("mel", **config)``."""
    return MelLoss(MelConfig(**config))

