"""Audio reconstruction metrics; the tensor versions double as codec training losses.

Audio tensors are [..., S] (any leading shape); reference first, estimate second.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import torch
import torchaudio

from pianogen.interfaces import Codec

MEL_FFTS = (256, 512, 1024, 2048)  # window sizes of the multi-scale Mel loss
STFT_FFTS = (512, 1024, 2048)  # window sizes of the multi-resolution STFT distance
_EPS = 1e-5


@functools.lru_cache(maxsize=32)
def _mel(sample_rate: int, n_fft: int, device: str) -> torchaudio.transforms.MelSpectrogram:
    # fewer bands for short windows, which have fewer frequency bins to share between them
    n_mels = min(80, n_fft // 8)
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels, power=1.0
    ).to(device)


def mel_l1(ref: torch.Tensor, est: torch.Tensor, sample_rate: int, ffts: Sequence[int] = MEL_FFTS) -> torch.Tensor:
    """Mean L1 distance of log-Mel magnitudes, averaged over window sizes (a scalar tensor)."""
    losses = []
    for n_fft in ffts:
        mel = _mel(sample_rate, n_fft, str(ref.device))
        losses.append((torch.log(mel(ref) + _EPS) - torch.log(mel(est) + _EPS)).abs().mean())
    return torch.stack(losses).mean()


def _magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT| of x[..., S] with a Hann window and hop n_fft // 4 -> [N, F, frames]."""
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, n_fft // 4, window=window, return_complex=True)
    return spec.abs().clamp_min(_EPS)


def stft_distance(ref: torch.Tensor, est: torch.Tensor, ffts: Sequence[int] = STFT_FFTS) -> torch.Tensor:
    """Multi-resolution STFT distance: spectral convergence + log-magnitude L1, averaged over resolutions."""
    losses = []
    for n_fft in ffts:
        r, e = _magnitude(ref, n_fft), _magnitude(est, n_fft)
        convergence = torch.linalg.vector_norm(r - e) / torch.linalg.vector_norm(r)
        losses.append(convergence + (r.log() - e.log()).abs().mean())
    return torch.stack(losses).mean()


def si_sdr(ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB, averaged over leading dims (higher is better)."""
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + 1e-12)
    target = scale * ref
    ratio = target.pow(2).sum(-1) / ((est - target).pow(2).sum(-1) + 1e-12)
    return (10 * torch.log10(ratio + 1e-12)).mean()


def reconstruction_metrics(ref: torch.Tensor, est: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """{'mel_l1', 'stft', 'si_sdr'} between two signals of the same length."""
    return {
        "mel_l1": mel_l1(ref, est, sample_rate).item(),
        "stft": stft_distance(ref, est).item(),
        "si_sdr": si_sdr(ref, est).item(),
    }


@torch.no_grad()
def codec_reconstruction(
    codec: Codec, wavs: Iterable[torch.Tensor], levels: Sequence[int | str] = (1, 2, 4, 8, "all")
) -> dict[str, dict[str, float]]:
    """Encode each wav FloatTensor[1, S] once, decode with the first k levels, average the metrics per k.

    Level counts above ``codec.n_levels`` are skipped; "all" means ``codec.n_levels``.
    Returns {str(k): {'mel_l1', 'stft', 'si_sdr'}}.
    """
    device = next(codec.parameters()).device
    counts = {str(k): codec.n_levels if k == "all" else int(k) for k in levels}
    counts = {key: k for key, k in counts.items() if 1 <= k <= codec.n_levels}
    sums: dict[str, dict[str, float]] = {key: {} for key in counts}
    n = 0
    for wav in wavs:
        x = wav.reshape(1, 1, -1).to(device)
        codes = codec.encode(x)
        for key, k in counts.items():
            est = codec.decode(codes[:, :k])[..., : x.shape[-1]]
            for name, value in reconstruction_metrics(x, est, codec.sample_rate).items():
                sums[key][name] = sums[key].get(name, 0.0) + value
        n += 1
    return {key: {name: total / max(n, 1) for name, total in m.items()} for key, m in sums.items()}
