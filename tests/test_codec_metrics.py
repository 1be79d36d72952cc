"""Judging a codec: codebook health, the Opus anchor (opusenc), note F1, rate-distortion and ``pianogen codec eval``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import soundfile as sf
import torch
import torchaudio

import pianogen
import pianogen.evaluation.codec_metrics as cm
import pianogen.evaluation.opus as cm_opus
from pianogen.evaluation.codec_notes import clip_midi_notes
from pianogen.evaluation.opus import opus_roundtrip, opus_unavailable_reason
from pianogen.evaluation.rate_distortion import rate_distortion_table
from pianogen.interfaces import Codec
from pianogen.training.metrics import reconstruction_metrics
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


needs_opusenc = pytest.mark.skipif(opus_unavailable_reason() is not None, reason="opus-tools not installed")


@needs_opusenc
def test_opusenc_roundtrip_is_aligned_measures_its_bitrate_and_improves_with_it():
    wav = piano(4.0, 0)
    mel, measured = {}, {}
    for kbps in (6, 12, 16):
        est, real = opus_roundtrip(wav, SR, kbps, mode="cvbr")
        assert est.shape == wav.shape
        measured[kbps], mel[kbps] = real / 1000, reconstruction_metrics(wav, est, SR)
    assert all(0.75 * k < measured[k] < 1.25 * k for k in (6, 12)), measured
    assert mel[6]["mel_l1"] > mel[12]["mel_l1"] > mel[16]["mel_l1"]
    assert mel[16]["si_sdr"] > 10  # aligned sample for sample: a delay of a few samples would sink SI-SDR below 0
    est, _ = opus_roundtrip(wav[:22050], 22050, 8)  # any rate goes through 48 kHz and comes back
    assert est.shape == (22050,)


@needs_opusenc
@pytest.mark.skipif(shutil.which("opusinfo") is None, reason="opusinfo not installed")
def test_measured_opus_bitrate_agrees_with_opusinfo(tmp_path):
    """Default VBR may spend far more than asked on tonal piano; the bitrate reported must be what the packets
    hold, as opusinfo counts it (its "w/o overhead" figure leaves out the Ogg pages, as we do)."""
    x48 = torchaudio.functional.resample(piano(4.0, 1), SR, 48000)
    sf.write(tmp_path / "in.wav", x48.numpy(), 48000, subtype="FLOAT")
    subprocess.run(["opusenc", "--quiet", "--music", "--bitrate", "12", str(tmp_path / "in.wav"),
                    str(tmp_path / "c.opus")], check=True)
    info = subprocess.run(["opusinfo", str(tmp_path / "c.opus")], capture_output=True, text=True).stdout
    expected = float(re.search(r"w/o overhead: ([0-9.]+) kbit/s", info).group(1))
    ours = cm_opus.opus_packet_bytes((tmp_path / "c.opus").read_bytes()) * 8 / 4.0 / 1000
    assert ours == pytest.approx(expected, rel=0.01) and ours != pytest.approx(12, rel=0.25)  # VBR overshoots here
    _, reported = opus_roundtrip(piano(4.0, 1), SR, 12)
    assert reported / 1000 == pytest.approx(expected, rel=0.02)


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
    result = cm.evaluate_codec(codec, wavs, levels=(1, 2, "all"), opus_kbps=(6, 16))
    assert list(result["by_levels"]) == ["1", "2", "all"] and result["seconds"] == pytest.approx(2.0)
    assert result["by_levels"]["1"]["kbps"] == pytest.approx(0.4) and result["by_levels"]["all"]["kbps"] == 1.6
    assert len(result["codebooks"]) == 4 and all(1 <= h["codes_used"] <= 32 for h in result["codebooks"])
    assert "notes" not in result and "note_f1" not in result["by_levels"]["1"]  # notes only when asked
    opus = result["opus"]
    if opus_unavailable_reason() is None:
        assert list(opus) == ["6 kbps", "16 kbps"] and opus["6 kbps"]["target_kbps"] == 6.0
        assert opus["6 kbps"]["mode"] == "vbr" and opus["16 kbps"]["mel_l1"] < opus["6 kbps"]["mel_l1"]
    table = "\n".join(cm.markdown_tables(result, 32))
    assert "codec, all levels | 1.6 |" in table and "| 4 |" in table
    # opusenc not on PATH: the anchor says so in one line and the rest runs
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = cm.evaluate_codec(codec, wavs[:1], levels=(1,))
    assert result["opus"] == {"unavailable": "opusenc not found (apt-get install opus-tools)"}
    assert list(result["by_levels"]) == ["1"]
    lines = [line for line in cm.markdown_tables(result, 32) if "Opus" in line]
    assert lines == ["| Opus: unavailable: opusenc not found (apt-get install opus-tools) | | | | |"]


class Pcm16(Codec):
    """16-bit PCM as a one-level "codec" (a code per sample): decoding gives the input back, or with
    ``drop_second_half`` silence after the clip's midpoint (every note there lost)."""

    sample_rate, frame_rate, hop_length, n_levels, codebook_size = SR, float(SR), 1, 1, 65536

    def __init__(self, drop_second_half: bool = False) -> None:
        super().__init__()
        self.drop_second_half = drop_second_half
        self.unused = torch.nn.Parameter(torch.zeros(()))  # evaluation reads the device from a parameter

    def encode(self, wav):
        return (wav.clamp(-1, 32767 / 32768) * 32768).round().long() + 32768  # [B, 1, S]

    def decode(self, codes):
        wav = (codes[:, :1].float() - 32768) / 32768
        if self.drop_second_half:
            wav[..., wav.shape[-1] // 2:] = 0
        return wav

    def codebooks(self):
        return torch.zeros(1, 65536, 1)

    def identity(self):
        return {"name": "pcm16", "config_hash": "-"}


def test_note_f1_is_one_for_identity_and_falls_when_notes_are_dropped(tiny_corpus):
    """The real basic_pitch transcriber on the synthetic corpus's audio and its MIDI, first 3 s of 2 pieces."""
    paths = sorted(tiny_corpus.glob("*/*.wav"))[:2]
    wavs = [cm.clip(path, SR, 3.0) for path in paths]
    midi = [clip_midi_notes(path, 3.0) for path in paths]
    assert all(m for m in midi), "the synthetic corpus has MIDI beside its audio"
    same = cm.evaluate_codec(Pcm16(), wavs, levels=(1,), opus=False, notes=True, midi=midi)
    half = cm.evaluate_codec(Pcm16(drop_second_half=True), wavs, levels=(1,), opus=False, notes=True, midi=midi)
    assert same["notes"]["transcriber"] == "basic_pitch" and same["notes"]["input_notes"] > 10
    assert same["by_levels"]["1"]["note_f1"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    dropped = half["by_levels"]["1"]["note_f1"]
    assert dropped["precision"] > 0.8 and 0.3 < dropped["recall"] < 0.7 and dropped["f1"] < 0.85
    # against the notes played: identity scores what the transcriber scores on the input, dropping loses half
    assert same["by_levels"]["1"]["note_f1_midi"] == same["notes"]["input_note_f1_midi"]
    assert same["notes"]["input_note_f1_midi"]["f1"] > 0.5 and same["notes"]["midi_notes"] > 10
    assert half["by_levels"]["1"]["note_f1_midi"]["recall"] < 0.7 * same["notes"]["input_note_f1_midi"]["recall"]
    table = "\n".join(rate_distortion_table(half))
    mel = half["by_levels"]["1"]["mel_l1"]
    assert f"| codec | codec, 1 level | 256.00 | {mel:.3f} | {dropped['f1']:.3f} (MIDI" in table


def test_a_transcriber_that_fails_to_load_leaves_one_warning(tmp_path):
    result = cm.evaluate_codec(Pcm16(), [piano(0.5, 0)], levels=(1,), opus=False, notes=True,
                               transcriber="no_such_transcriber")
    reason = result["notes"]["unavailable"]
    assert "no_such_transcriber" in reason and "\n" not in reason
    assert result["by_levels"]["1"]["note_f1"] == {"unavailable": reason}
    assert result["warnings"][-1] == f"no note F1: {reason}" and result["by_levels"]["1"]["si_sdr"] > 60


def _cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "pianogen", "codec", "eval", *args], capture_output=True, text=True,
                          env={**os.environ, **env})


def test_codec_eval_command(tmp_path, tiny_corpus):
    _tiny_codec(tmp_path)
    ckpt = str(tmp_path / "tiny.safetensors")
    sf.write(tmp_path / "a.wav", piano(1.0, 4).numpy(), SR)
    done = _cli(ckpt, str(tmp_path / "a.wav"), "--json", "--opus-kbps", "6", "--out", str(tmp_path / "rd"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["codec"]["name"] == "soundstream" and result["seconds"] == pytest.approx(1.0)
    assert len(result["codebooks"]) == 4 and result["notes"]["transcriber"] == "basic_pitch"
    rows = [*result["by_levels"].values(), *result["opus"].values()]
    assert len(rows) == 4 + (opus_unavailable_reason() is None)  # 1, 2, 4, all levels and Opus at 6 kbps
    assert all(set(row["note_f1"]) == {"precision", "recall", "f1"} for row in rows)
    assert "note_f1_midi" not in rows[0]  # a lone wav has no MIDI beside it
    assert json.loads((tmp_path / "rd/codec_eval.json").read_text()) == result
    assert (tmp_path / "rd/rate_distortion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| codec | codec, all levels | 1.60 |" in (tmp_path / "rd/rate_distortion.md").read_text()
    # a recipe's corpus with MIDI beside its audio, opusenc not on PATH
    (tmp_path / "bin").mkdir()
    done = _cli(ckpt, "--recipe", "demo", "--set", f"data.root={tiny_corpus}", "--set", "data.source=maestro",
                "--split", "train", "--pieces", "1", "--seconds", "0.5", PATH=str(tmp_path / "bin"))
    assert done.returncode == 0, done.stderr
    assert "| level | codes used (of 32) |" in done.stdout and "(0.5 s of audio)" in done.stdout
    assert "| Opus: unavailable: opusenc not found (apt-get install opus-tools) |" in done.stdout
    assert "## Rate against distortion" in done.stdout and " (MIDI " in done.stdout
    assert re.search(r"`basic_pitch` heard \d+ notes in the input .* notes of the MIDI, where the input itself "
                     r"scores [01]\.\d{3}\.", done.stdout)
    for args, message in [((ckpt,), "not both and not neither"),
                          ((str(tmp_path / "none.safetensors"), str(tmp_path / "a.wav")), "not found"),
                          ((ckpt, str(tmp_path / "missing.wav")), "cannot read audio file")]:
        done = _cli(*args)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kbps, message", [("3", "opusenc takes 6 to 256 kbps"),
                                           ("6,x", "numbers separated by commas")])
def test_codec_eval_rejects_bad_opus_bitrates_in_one_line(tmp_path, capsys, kbps, message):
    from pianogen.commands.cli import main

    _tiny_codec(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["codec", "eval", str(tmp_path / "tiny.safetensors"), str(tmp_path / "a.wav"), "--opus-kbps", kbps])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("error: --opus-kbps") and message in err
    assert len(err.strip().splitlines()) == 1
