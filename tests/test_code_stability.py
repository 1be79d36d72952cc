"""Do a codec's codes hold still while a note sounds (``pianogen.evaluation.code_stability``)?"""

from __future__ import annotations

import pytest
import torch

import pianogen.evaluation.codec_metrics as cm
from pianogen.evaluation.code_stability import steady_notes, steady_tone
from pianogen.interfaces import Codec

pytestmark = pytest.mark.usefixtures("one_thread")
SR, HOP = 16000, 200  # 80 frames/s, as codec_piano
A4, A5 = 69, 81  # 440 Hz: 5.5 periods per hop (its phase flips every frame); 880 Hz: 11 whole periods


class ToyCodec(Codec):
    """One level of 64 codes per 200-sample frame, from the frame's last sample (``phase``: what a waveform
    encoder reads at each frame instant) or from the loudest bin of the frame's 800-sample magnitude spectrum
    (a phase-free coder). Codebook vectors: the sample value, or the bin one-hot."""

    sample_rate, frame_rate, hop_length, n_levels, codebook_size = SR, SR / HOP, HOP, 1, 64

    def __init__(self, phase: bool) -> None:
        super().__init__()
        self.phase = phase
        self.unused = torch.nn.Parameter(torch.zeros(()))  # evaluation reads the device from a parameter

    def encode(self, wav):
        x = wav[:, 0]
        frames = x.shape[-1] // HOP
        if self.phase:
            at = x[:, HOP - 1::HOP][:, :frames]  # [B, T]
            return ((at.clamp(-1, 1) + 1) / 2 * 63).round().long()[:, None]
        padded = torch.nn.functional.pad(x, (800 - HOP, 0))
        spectra = padded.unfold(-1, 800, HOP)[:, :frames] * torch.hann_window(800)  # [B, T, 800]
        loudest = torch.fft.rfft(spectra).abs()[..., :64].argmax(-1)  # below 1.28 kHz: the fundamentals scored
        return loudest[:, None]

    def decode(self, codes):
        return torch.zeros(codes.shape[0], 1, codes.shape[-1] * HOP)

    def codebooks(self):
        if self.phase:
            return (torch.arange(64, dtype=torch.float32) / 63 * 2 - 1)[None, :, None]  # [1, 64, 1]
        return torch.eye(64)[None]

    def identity(self):
        return {"name": "toy", "config_hash": str(self.phase)}


def test_a_steady_tone_is_a_decaying_harmonic_note_below_nyquist():
    tone = steady_tone(A4, SR, 1.0)
    spectrum = torch.fft.rfft(tone).abs()
    assert tone.abs().max() == pytest.approx(0.3) and tone[: SR // 10].pow(2).mean() > tone[-SR // 10:].pow(2).mean()
    peaks = spectrum.topk(3).indices.sort().values.tolist()  # 1 s: bin = Hz
    assert peaks == [440, 880, 1320]
    assert torch.isfinite(steady_tone(108, SR, 0.5)).all()  # C8's upper partials are left out, not aliased


def test_a_phase_reading_coder_changes_codes_under_a_held_note_and_a_magnitude_coder_does_not():
    pitches = [57, A4, 72, A5]
    phase = steady_notes(ToyCodec(phase=True), pitches)
    per = phase["per_pitch"]
    assert per[A4]["repeat_by_level"][0] < 0.1 and per[A4]["latent_cosine"] < -0.5  # flips sign every frame
    assert per[A5]["repeat_by_level"][0] > 0.9 and per[A5]["latent_cosine"] > 0.9  # whole periods per hop
    assert phase["held_pitches"] <= 2 and phase["level1_repeat"] < 0.5
    magnitude = steady_notes(ToyCodec(phase=False), pitches)
    assert magnitude["held_pitches"] == 4 and magnitude["level1_repeat"] > 0.95
    assert magnitude["latent_cosine"] > 0.95


def test_codec_eval_reports_held_notes_and_how_often_real_codes_repeat():
    phase = ToyCodec(phase=True)
    wav = torch.cat([steady_tone(A5, SR, 1.0), steady_tone(A4, SR, 1.0)])  # 80 frames held, then 80 flipping
    result = cm.evaluate_codec(phase, [wav], levels=(1,), opus=False)
    codes = phase.encode(wav[None, None])[0, 0]
    counted = float((codes[1:] == codes[:-1]).double().mean())
    assert result["codebooks"][0]["repeat_fraction"] == pytest.approx(counted) and 0.3 < counted < 0.7
    assert result["steady_notes"]["pitches"] == 88 and result["steady_notes"]["held_pitches"] < 44
    table = "\n".join(cm.markdown_tables(result, 64))
    assert "same code as the previous frame |" in table and f"| {counted:.1%} |" in table
    assert "Held notes (88 piano-like tones" in table
