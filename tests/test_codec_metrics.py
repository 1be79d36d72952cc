"""Judging a codec: codebook health, the Opus anchor, and ``pianogen codec eval``."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import soundfile as sf
import torch

import pianogen
import pianogen.codec_metrics as cm
from pianogen.metrics import reconstruction_metrics
from tests.test_codec_train import piano_like

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 16000


def piano(seconds: float, seed: int) -> torch.Tensor:
    """piano_like at 16 kHz (it is written for 8 kHz: same notes, twice the sample count per second)."""
    return torch.from_numpy(piano_like(seconds * 2, seed))


def test_codebook_health_counts_codes_and_perplexity():
    codes = torch.stack([torch.arange(64) % 16, torch.zeros(64, dtype=torch.long), torch.arange(64) % 2])
    health = cm.codebook_health(codes[None], codebook_size=16)  # [B=1, K=3, T=64]
    assert [h["codes_used"] for h in health] == [16, 1, 2]
    assert [h["used_fraction"] for h in health] == [1.0, 1 / 16, 2 / 16]
    assert health[0]["perplexity"] == pytest.approx(16) and health[1]["perplexity"] == pytest.approx(1)
    warnings = cm.usage_warnings(health, 16)
    assert len(warnings) == 2 and warnings[0].startswith("level 2 uses 1 of 16") and "level 3" in warnings[1]


@pytest.mark.skipif(cm.opus_unavailable_reason() is not None, reason="libsndfile lacks Opus")
def test_opus_roundtrip_is_aligned_and_hits_its_bitrate():
    wav = piano(4.0, 0)
    results = {}
    for kbps in (6, 24, 64):
        est, real = cm.opus_roundtrip(wav, SR, kbps * 1000)
        assert est.shape == wav.shape
        assert 0.75 * kbps < real / 1000 < 1.25 * kbps, (kbps, real)
        results[kbps] = reconstruction_metrics(wav, est, SR)
    assert results[64]["si_sdr"] > 10  # aligned sample for sample: a delay would sink SI-SDR below 0
    assert results[6]["mel_l1"] > results[24]["mel_l1"] > results[64]["mel_l1"]
    _, floor = cm.opus_roundtrip(wav, SR, 2000)  # below Opus's minimum: coded at 6 kbps
    assert 4.5 < floor / 1000 < 7.5
    buf = io.BytesIO()
    sf.write(buf, wav.numpy(), SR, format="OGG", subtype="OPUS")
    assert 0 < cm.opus_packet_bytes(buf.getvalue()) < len(buf.getvalue()) - 19  # OpusHead alone is 19 bytes
    est, _ = cm.opus_roundtrip(wav[: 22050], 22050, 24000)  # a rate Opus does not take goes through 48 kHz
    assert est.shape == (22050,)


def _tiny_codec(tmp_path):
    torch.manual_seed(0)
    codec = pianogen.get_codec("soundstream", sample_rate=SR, channels=4, dim=16, strides=[2, 4, 5, 5], n_levels=4,
                               codebook_size=32, kmeans_iters=5)
    codec.init_codebooks(piano(1.0, 1).reshape(2, 1, -1))
    codec.save(tmp_path / "tiny.safetensors")
    return codec.eval()


def test_evaluate_codec_reports_levels_bitrates_health_and_opus(tmp_path, monkeypatch):
    codec = _tiny_codec(tmp_path)
    wavs = [piano(1.0, 2), piano(1.0, 3)]
    result = cm.evaluate_codec(codec, wavs, levels=(1, 2, "all"))
    assert list(result["by_levels"]) == ["1", "2", "all"] and result["seconds"] == pytest.approx(2.0)
    assert result["by_levels"]["1"]["kbps"] == pytest.approx(0.4) and result["by_levels"]["all"]["kbps"] == 1.6
    assert len(result["codebooks"]) == 4 and all(1 <= h["codes_used"] <= 32 for h in result["codebooks"])
    opus = result["opus"]
    if cm.opus_unavailable_reason() is None:
        assert list(opus) == ["codec bitrate", "2x codec bitrate"]
        assert opus["codec bitrate"]["target_kbps"] == 6.0  # 1.6 kbps is below Opus's floor
        assert opus["2x codec bitrate"]["mel_l1"] < opus["codec bitrate"]["mel_l1"] + 0.2
    table = "\n".join(cm.markdown_tables(result, 32))
    assert "codec, all levels | 1.6 |" in table and "| 4 |" in table
    # a libsndfile without Opus: the anchor says so instead of failing
    monkeypatch.setattr(sf, "available_subtypes", lambda fmt=None: {"VORBIS": "Vorbis"})
    result = cm.evaluate_codec(codec, wavs[:1], levels=(1,))
    assert "without Opus" in result["opus"]["unavailable"]
    assert "| Opus | unavailable | libsndfile" in "\n".join(cm.markdown_tables(result, 32))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pianogen", "codec", "eval", *args], capture_output=True, text=True)


def test_codec_eval_command(tmp_path, tiny_corpus):
    _tiny_codec(tmp_path)
    ckpt = str(tmp_path / "tiny.safetensors")
    sf.write(tmp_path / "a.wav", piano(1.0, 4).numpy(), SR)
    done = _cli(ckpt, str(tmp_path / "a.wav"), "--json", "--no-opus")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["codec"]["name"] == "soundstream" and result["seconds"] == pytest.approx(1.0)
    assert result["opus"] == {"unavailable": "not asked for"} and len(result["codebooks"]) == 4
    done = _cli(ckpt, "--recipe", "demo", "--set", f"data.root={tiny_corpus}", "--set", "data.source=maestro",
                "--split", "train", "--pieces", "1", "--seconds", "0.5", "--no-opus")
    assert done.returncode == 0, done.stderr
    assert "| level | codes used (of 32) |" in done.stdout and "(0.5 s of audio)" in done.stdout
    for args, message in [((ckpt,), "not both and not neither"),
                          ((str(tmp_path / "none.safetensors"), str(tmp_path / "a.wav")), "not found"),
                          ((ckpt, str(tmp_path / "missing.wav")), "cannot read audio file")]:
        done = _cli(*args)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
