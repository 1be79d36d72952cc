"""One generation pipeline, three sinks: whole files, chunks as they come (staged too), tensors in memory."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from pianogen.errors import PianogenError
from pianogen.generation.generate import GenerationRequest, generate
from pianogen.generation.sinks import MemorySink
from pianogen.generation.stream import ChunkSink, stream_generate


def request(out, **kw) -> GenerationRequest:
    settings = dict(prompt="test:0", seconds=0.3, out=out, prompt_seconds=0.4, top_k=20, seed=3)
    settings.update(kw)
    return GenerationRequest(**settings)


def stages(parent, out):
    return sorted(parent.glob(f".{out.name}.tmp*"))


def test_streaming_grows_its_parts_in_the_staging_folder_and_moves_in_whole(trained_run, tmp_path):
    out = tmp_path / "s"
    seen = []

    def on_chunk(audio, rate):  # while streaming: nothing in out yet, the part file grows in the stage
        (stage,) = stages(tmp_path, out)
        seen.append((out.exists(), (stage / "continuation_0.wav.part").stat().st_size, audio.shape[-1]))

    report = stream_generate(trained_run, request(out, seconds=0.6), progress=False, on_chunk=on_chunk)
    assert len(seen) >= 3 and not any(exists for exists, _, _ in seen)
    sizes = [size for _, size, _ in seen]
    assert sizes == sorted(sizes) and sizes[-1] - sizes[0] == 2 * sum(n for _, _, n in seen[1:])  # 16-bit
    assert stages(tmp_path, out) == [] and not list(out.glob("*.part"))
    assert set(report["files"]) == {p.name for p in out.iterdir()}
    assert report["stream"]["time_to_first_audio_s"] > 0 and report["stream"]["postfiltered"]


def test_a_failure_mid_stream_leaves_no_output_and_no_stage(trained_run, tmp_path):
    out = tmp_path / "s"

    def full_disk(audio, rate):
        raise PianogenError("could not write: No space left on device")

    with pytest.raises(PianogenError, match="No space left"):
        stream_generate(trained_run, request(out), progress=False, on_chunk=full_disk)
    assert not out.exists() and stages(tmp_path, out) == []


def test_every_sink_reports_in_one_shape(trained_run, tmp_path):
    whole = generate(trained_run, request(tmp_path / "g"), progress=False)
    streamed = stream_generate(trained_run, request(tmp_path / "s"), progress=False)
    memory = MemorySink()
    kept = generate(trained_run, request(tmp_path / "m"), progress=False, sink=memory)
    assert set(whole) == set(streamed) == set(kept)
    assert whole["stream"] is None and streamed["stream"]["chunk_frames"] == 50  # 0.25 s at 200 frames/s
    assert json.loads((tmp_path / "s/generation.json").read_text())["settings"] == whole["settings"]
    assert kept["files"] == [] and kept["note_metrics"] is None and not (tmp_path / "m").exists()
    # the same codes and audio whatever the sink: what continuation_0.wav holds (16-bit PCM rounding)
    for folder in ("g", "s"):
        written, rate = sf.read(tmp_path / folder / "continuation_0.wav")
        assert rate == 8000
        np.testing.assert_allclose(written, memory.generated.continuations[0].numpy(), atol=1 / 32768 + 1e-6)


def test_a_killed_generations_stage_is_removed_by_the_next(trained_run, tmp_path):
    out = tmp_path / "g"
    dead = tmp_path / f".{out.name}.tmp{2**22 + 12345}"  # beyond pid_max on Linux: no such process
    (dead / "full_0.wav").parent.mkdir()
    (dead / "full_0.wav").write_bytes(b"half")
    generate(trained_run, request(out), progress=False)
    assert not dead.exists() and (out / "take_0.wav").is_file()


def test_chunk_sink_hands_every_sample_once(trained_run, tmp_path):
    chunks = []
    sink = ChunkSink(chunk_seconds=0.1, first_chunk_seconds=0.05, on_chunk=lambda audio, rate: chunks.append(audio))
    generate(trained_run, request(tmp_path / "c", num=2), progress=False, sink=sink)
    streamed = np.concatenate(chunks, axis=-1)
    assert streamed.shape == (2, 60 * 40) and [c.shape[-1] for c in chunks][:2] == [10 * 40, 20 * 40]
    on_disk = np.stack([sf.read(tmp_path / f"c/continuation_{i}.wav")[0] for i in range(2)])
    np.testing.assert_allclose(streamed, on_disk, atol=2 / 32768)


def test_out_in_use_by_another_process_stage_is_kept(trained_run, tmp_path):
    out = tmp_path / "g"
    live = tmp_path / f".{out.name}.tmp{os.getppid()}"  # our parent is alive: its stage is not ours to remove
    live.mkdir()
    generate(trained_run, request(out), progress=False)
    assert live.is_dir()
