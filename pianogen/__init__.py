"""PianoGen: continue piano performances from raw audio with codec tokens and Transformers.

The public API, and all a plugin may import from the host: this package's names, and the
modules ``pianogen.interfaces`` (the contracts), ``pianogen.errors`` and ``pianogen.hookspecs``.
Besides the functions in ``__all__``, the constants ``AUDIO_SUFFIXES`` (audio files a corpus may
hold), ``MAESTRO_CSV`` and ``MAESTRO_COLUMNS`` (MAESTRO v3's metadata file) are public.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from pianogen.paths import atomic_path, atomic_write_bytes, expand, home, safetensors_bytes

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("pianogen")

if TYPE_CHECKING:
    import torch

    from pianogen.interfaces import Codec, DataSource, Loss, Performance, PostFilter, TokenModel, Transcriber
    from pianogen.recipe import Recipe


def get_codec(name: str, **config: Any) -> "Codec":
    """A registered codec by name, e.g. ``get_codec("soundstream", checkpoint="ss.safetensors")``."""
    from pianogen.registry import create

    return create("codec", name, **config)


def get_token_model(name: str, **config: Any) -> "TokenModel":
    from pianogen.registry import create

    return create("token_model", name, **config)


def get_loss(name: str, **config: Any) -> "Loss":
    from pianogen.registry import create

    return create("loss", name, **config)


def get_postfilter(name: str, **config: Any) -> "PostFilter":
    from pianogen.registry import create

    return create("postfilter", name, **config)


def get_data_source(name: str, **config: Any) -> "DataSource":
    from pianogen.registry import create

    return create("data_source", name, **config)


def get_transcriber(name: str = "basic_pitch", **config: Any) -> "Transcriber":
    """A registered note transcriber, e.g. ``get_transcriber("basic_pitch").transcribe(wav, 44100)``."""
    from pianogen.registry import create

    return create("transcriber", name, **config)


def read_midi(path: Any) -> "Performance":
    """A standard MIDI file -> its notes and pedals in seconds (tempo changes applied); PianogenError if unreadable."""
    from pianogen.data.midi import read_midi as _read

    return _read(path)


def write_midi(performance: "Performance", path: Any) -> None:
    """Write a performance as a type-0 standard MIDI file (atomically)."""
    from pianogen.data.midi import write_midi as _write

    _write(performance, path)


def load_tensors(path: Any, what: str) -> Any:
    """``torch.load`` that never unpickles objects: a file holding anything but tensors and plain values is
    refused in one line (PianogenError), as is a file that is no PyTorch checkpoint; ``what`` names the file's
    expected kind in the message ("an encodec state dict")."""
    from pathlib import Path

    from pianogen.training.checkpoint import load_tensors as _load

    return _load(Path(path), what)


def load_audio(path: Any, sample_rate: int) -> "torch.Tensor":
    """An audio file (wav/flac/ogg/mp3) -> FloatTensor[1, S] at ``sample_rate``: channels averaged, resampled."""
    from pianogen.data.audio import load_audio as _load

    return _load(path, sample_rate)


def save_audio(path: Any, wav: Any, sample_rate: int) -> None:
    """Write [S] or [C, S] float audio (a tensor or an array, clipped to [-1, 1]) as 16-bit WAV, atomically."""
    from pianogen.data.audio import save_audio as _save

    _save(path, wav, sample_rate)


def progress_bar(enabled: bool = True, **options: Any) -> Any:
    """The one rich progress bar everything long shows (``units``: count/bytes/none, ``info``: a live text
    field, ``elapsed``, ``transient``); silent when not ``enabled``."""
    from pianogen.progress import progress_bar as _bar

    return _bar(enabled, **options)


def download(url: str, dest: Any, sha256_prefix: str = "", hint: str = "", progress: bool = True) -> Any:
    """``url`` -> ``dest`` resumably (a killed download continues from ``dest.part``), checked against the
    pinned sha256 (prefix) before it is renamed into place; one line (PianogenError) when it cannot be had."""
    from pathlib import Path

    from pianogen.fetch.http import download as _download

    return _download(url, Path(dest), sha256_prefix, hint, progress)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed writer's temp files may be adopted or removed, a live one's not)."""
    from pianogen.paths import pid_alive as _alive

    return _alive(pid)


def mix_parts(entries: list[dict[str, Any]]) -> list[Any]:
    """``data.mix`` (a list of other sources' [data] tables, each with a ``share``), checked -> its parts,
    each with ``label`` (the group of its pieces), ``source``, ``config`` (the keys for its factory, as
    ``get_data_source(part.source, **part.config)`` takes them) and ``share`` (normalised to sum to 1)."""
    from pianogen.recipe import mix_parts as _parts

    return _parts(entries)


def continue_audio(wav: Any, sample_rate: int, seconds: float | None = None, run: Any = "piano", seed: int = 0,
                   **options: Any) -> "tuple[torch.Tensor, int]":
    """Continue audio in memory, like audiocraft's ``generate_continuation``: ``wav`` a float tensor
    [channels, samples] (or [samples]) at any ``sample_rate`` -> (the continuation alone, FloatTensor[channels,
    samples'], its sample rate: the codec's). ``run``: a built-in run's name (``piano``) or a run folder;
    ``seconds``, ``prompt_seconds``, ``temperature``, ``top_k``, ``top_p``, ``prompt_prior``,
    ``quiet_temperature_scale``, ``ring_out`` default to the run's [generate];
    ``seed`` makes it reproducible. Loaded runs are kept between calls. Nothing is written."""
    from pianogen.generation.continuation import continue_audio as _continue

    return _continue(wav, sample_rate, seconds=seconds, run=run, seed=seed, **options)


_CONSTANTS = {"AUDIO_SUFFIXES": ("pianogen.data.audio", "AUDIO_SUFFIXES"),
              "MAESTRO_CSV": ("pianogen.fetch.maestro", "MAESTRO_CSV"),
              "MAESTRO_COLUMNS": ("pianogen.fetch.maestro", "MAESTRO_COLUMNS")}


def __getattr__(name: str) -> Any:
    """The public constants, imported on first use (their modules pull in torch and numpy)."""
    if name not in _CONSTANTS:
        raise AttributeError(f"module 'pianogen' has no attribute {name!r}")
    import importlib

    module, attr = _CONSTANTS[name]
    return getattr(importlib.import_module(module), attr)


def load_recipe(path: str, overrides: list[str] | tuple[str, ...] = ()) -> "Recipe":
    """Read a TOML recipe (a path or a built-in recipe name) and apply ``key=value`` overrides."""
    from pianogen.recipe import load_recipe as _load

    return _load(path, overrides)


__all__ = [
    "hookimpl", "get_codec", "get_token_model", "get_loss", "get_postfilter", "get_data_source",
    "get_transcriber", "read_midi", "write_midi", "load_tensors", "load_recipe",
    "expand", "home", "atomic_path", "atomic_write_bytes", "safetensors_bytes", "load_audio", "save_audio",
    "progress_bar", "download", "pid_alive", "mix_parts", "continue_audio",
]
