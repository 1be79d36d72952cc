"""Continuation metrics: how a generated continuation drifts from the true one, second by second.

Every function takes mono audio FloatTensor[S] (or [1, S]) at ``sample_rate``; reference first.
``drift_curves`` cuts a continuation into 1 s bins and scores each bin, so a curve shows when a
continuation stops sounding like the piece (the report saw noise ~1000 tokens past the prompt).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pianogen.training.metrics import mel_l1

_EPS = 1e-10
CHROMA_FMIN, CHROMA_FMAX = 55.0, 4200.0  # A1 .. about C8: the piano's fundamentals that carry pitch class
SILENCE_DB = -40.0  # a frame this far below the prompt's RMS counts as near-silent
NOISE_FLATNESS = 0.5  # a frame whose whitened spectral flatness exceeds this counts as noise-like
FRAME_SECONDS = 0.1  # analysis frame of RMS and flatness
WELCH_SECONDS = 0.032  # whitened flatness: Welch segments of about this length (512 samples at 16 kHz)


def _mono(wav: torch.Tensor) -> torch.Tensor:
    return wav.reshape(-1).float()


def _power(wav: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Power spectrogram FloatTensor[n_fft // 2 + 1, frames] (Hann window, centred frames)."""
    window = torch.hann_window(n_fft, device=wav.device)
    return torch.stft(_mono(wav), n_fft, hop, window=window, return_complex=True).abs().pow(2)


def spectral_convergence(ref: torch.Tensor, est: torch.Tensor, n_fft: int = 1024, hop: int = 256) -> float:
    """Jukebox's spectral convergence ||S_ref - S_est||_F / ||S_ref||_F on STFT magnitudes (0 = identical)."""
    n = min(_mono(ref).numel(), _mono(est).numel())
    r = _power(_mono(ref)[:n], n_fft, hop).sqrt()
    e = _power(_mono(est)[:n], n_fft, hop).sqrt()
    return float(torch.linalg.vector_norm(r - e) / torch.linalg.vector_norm(r).clamp_min(_EPS))


def chroma(wav: torch.Tensor, sample_rate: int, n_fft: int = 4096) -> torch.Tensor:
    """Mean 12-bin chroma FloatTensor[12] (index 0 = C): STFT power between CHROMA_FMIN and CHROMA_FMAX
    summed by nearest pitch class. n_fft 4096 resolves semitones down to about 100 Hz at 16 kHz."""
    power = _power(wav, n_fft, n_fft // 4).mean(dim=1)  # [F]
    freqs = torch.fft.rfftfreq(n_fft, 1 / sample_rate).to(power.device)
    keep = (freqs >= CHROMA_FMIN) & (freqs <= min(CHROMA_FMAX, sample_rate / 2))
    midi = 69 + 12 * torch.log2(freqs[keep] / 440.0)
    pitch_class = torch.round(midi).long() % 12
    return torch.zeros(12, device=power.device).index_add_(0, pitch_class, power[keep])


def chroma_similarity(wav: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> float:
    """Cosine between ``wav``'s chroma and a reference chroma FloatTensor[12]: near 1 = same pitch classes
    (same key), near 0 = disjoint ones or silence."""
    return float(F.cosine_similarity(chroma(wav, sample_rate), reference.to(wav.device), dim=0, eps=_EPS))


def _frames(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Non-overlapping analysis frames FloatTensor[N, L] of FRAME_SECONDS (a short tail is dropped)."""
    size = max(1, round(FRAME_SECONDS * sample_rate))
    x = _mono(wav)
    return x[: x.numel() // size * size].view(-1, size)


def frame_rms(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """RMS of each analysis frame, FloatTensor[N]."""
    return _frames(wav, sample_rate).pow(2).mean(dim=1).sqrt()


def spectral_flatness(wav: torch.Tensor, sample_rate: int, n_fft: int = 256) -> torch.Tensor:
    """Spectral flatness (geometric / arithmetic mean of power) of each analysis frame, FloatTensor[N].

    The power spectrum of a frame is Welch-averaged over its n_fft-sample segments (half overlap),
    so white noise scores near 1 instead of the ~0.56 of a single periodogram; a pure tone scores near 0.
    """
    frames = _frames(wav, sample_rate)  # [N, L]
    window = torch.hann_window(n_fft, device=frames.device)
    spec = torch.stft(frames, n_fft, n_fft // 2, window=window, center=False, return_complex=True)
    power = spec.abs().pow(2).mean(dim=-1)[:, 1:] + _EPS  # [N, F], DC dropped
    return power.log().mean(dim=1).exp() / power.mean(dim=1)


def whitened_flatness(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Spectral flatness of each analysis frame after whitening, FloatTensor[N]: near 1 for noise of
    any colour (white, pink, brown), near 0 for tones.

    Plain flatness only catches white noise: pink and brown noise have tilted spectra (flatness 0.34
    and 0.002) though they hold no pitch. Each frame's Welch power spectrum is divided by its smooth
    trend, a quadratic in log frequency fitted to log power by least squares (a power law and its
    bend where window leakage takes over), and the flatness is taken of what remains: a noise's
    spectrum is all trend, a tone's is peaks above it. Segments of about WELCH_SECONDS (a power of two).
    """
    n_fft = 2 ** round(math.log2(WELCH_SECONDS * sample_rate))
    frames = _frames(wav, sample_rate)  # [N, L]
    window = torch.hann_window(n_fft, device=frames.device)
    spec = torch.stft(frames, n_fft, n_fft // 2, window=window, center=False, return_complex=True)
    log_power = (spec.abs().pow(2).mean(dim=-1)[:, 1:] + _EPS).log()  # [N, F], DC dropped
    log_f = torch.fft.rfftfreq(n_fft, 1 / sample_rate)[1:].to(frames.device).log()
    x = (log_f - log_f.mean()) / log_f.std()  # centred for a well-conditioned fit
    basis = torch.stack([torch.ones_like(x), x, x * x], dim=1)  # [F, 3]
    trend = basis @ torch.linalg.lstsq(basis, log_power.T).solution  # [F, N]
    residual = log_power - trend.T
    return residual.mean(dim=1).exp() / residual.exp().mean(dim=1)


def bad_frame_fraction(wav: torch.Tensor, sample_rate: int, reference_rms: float) -> float:
    """Fraction of analysis frames that are near-silent (RMS SILENCE_DB below ``reference_rms``) or
    noise-like (whitened flatness above NOISE_FLATNESS, any colour of noise): the failure modes of a
    drifting continuation."""
    silent = frame_rms(wav, sample_rate) < reference_rms * 10 ** (SILENCE_DB / 20)
    noisy = whitened_flatness(wav, sample_rate) > NOISE_FLATNESS
    bad = silent | noisy
    return float(bad.float().mean()) if bad.numel() else math.nan


def coloured_noise(n_samples: int, exponent: float, rms: float, seed: int) -> torch.Tensor:
    """Gaussian noise FloatTensor[n_samples] with power spectrum ~ 1 / f**exponent (0 white, 1 pink,
    2 brown) scaled to ``rms``: a floor that any drift metric has to beat."""
    generator = torch.Generator().manual_seed(seed)
    spectrum = torch.fft.rfft(torch.randn(n_samples, generator=generator))
    f = torch.fft.rfftfreq(n_samples)
    f[0] = f[1] if n_samples > 2 else 1.0  # no infinite DC
    x = torch.fft.irfft(spectrum * f.pow(-exponent / 2), n_samples)
    return rms * x / x.pow(2).mean().sqrt().clamp_min(_EPS)


def drift_curves(signals: dict[str, torch.Tensor], boundary: int, references: dict[str, list[str]],
                 sample_rate: int, bin_seconds: float = 1.0) -> dict[str, dict[str, list[float]]]:
    """Score each ``bin_seconds`` bin after sample ``boundary`` (the prompt's end) of each signal.

    signals: name -> prompt + continuation audio (e.g. "generated", "resynth", "raw"), scored up to the
    shortest; references: name -> the other names it is compared with by Mel L1 and spectral
    convergence. Each signal is also scored against its OWN prompt (so a codec's gain or colour is
    not counted as drift): chroma similarity to the prompt's chroma, and the bad-frame fraction with
    near-silence measured from the prompt's RMS. Returns {name: {metric: [value per bin]}}, metrics
    ``mel_l1_vs_<ref>``, ``spectral_convergence_vs_<ref>``, ``chroma_similarity``, ``bad_frame_fraction``.
    """
    size = round(bin_seconds * sample_rate)
    n_bins = (min(_mono(w).numel() for w in signals.values()) - boundary) // size
    prompts = {name: _mono(w)[:boundary] for name, w in signals.items()}
    prompt_chroma = {name: chroma(p, sample_rate) for name, p in prompts.items()}
    prompt_rms = {name: float(p.pow(2).mean().sqrt()) for name, p in prompts.items()}
    curves: dict[str, dict[str, list[float]]] = {name: {} for name in signals}
    for b in range(n_bins):
        lo = boundary + b * size
        bins = {name: _mono(w)[lo:lo + size] for name, w in signals.items()}
        for name, x in bins.items():
            scores = {"chroma_similarity": chroma_similarity(x, prompt_chroma[name], sample_rate),
                      "bad_frame_fraction": bad_frame_fraction(x, sample_rate, prompt_rms[name])}
            for ref in references.get(name, []):
                scores[f"mel_l1_vs_{ref}"] = float(mel_l1(bins[ref], x, sample_rate))
                scores[f"spectral_convergence_vs_{ref}"] = spectral_convergence(bins[ref], x)
            for metric, value in scores.items():
                curves[name].setdefault(metric, []).append(value)
    return curves
