"""Continuation metrics on signals with a known answer, and the token floors on hand-made tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pianogen.evaluation import drift
from pianogen.evaluation.evaluate import ReferenceModels, pick_prompts

SR = 16000


def tones(midis: list[int], seconds: float = 2.0, harmonics: int = 3) -> torch.Tensor:
    t = torch.arange(round(seconds * SR)) / SR
    wav = sum(torch.sin(2 * math.pi * 440 * 2 ** ((m - 69) / 12) * h * t) / h
              for m in midis for h in range(1, harmonics + 1))
    return 0.5 * wav / wav.abs().max()


C_MAJOR, C_MAJOR_VOICED, F_SHARP_MAJOR = [60, 64, 67], [48, 64, 67, 72], [66, 70, 73]


def test_chroma_of_a_c_major_chord_peaks_on_c_e_g():
    c = drift.chroma(tones(C_MAJOR, harmonics=1), SR)
    assert set(c.topk(3).indices.tolist()) == {0, 4, 7}
    assert c[[0, 4, 7]].sum() > 0.95 * c.sum()  # the rest is window leakage


def test_chroma_similarity_stays_high_in_key_and_drops_out_of_it():
    prompt = drift.chroma(tones(C_MAJOR), SR)
    assert drift.chroma_similarity(tones(C_MAJOR_VOICED), prompt, SR) > 0.9
    assert drift.chroma_similarity(tones(F_SHARP_MAJOR), prompt, SR) < 0.1
    assert drift.chroma_similarity(torch.zeros(SR), prompt, SR) == pytest.approx(0.0, abs=1e-6)


def test_spectral_flatness_of_noise_is_near_one_and_of_a_tone_near_zero():
    torch.manual_seed(0)
    assert drift.spectral_flatness(0.1 * torch.randn(2 * SR), SR).mean() > 0.9
    assert drift.spectral_flatness(tones([69], harmonics=1), SR).max() < 1e-3
    assert drift.spectral_flatness(tones(C_MAJOR), SR).max() < 1e-3


def test_spectral_convergence_is_zero_for_identical_signals_and_one_against_silence():
    x = tones(C_MAJOR)
    assert drift.spectral_convergence(x, x) == 0.0
    assert drift.spectral_convergence(x, torch.zeros_like(x)) == pytest.approx(1.0)
    assert drift.spectral_convergence(x, tones(F_SHARP_MAJOR)) > 1.0


def test_bad_frame_fraction_flags_noise_and_silence_but_not_music():
    torch.manual_seed(0)
    music = tones(C_MAJOR)
    rms = float(music.pow(2).mean().sqrt())
    assert drift.bad_frame_fraction(music, SR, rms) == 0.0
    assert drift.bad_frame_fraction(0.3 * torch.randn(SR), SR, rms) == 1.0
    assert drift.bad_frame_fraction(music * 1e-3, SR, rms) == 1.0  # 60 dB down
    half = torch.cat([music[:SR], torch.zeros(SR)])
    assert drift.bad_frame_fraction(half, SR, rms) == pytest.approx(0.5)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_has_the_slope_it_is_named_for(exponent):
    """White, pink, brown: the log-log slope of the averaged power spectrum is -exponent."""
    x = drift.coloured_noise(4 * SR, exponent, rms=0.1, seed=0)
    assert float(x.pow(2).mean().sqrt()) == pytest.approx(0.1, rel=1e-4)
    power = torch.stft(x, 4096, 1024, window=torch.hann_window(4096), return_complex=True).abs().pow(2).mean(1)
    f = torch.fft.rfftfreq(4096, 1 / SR)
    band = (f > 50) & (f < 2000)  # below the window's leakage floor for brown noise
    slope = torch.linalg.lstsq(torch.stack([torch.ones(int(band.sum())), f[band].log()], 1),
                               power[band].log()[:, None]).solution[1, 0]
    assert float(slope) == pytest.approx(-exponent, abs=0.1)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 24000])
def test_bad_frames_are_noise_of_every_colour_and_held_silence_never_piano(sample_rate):
    """Plain flatness caught white noise only (pink: 0 % of frames, brown: 0 %); whitened flatness
    flags all three, held silence is flagged as near-silent, and synthetic piano is never flagged."""
    import torchaudio
    from pianogen_data import synth

    rng = np.random.default_rng(0)
    for _ in range(3):
        piano = torch.as_tensor(synth.render(synth.compose(rng, 6.0), rng)).float().reshape(-1)
        piano = torchaudio.functional.resample(piano, synth.SAMPLE_RATE, sample_rate)
        rms = float(piano.pow(2).mean().sqrt())
        assert drift.bad_frame_fraction(piano, sample_rate, rms) == 0.0
        for exponent in (0.0, 1.0, 2.0):
            noise = drift.coloured_noise(2 * sample_rate, exponent, rms, seed=int(exponent))
            assert drift.bad_frame_fraction(noise, sample_rate, rms) == 1.0, exponent
        held = torch.cat([piano[:sample_rate], torch.zeros(3 * sample_rate)])  # one second, then silence
        assert drift.bad_frame_fraction(held, sample_rate, rms) == pytest.approx(0.75, abs=0.05)
        assert drift.whitened_flatness(piano, sample_rate).max() < 0.25  # far from NOISE_FLATNESS 0.5


def test_drift_curves_score_each_second_after_the_prompt():
    prompt, same, other = tones(C_MAJOR, 1.0), tones(C_MAJOR, 3.0), tones(F_SHARP_MAJOR, 3.0)
    signals = {"generated": torch.cat([prompt, other]), "raw": torch.cat([prompt, same])}
    curves = drift.drift_curves(signals, SR, {"generated": ["raw"]}, SR)
    assert set(curves["generated"]) == {"chroma_similarity", "bad_frame_fraction", "mel_l1_vs_raw",
                                        "spectral_convergence_vs_raw"}
    assert set(curves["raw"]) == {"chroma_similarity", "bad_frame_fraction"}
    assert all(len(v) == 3 for c in curves.values() for v in c.values())
    assert min(curves["raw"]["chroma_similarity"]) > 0.99
    assert max(curves["generated"]["chroma_similarity"]) < 0.1
    assert min(curves["generated"]["mel_l1_vs_raw"]) > 0.5


def test_reference_models_match_hand_computed_nll():
    V = 4
    train = [np.array([[0, 0, 1, 1, 1], [2, 3, 2, 3, 2]]), np.array([[0, 1], [3, 3]])]
    refs = ReferenceModels.fit(train, levels=2, vocab=V)
    # level 0: counts 0:3 1:4 over 7 codes; level 1: 2:3 3:4. Add-one: (c + 1) / (7 + 4)
    assert refs.unigram_logp[0].exp().tolist() == pytest.approx([4 / 11, 5 / 11, 1 / 11, 1 / 11])
    assert refs.unigram_logp[1].exp().tolist() == pytest.approx([1 / 11, 1 / 11, 4 / 11, 5 / 11])
    # pairs within pieces: 4 + 1 = 5 per level; repeats: level 0 -> 0-0, 1-1, 1-1 = 3; level 1 -> 3-3 = 1
    assert refs.repeat_p.tolist() == pytest.approx([(3 + 1) / (5 + 2), (1 + 1) / (5 + 2)])

    codes = torch.tensor([[[1, 1, 0], [3, 2, 2]]])  # targets: level 0 -> 1, 0; level 1 -> 2, 2
    scores = refs.scores(codes)
    uni_nll, uni_hit = scores["unigram"]
    expected = -torch.tensor([[5 / 11, 4 / 11], [4 / 11, 4 / 11]]).log()
    torch.testing.assert_close(uni_nll[0], expected)
    assert uni_hit[0].tolist() == [[True, False], [False, False]]  # argmax codes: 1 and 3
    rep_nll, rep_hit = scores["repeat"]
    r0, r1 = 4 / 7, 2 / 7
    expected = -torch.tensor([[r0, (1 - r0) / 3], [(1 - r1) / 3, r1]]).log()
    torch.testing.assert_close(rep_nll[0], expected)
    assert rep_hit[0].tolist() == [[True, False], [False, True]]


def test_pick_prompts_takes_piece_starts_first_then_later_segments():
    pieces = [{"audio_filename": "a", "frames": 101}, {"audio_filename": "b", "frames": 25}]
    chosen = [(p["audio_filename"], s) for p, s in pick_prompts(pieces, 4, 10, 14)]
    assert chosen == [("a", 0), ("b", 0), ("a", 24), ("a", 48)]
    assert pick_prompts(pieces, 4, 10, 100) == []
