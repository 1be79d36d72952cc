"""Audio -> token cache: chunked encoding, overlap trimming and stitching, one uint16 stream per piece.

Cache layout under ``$PIANOGEN_HOME/tokens/<key>/`` (key = hash of codec identity + the data
settings that change tokens, so recipes that differ only in the model share it)::

    manifest.json      codec {name, config_hash, identity}, frame_rate, hop_length, levels,
                       codebook_size, sample_rate, data {...}, pieces [{audio_filename, split,
                       frames, file, title}], skipped [audio_filename]
    <stem>-<hash>.npy  uint16 [levels, frames] per piece, written atomically

A piece whose .npy exists is never encoded again, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianogen.data.audio import audio_seconds, load_or_skip
from pianogen.data.sources import open_source, source_config
from pianogen.errors import PianogenError
from pianogen.interfaces import Codec, Piece
from pianogen.paths import atomic_write_bytes, expand, home
from pianogen.progress import progress_bar
from pianogen.recipe import DataConfig, mix_parts

MANIFEST = "manifest.json"
NOT_KEYED = {"skip_missing", "strict"}  # choose which pieces load, never what their tokens are


def _digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _source_settings(data: DataConfig) -> dict[str, Any]:
    settings = {k: v for k, v in source_config(data).items() if k not in NOT_KEYED}
    if settings.get("root"):
        settings["root"] = str(expand(settings["root"]).resolve())
    return {"source": data.source, **settings}


def data_settings(data: DataConfig) -> dict[str, Any]:
    """The data settings that decide a cache's pieces and tokens (root made absolute)."""
    settings = _source_settings(data)
    if "mix" in settings:  # each part keyed as its own [data] would be (roots made absolute); not by its share,
        settings["mix"] = [_source_settings(part.data) for part in mix_parts(settings["mix"])]  # as tokens ignore it
    return {**settings, "chunk_seconds": data.chunk_seconds, "chunk_overlap_seconds": data.chunk_overlap_seconds}


def cache_dir(data: DataConfig, codec: Codec, codec_name: str) -> Path:
    """Where ``tokenize`` keeps this codec's tokens for these data settings."""
    return home() / "tokens" / _digest({"codec": codec_name, "identity": codec.identity(),
                                         "data": data_settings(data)})


def encode_stitched(codec: Codec, wav: torch.Tensor, chunk_seconds: float, overlap_seconds: float,
                    batch_size: int = 8) -> torch.Tensor:
    """wav FloatTensor[1, S] -> codes LongTensor[K, ceil(S / hop)], encoded in overlapping chunks.

    Chunk i owns frames [i*C, (i+1)*C) and is encoded inside a segment of C + 2*O frames that
    starts O frames earlier (clamped to the piece, so end chunks borrow more context from the
    other side); only the owned frames are kept, so no frame appears twice. All segments have
    the same length and are batched; a piece shorter than one segment is zero-padded.
    """
    hop = codec.hop_length
    frames = math.ceil(wav.shape[-1] / hop)
    c = max(1, round(chunk_seconds * codec.sample_rate / hop))
    o = max(0, round(overlap_seconds * codec.sample_rate / hop))
    seg = c + 2 * o
    audio = torch.nn.functional.pad(wav.reshape(-1), (0, max(frames, seg) * hop - wav.shape[-1]))
    plan = []  # (segment start frame, first owned frame, owned frame count)
    for first in range(0, frames, c):
        start = max(0, min(first - o, frames - seg))
        plan.append((start, first, min(c, frames - first)))
    device = next((p.device for p in codec.parameters()), torch.device("cpu"))
    out = []
    with torch.inference_mode():
        for i in range(0, len(plan), batch_size):
            part = plan[i:i + batch_size]
            batch = torch.stack([audio[s * hop:(s + seg) * hop] for s, _, _ in part])[:, None]
            codes = codec.encode(batch.to(device))
            if codes.shape[-1] < seg:
                raise PianogenError(f"codec returned {codes.shape[-1]} frames for {seg} frames of audio")
            out += [codes[j, :, f - s:f - s + n] for j, (s, f, n) in enumerate(part)]
    return torch.cat(out, dim=-1).cpu()  # [K, frames]


def _piece_file(piece: Piece) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(piece.audio_filename).stem)[:60]
    return f"{stem}-{_digest(piece.audio_filename, 10)}.npy"


def save_codes(path: Path, codes: torch.Tensor) -> None:
    buf = io.BytesIO()
    np.save(buf, codes.numpy().astype(np.uint16))
    atomic_write_bytes(path, buf.getvalue())


class TokenCache:
    """A finished token cache: manifest plus one memory-mapped uint16 [levels, frames] array per piece."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise PianogenError(f"no token cache at {self.dir} (run `pianogen tokenize RECIPE` first)")
        self.manifest: dict[str, Any] = json.loads(path.read_text())
        self.frame_rate: float = self.manifest["frame_rate"]
        self.levels: int = self.manifest["levels"]

    def pieces(self, split: str | None = None) -> list[dict[str, Any]]:
        """The manifest's pieces, optionally only one split's, in manifest order."""
        return [p for p in self.manifest["pieces"] if split is None or p["split"] == split]

    def codes(self, piece: dict[str, Any]) -> np.ndarray:
        """uint16 [levels, frames], memory-mapped (nothing is read until sliced)."""
        codes = cached_codes(self.dir / piece["file"], self.levels)
        if codes is None:
            raise PianogenError(f"token cache file {self.dir / piece['file']} is damaged or missing; "
                                f"`pianogen tokenize RECIPE` encodes it again")
        return codes


def cached_codes(path: Path, levels: int) -> np.ndarray | None:
    """A cached piece's memory map, or None when it is missing, cut short or not [levels, frames] uint16."""
    try:
        codes = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):  # missing, empty, truncated (mmap longer than the file), not .npy
        return None
    if codes.dtype != np.uint16 or codes.ndim != 2 or codes.shape[0] != levels:
        return None
    return codes


def tokenize(data: DataConfig, codec: Codec, codec_name: str, progress: bool = True,
             batch_size: int = 8) -> TokenCache:
    """Encode every piece of the recipe's source that is not cached yet; return the cache."""
    if codec.codebook_size > 2**16:
        raise PianogenError(f"codebook size {codec.codebook_size} does not fit the cache's uint16 codes")
    if data.chunk_seconds <= 0 or data.chunk_overlap_seconds < 0:
        raise PianogenError("data.chunk_seconds must be > 0 and data.chunk_overlap_seconds >= 0")
    out = cache_dir(data, codec, codec_name)
    out.mkdir(parents=True, exist_ok=True)
    pieces = open_source(data).pieces()
    entries, skipped = [], []
    seconds_of = {p.audio_filename: p.duration or audio_seconds(p.path) for p in pieces}
    total_s = sum(seconds_of.values())
    done_s = encoded_s = 0.0
    started = time.perf_counter()
    with progress_bar(progress, units="none", info=True, elapsed=True, transient=True) as bar:
        task = bar.add_task("tokenizing", total=total_s or len(pieces), info="")
        codec.eval()
        for piece in pieces:
            path = out / _piece_file(piece)
            cached = cached_codes(path, codec.n_levels)
            if cached is None and path.exists():
                warnings.warn(f"{path} is damaged (cut short by a full disk or a crash?); encoding it again",
                              stacklevel=2)
            if cached is None:
                wav = load_or_skip(piece.path, codec.sample_rate, data.strict)
                if wav is None:
                    skipped.append(piece.audio_filename)
                    continue
                codes = encode_stitched(codec, wav, data.chunk_seconds, data.chunk_overlap_seconds, batch_size)
                save_codes(path, codes)
                encoded_s += wav.shape[-1] / codec.sample_rate
                frames = codes.shape[1]
            else:
                frames = int(cached.shape[1])
            entries.append({"audio_filename": piece.audio_filename, "split": piece.split, "frames": frames,
                            "file": path.name, "title": piece.title, **({"group": piece.group} if piece.group else {})})
            seconds = seconds_of[piece.audio_filename]
            done_s += seconds
            rt = encoded_s / max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=seconds if total_s else 1,
                       info=f"{done_s / 3600:.2f}/{total_s / 3600:.2f} h {rt:.1f}x real time")
    if not entries:
        raise PianogenError(f"no readable audio in data source '{data.source}'")
    identity = codec.identity()
    manifest = {
        "codec": {"name": codec_name, "config_hash": _digest(identity), "identity": identity},
        "frame_rate": codec.frame_rate, "hop_length": codec.hop_length, "levels": codec.n_levels,
        "codebook_size": codec.codebook_size, "sample_rate": codec.sample_rate,
        "data": data_settings(data), "pieces": entries, "skipped": skipped,
    }
    text = json.dumps(manifest, indent=1, default=str).encode()
    # a complete cache is only read: it may sit on a read-only disk or be shared with other users
    if not (out / MANIFEST).is_file() or (out / MANIFEST).read_bytes() != text:
        atomic_write_bytes(out / MANIFEST, text)
    return TokenCache(out)
