"""soundstream's phase-free variant: a magnitude encoder and a sine-bank decoder (pianogen_soundstream.phase_free)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pianogen_soundstream.checkpoint import load_soundstream
from pianogen_soundstream.model import Decoder, SoundStreamConfig
from pianogen_soundstream.phase_free import SineBankDecoder, oscillator_frequencies

import pianogen
from pianogen.errors import PianogenError
from pianogen.evaluation.code_stability import steady_notes, steady_tone
from pianogen.training.codec_train import metrics_path, train_codec
from tests.test_codec_train import recipe_file  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 8000
TINY = dict(sample_rate=SR, channels=4, dim=16, strides=[2, 4, 5], n_levels=4, codebook_size=32)
PHASE_FREE = dict(encoder="magnitude", decoder="sines")
PITCHES = [45, 57, 62, 69, 76]  # A2 .. E5: at 200 frames/s none has whole periods in a 40-sample hop but 69


def codec(**overrides):
    torch.manual_seed(0)
    made = pianogen.get_codec("soundstream", **{**TINY, **overrides})
    made.init_codebooks(torch.stack([steady_tone(p, SR, 0.5) for p in PITCHES])[:, None])
    return made.eval()


def frame_to_frame_change(made, pitch: int) -> float:
    """||z_t - z_t-1||^2 / ||z_t - silence||^2 of the encoder's latent under a held note, after its first 0.1 s:
    near 0 when the latent follows the note's slow decay, about 2 when consecutive frames are unrelated."""
    tone = steady_tone(pitch, SR, 1.0)[None, None]
    z = made.encode_latent(tone)[0, :, 20:]  # [D, T]
    z = z - made.encode_latent(torch.zeros_like(tone))[0, :, 20:]  # what the note adds to the biases' latent
    return float((z[:, 1:] - z[:, :-1]).pow(2).sum(0).mean() / z.pow(2).sum(0).mean())


def test_held_notes_hold_their_codes_with_the_magnitude_encoder_and_not_with_the_waveform_one():
    phase_free = steady_notes(codec(**PHASE_FREE), PITCHES)
    assert phase_free["held_pitches"] == len(PITCHES) and phase_free["level1_repeat"] > 0.9
    assert phase_free["latent_cosine"] > 0.95
    for pitch in (57, 62, 76):  # 5.5, 7.3 and 16.5 periods a hop: the waveform encoder sees a new phase each frame
        assert frame_to_frame_change(codec(**PHASE_FREE), pitch) < 0.05
        assert frame_to_frame_change(codec(), pitch) > 1.0


def test_a_convolutional_decoder_fed_a_constant_latent_repeats_every_hop_and_the_sine_bank_does_not():
    """Why the magnitude encoder needs the sine bank: a constant latent makes the reference decoder's output
    periodic at the frame rate (here 200 Hz harmonics only); the sine bank plays any oscillator's pitch."""
    torch.manual_seed(0)
    cfg = SoundStreamConfig(**TINY)
    hop = cfg.hop_length
    latent = torch.randn(1, 16, 1).expand(1, 16, 100).contiguous()
    with torch.no_grad():
        conv = Decoder(cfg)(latent)[0, 0, 40 * hop:]  # past the start-up of its causal padding
    assert torch.allclose(conv[hop:], conv[:-hop], atol=1e-5)
    bank = SineBankDecoder(hop, SR, 16, 32)
    a4 = int(torch.argmin((oscillator_frequencies(SR) - 440.0).abs()))
    with torch.no_grad():  # the network's last map set so that only the A4 oscillator sounds
        bank.out.bias.fill_(-40.0)
        bank.out.bias[a4] = 4.0
        wav = bank(latent)[0, 0, hop:]  # 1 s after the first frame's ramp
    spectrum = torch.fft.rfft(wav * torch.hann_window(wav.numel())).abs()
    peak_hz = float(spectrum.argmax()) * SR / wav.numel()
    assert abs(peak_hz - 440.0) < 2.0 and not torch.allclose(wav[hop:], wav[:-hop], atol=1e-2)


def test_sine_bank_decoding_is_deterministic_causal_and_exact_from_any_multiple_of_its_period():
    """Streaming decodes each chunk from decoder_context_frames before it, moved back to a multiple of
    decoder_alignment_frames: exact only if decoding is deterministic, causal, and the bank repeats each period."""
    made = codec(**PHASE_FREE)
    context, period = made.decoder_context_frames(), made.decoder_alignment_frames()
    assert context == 7 and period == 800  # 4 s at 200 frames/s
    codes = torch.randint(0, 32, (1, 4, period + 60))
    full = made.decode(codes)
    assert torch.equal(full, made.decode(codes))
    hop, first = made.hop_length, period + 40
    torch.testing.assert_close(made.decode(codes[:, :, :first]), full[..., : first * hop], atol=1e-6, rtol=0)
    chunk = full[..., first * hop:]
    aligned = made.decode(codes[:, :, period:])[..., (first - period) * hop:]  # from the period's first frame
    torch.testing.assert_close(aligned, chunk, atol=1e-5, rtol=0)
    begin = first - context  # enough context, but the oscillators would restart their phase mid-period
    unaligned = made.decode(codes[:, :, begin:])[..., context * hop:]
    assert (unaligned - chunk).abs().max() > 1e-3
    latent = torch.zeros(1, 16, 5, requires_grad=True)
    assert made.decode_latent(latent).requires_grad and made.decode_latent(latent).shape == (1, 1, 5 * hop)


def test_options_are_checked_saved_and_leave_older_files_hash_alone(tmp_path):
    with pytest.raises(PianogenError, match="needs decoder = \"sines\""):
        pianogen.get_codec("soundstream", **TINY, encoder="magnitude")
    with pytest.raises(PianogenError, match="'decoder' must be one of conv, sines"):
        pianogen.get_codec("soundstream", **TINY, decoder="wavenet")
    assert "encoder" not in SoundStreamConfig(**TINY).to_json() and "decoder" not in SoundStreamConfig(**TINY).to_json()
    made = codec(**PHASE_FREE)
    made.save(tmp_path / "phase_free.safetensors")
    loaded = load_soundstream(tmp_path / "phase_free.safetensors").eval()
    assert loaded.config.encoder == "magnitude" and loaded.config.decoder == "sines"
    wav = steady_tone(60, SR, 0.5)[None, None]
    assert torch.equal(loaded.encode(wav), made.encode(wav))
    assert torch.equal(loaded.decode(made.encode(wav)), made.decode(made.encode(wav)))


def test_the_trainer_trains_the_phase_free_codec_and_clips_its_gradients(recipe_file, isolated_home):  # noqa: F811
    """codec_piano's settings (magnitude encoder, sine bank, no waveform L1, grad_clip) through the real trainer.
    A clip far below the gradient's norm leaves Adam's first steps at eps scale: the weights barely move."""
    phase_free = ["codec.encoder=magnitude", "codec.decoder=sines", "codec_train.wav_weight=0", "codec_train.steps=6",
                  "codec_train.log_every=3", "codec_train.save_every=6"]
    moved = {}
    for clip in (0.0, 1e-12):
        out = train_codec(pianogen.load_recipe(str(recipe_file), [
            *phase_free, f"codec_train.grad_clip={clip}", f"codec_train.out=$PIANOGEN_HOME/clip{clip}.safetensors"]),
            progress=False)
        rows = [json.loads(line) for line in metrics_path(out).read_text().splitlines()]
        assert [r["step"] for r in rows] == [3, 6] and all(math.isfinite(r["loss"]) for r in rows)
        trained = load_soundstream(out)
        assert trained.config.encoder == "magnitude" and trained.decoder_alignment_frames() == 800
        torch.manual_seed(0)
        fresh = pianogen.get_codec("soundstream", **{k: v for k, v in json.loads(trained.config.to_json()).items()})
        moved[clip] = max(float((a - b).detach().abs().max()) for a, b in
                          zip(trained.decoder.parameters(), fresh.decoder.parameters()))
    assert moved[1e-12] < 0.01 * moved[0.0]
