"""``pianogen data get maestro`` against a real HTTP server on 127.0.0.1 serving a MAESTRO-layout zip."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import pianogen
from pianogen.errors import PianogenError
from pianogen.fetch.maestro import get_maestro
from tests.local_server import LocalServer
from tests.maestro_zip import build_zip, data_offset, span

ZIP = "/maestro-v3.0.0.zip"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from pianogen_data.synth import write_corpus

    return write_corpus(tmp_path_factory.mktemp("synth") / "m", minutes=0.3, seed=0, progress=False)


@pytest.fixture(scope="module")
def archive(corpus):
    return build_zip(corpus)


def audio_of(audio: dict[str, bytes], year: int) -> dict[str, bytes]:
    return {k: v for k, v in audio.items() if k.startswith(f"{year}/")}


def cli(*args: str, limit_bytes: int | None = None, **popen) -> subprocess.Popen:
    def limit() -> None:  # a real full disk: writes past this size fail with EFBIG (Python ignores SIGXFSZ)
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen([sys.executable, "-m", "pianogen", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit if limit_bytes else None, **popen)


def one_line_error(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def complete_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` a reader would take as data (hidden scratch files excluded)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def test_only_the_asked_years_are_fetched_then_nothing_again(archive, tmp_path, capsys):
    data, audio = archive
    root = tmp_path / "maestro"
    with LocalServer({ZIP: data}) as server:
        plan = get_maestro(root, [2018], url=server.url + ZIP, dry_run=True, progress=False)
        assert not root.exists() and len(plan.todo) == 3
        assert "3 files to fetch" in capsys.readouterr().out
        planned = server.served[ZIP]  # the directory and the CSV, read into memory

        get_maestro(root, [2018], url=server.url + ZIP, progress=False)
        got = complete_files(root)
        assert {k: v for k, v in got.items() if k.endswith(".wav")} == audio_of(audio, 2018)
        assert "maestro-v3.0.0.csv" in got and not (root / ".partial").exists()
        # no byte of another year's members was asked for, except what the directory's suffix read covers
        tail = len(data) - 65536
        for name in audio_of(audio, 2017) | audio_of(audio, 2019):
            start, end = span(data, name)
            for a, b in server.ranges_asked(ZIP):
                assert b < start or a >= end or a >= tail, (name, a, b)
        wanted = sum(span(data, n)[1] - span(data, n)[0] for n in audio_of(audio, 2018))
        first = server.served[ZIP] - planned
        assert first <= wanted + 65536 + 1024 < len(data) / 2

        again = get_maestro(root, [2018], url=server.url + ZIP, progress=False)
        assert not again.todo and server.served[ZIP] - first - planned <= 65536  # the directory only
    pieces = pianogen.get_data_source("maestro", root=str(root), years=[2018]).pieces()
    assert sorted(p.audio_filename for p in pieces) == sorted(audio_of(audio, 2018))


def test_a_local_zip_and_an_unknown_year(archive, tmp_path):
    data, audio = archive
    path = tmp_path / "maestro-v3.0.0.zip"
    path.write_bytes(data)
    get_maestro(tmp_path / "m", [2017, 2019], url=str(path), progress=False)
    wavs = {k: v for k, v in complete_files(tmp_path / "m").items() if k.endswith(".wav")}
    assert wavs == audio_of(audio, 2017) | audio_of(audio, 2019)
    with pytest.raises(PianogenError, match=r"no year\(s\) \[2004\]; it has 2017, 2018, 2019"):
        get_maestro(tmp_path / "m", [2004], url=str(path), progress=False)


def test_a_csv_naming_files_outside_the_folder_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("maestro-v3.0.0/maestro-v3.0.0.csv", "year,audio_filename\n2018,../../evil.wav\n")
        z.writestr("maestro-v3.0.0/../../evil.wav", b"x")
    with pytest.raises(PianogenError, match=r"names \.\./\.\./evil.wav, outside the MAESTRO folder"):
        get_maestro(tmp_path / "a" / "m", [2018], url=str(path), progress=False)
    assert not list(tmp_path.rglob("evil.wav"))


def test_killed_mid_member_then_resumed_from_the_byte_it_reached(archive, tmp_path):
    data, audio = archive
    root = tmp_path / "maestro"
    first = sorted(audio_of(audio, 2018))[0]
    with LocalServer({ZIP: data}) as server:
        server.stall_after = 200_000  # the first member response stops here and hangs
        proc = cli("data", "get", "maestro", "--years", "2018", "--root", str(root), "--url", server.url + ZIP)
        assert server.stalled.wait(120)
        parts = root / ".partial" / str(len(data))
        deadline = time.monotonic() + 120
        while sum(p.stat().st_size for p in parts.glob("*")) < 200_000 and time.monotonic() < deadline:
            time.sleep(0.05)  # wait for the client to write what it received; not a timed assertion
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert complete_files(root) == {}  # nothing half-written under a final name, and no CSV yet
        server.release.set()

        server.requests.clear()
        get_maestro(root, [2018], url=server.url + ZIP, progress=False)
    start, end = span(data, first)
    resumed = [a for a, b in server.ranges_asked(ZIP) if start <= a < end]
    assert resumed and min(resumed) >= start + 200_000  # continued, not restarted
    got = complete_files(root)
    assert {k: v for k, v in got.items() if k.endswith(".wav")} == audio_of(audio, 2018)
    assert sorted(p.name for p in root.rglob(".*")) == []  # the killed run's temp and partial files are gone


def test_a_dropped_connection_is_resumed_within_the_run(archive, tmp_path):
    data, audio = archive
    first = sorted(audio_of(audio, 2018))[0]
    start, end = span(data, first)
    with LocalServer({ZIP: data}) as server:
        server.drop_after = 300_000
        get_maestro(tmp_path / "m", [2018], url=server.url + ZIP, progress=False)
        asked = sorted(a for a, _ in server.ranges_asked(ZIP) if start <= a < end)
    assert asked[0] == start and len(asked) == 2 and asked[1] >= start + 300_000
    assert (tmp_path / "m" / first).read_bytes() == audio[first]


def test_a_corrupted_transfer_is_fetched_again(archive, tmp_path):
    data, audio = archive
    name = sorted(audio_of(audio, 2018))[1]
    with LocalServer({ZIP: data}) as server:
        server.corrupt_once = {data_offset(data, name) + 5000}
        get_maestro(tmp_path / "m", [2018], url=server.url + ZIP, progress=False)
        start, _ = span(data, name)
        assert [a for a, _ in server.ranges_asked(ZIP)].count(start) == 2
    assert (tmp_path / "m" / name).read_bytes() == audio[name]


def test_a_member_with_a_bad_crc_is_reported_and_not_kept(corpus, tmp_path):
    name = "2018/PianoGen-Synth_s0_001.wav"
    data, audio = build_zip(corpus, stored=name, flip=name)
    root = tmp_path / "m"
    with LocalServer({ZIP: data}) as server, pytest.raises(PianogenError, match=f"{name} .* corrupt twice.*CRC"):
        get_maestro(root, [2018], url=server.url + ZIP, progress=False)
    got = complete_files(root)
    assert name not in got and not list(root.rglob(".*.tmp*"))
    assert all(got[k] == audio[k] for k in got if k.endswith(".wav"))  # the members before it are good


def test_a_server_without_range_support_is_one_line(archive, tmp_path):
    data, _ = archive
    with LocalServer({ZIP: data}) as server:
        server.ranges = False
        line = one_line_error(cli("data", "get", "maestro", "--root", str(tmp_path / "m"), "--url", server.url + ZIP))
    assert "does not answer HTTP range requests" in line and "--url" in line
    assert not (tmp_path / "m").exists()


def test_no_network_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}{ZIP}"
    line = one_line_error(cli("data", "get", "maestro", "--root", str(tmp_path / "m"), "--url", url))
    assert f"cannot download {url}: Connection refused; check the network" in line
    assert not (tmp_path / "m").exists()


def test_unwritable_root_is_one_line(archive, tmp_path):
    data, _ = archive
    (tmp_path / "file").write_text("not a folder")
    with LocalServer({ZIP: data}) as server:
        line = one_line_error(cli("data", "get", "maestro", "--root", str(tmp_path / "file" / "m"),
                                  "--url", server.url + ZIP))
    assert f"cannot write {tmp_path / 'file' / 'm'}: Not a directory" in line


def test_full_disk_is_one_line_and_leaves_nothing_looking_complete(archive, tmp_path):
    data, audio = archive
    root = tmp_path / "m"
    with LocalServer({ZIP: data}) as server:
        line = one_line_error(cli("data", "get", "maestro", "--root", str(root), "--url", server.url + ZIP,
                                  limit_bytes=300_000, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}))
        assert line.startswith("error: disk full while writing")
        assert complete_files(root) == {}
        get_maestro(root, [2018], url=server.url + ZIP, progress=False)  # space freed: the rerun completes
    assert {k: v for k, v in complete_files(root).items() if k.endswith(".wav")} == audio_of(audio, 2018)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MB file system (tmpfs), where this machine lets us mount one."""
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs privileges this machine does not give")
    yield where
    subprocess.run(["umount", str(where)], check=True)


def test_a_disk_too_small_is_one_line_before_any_audio_is_fetched(archive, tiny_disk):
    data, _ = archive
    with LocalServer({ZIP: data}) as server:
        with pytest.raises(PianogenError, match=r"has 1\.0 MB free but the fetch needs 3\.\d MB"):
            get_maestro(tiny_disk / "m", [2018], url=server.url + ZIP, progress=False)
        assert server.served[ZIP] < 70_000  # the directory and the CSV only
    assert complete_files(tiny_disk) == {}


def test_years_option_parsing(archive, tmp_path):
    data, audio = archive
    path = tmp_path / "maestro-v3.0.0.zip"
    path.write_bytes(data)
    for years in (["2017", "2019"], ["2017,2019"], ["2019", "--years", "2017"]):
        done = cli("data", "get", "maestro", "--years", *years, "--root", str(tmp_path / "m"), "--url", str(path),
                   "--dry-run")
        out, err = done.communicate(timeout=120)
        assert done.returncode == 0, err
        assert "6 files to fetch" in out and "2018/" not in out
    line = one_line_error(cli("data", "get", "maestro", "--years", "twenty", "--root", str(tmp_path)))
    assert "--years takes years like 2018" in line
