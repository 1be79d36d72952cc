"""Faults below the CLI: a full disk during a checkpoint, file modes, killed corpus writers, NaN audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

from pianogen.errors import PianogenError
from pianogen.training import checkpoint

# A real short write: RLIMIT_FSIZE makes the kernel refuse to grow any file past the limit (EFBIG),
# which is what a full disk or quota looks like to torch.save (it raises RuntimeError, not OSError).
DISK_FULL = """
    import json, resource, signal, sys
    from pathlib import Path

    import torch

    from pianogen.training import checkpoint
    from pianogen.errors import PianogenError

    root = Path(sys.argv[1])
    model = torch.nn.Linear(8, 8)
    checkpoint.save(root, "last", model, {"step": 1}, {"optimizer": {}})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG back instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    big_state = {"optimizer": {"exp_avg": torch.zeros(100_000)}}  # 400 kB: past the limit
    try:
        checkpoint.save(root, "last", model, {"step": 2}, big_state)
    except PianogenError as err:
        print(json.dumps({"error": str(err)}))
"""


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(DISK_FULL), str(tmp_path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error.startswith(f"could not write checkpoint {tmp_path / 'last'}: ")
    assert "the previous 'last' checkpoint is kept (free disk space, then continue with --resume)" in error
    assert checkpoint.load_meta(tmp_path / "last")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no last.new left behind


def test_checkpoint_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = checkpoint.save(tmp_path, "best", torch.nn.Linear(2, 2), {"step": 0}, {"x": torch.zeros(1)})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert modes == {"model.safetensors": 0o644, "trainer_state.pt": 0o644, "meta.json": 0o644}


def test_a_model_of_another_size_names_the_tensor_when_no_config_says_why(tmp_path):
    path = checkpoint.save(tmp_path, "best", torch.nn.Linear(4, 3), {"step": 0})
    with pytest.raises(PianogenError, match=r"weight is \(3, 4\) in the checkpoint but \(5, 4\) in the model"):
        checkpoint.load_weights(path, torch.nn.Linear(4, 5))


def test_killed_corpus_writers_leave_no_temp_folder_for_long(tmp_path):
    from pianogen_data.synth import write_corpus

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".corpus.tmp{dead}"  # what kill -9 of `data synth` leaves
    live = tmp_path / f".corpus.tmp{os.getppid()}"  # another writer still at work: not ours to remove
    for folder in (stale, live):
        (folder / "2018").mkdir(parents=True)
    write_corpus(tmp_path / "corpus", minutes=0.05, seed=0, progress=False)
    assert not stale.exists() and live.exists()
    assert (tmp_path / "corpus/maestro-v3.0.0.csv").is_file()


def test_nan_training_audio_is_skipped_with_a_note_or_stops_when_strict(tmp_path):
    from pianogen.data.audio import load_or_skip

    wav = np.zeros(800, np.float32)
    wav[400:] = np.inf
    sf.write(tmp_path / "bad.wav", wav, 8000, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"400 NaN or infinite samples \(the first at 0.050 s\).*data.strict"):
        assert load_or_skip(tmp_path / "bad.wav", 8000) is None
    with pytest.raises(PianogenError, match="NaN or infinite samples"):
        load_or_skip(tmp_path / "bad.wav", 8000, strict=True)


def test_a_full_disk_before_any_checkpoint_does_not_advise_resuming(tmp_path):
    script = DISK_FULL.replace('checkpoint.save(root, "last", model, {"step": 1}, {"optimizer": {}})', "pass")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(tmp_path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error.startswith(f"could not write checkpoint {tmp_path / 'last'}: trainer_state.pt: the write failed "
                            f"(no space left on the device, or a file size limit); there is no earlier 'last' "
                            f"checkpoint to resume from (free disk space, then train again)"), error
    assert "--resume" not in error and "Pytorch" not in error and "\n" not in error
    assert list(tmp_path.iterdir()) == []


def _file_size_limit(limit: int):
    """For subprocess: the kernel refuses to grow any file past ``limit`` bytes (EFBIG), as a full disk would."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "existing folder"])
def test_a_full_disk_during_generate_names_the_file_and_leaves_no_half_generation(trained_run, tmp_path, existing):
    out = tmp_path / "takes"
    if existing:  # the page's job folder: it holds the upload, which must stay as it was
        out.mkdir()
        (out / "upload_mine.wav").write_bytes(b"the pianist's file")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PIANOGEN_HOME": str(trained_run.parent / "home"),
           "MPLCONFIGDIR": str(tmp_path / "mpl")}
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env, check=True)  # its cache first
    done = subprocess.run([sys.executable, "-m", "pianogen", "generate", str(trained_run), "--prompt", "test:0",
                           "--out", str(out), "--device", "cpu"], capture_output=True, text=True, env=env,
                          preexec_fn=_file_size_limit(12_000), timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: could not write {out}/") and lines[0].endswith(": File too large"), lines
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "mpl") == (["takes"] if existing else [])
    if existing:
        assert [p.name for p in out.iterdir()] == ["upload_mine.wav"]
