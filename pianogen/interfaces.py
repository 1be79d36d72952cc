"""The contracts every plugin implements. Shapes are batch-first; audio is float32 in [-1, 1].

B = batch, K = RVQ levels, T = frames, V = codebook size, D = codebook dimension,
S = audio samples.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pianogen.errors import PianogenError


class Codec(nn.Module, abc.ABC):
    """Audio <-> residual-vector-quantized tokens."""

    sample_rate: int  # Hz of the audio encode() takes and decode() returns
    frame_rate: float  # token frames per second of audio
    hop_length: int  # samples per frame (sample_rate / frame_rate)
    n_levels: int  # RVQ levels the codec produces (K at most)
    codebook_size: int  # V, codes per level

    @abc.abstractmethod
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav FloatTensor[B, 1, S] at ``sample_rate`` -> codes LongTensor[B, K, ceil(S / hop_length)]."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor[B, K', T] (the first K' <= K levels) -> wav FloatTensor[B, 1, T * hop_length]."""

    @abc.abstractmethod
    def codebooks(self) -> torch.Tensor:
        """The embedding tables, FloatTensor[K, V, D]; the latent of a frame is sum_k codebooks[k, code_k]."""

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What makes two codecs produce the same tokens: keys the token cache and is checked against
        checkpoints (name + a hash of config and weights)."""

    def former_identities(self) -> list[dict[str, Any]]:
        """Identities an earlier pianogen gave this same codec, which runs and saved codes may have recorded.
        Default: none."""
        return []

    def recognizes(self, recorded: dict[str, Any]) -> bool:
        """Whether tokens recorded under the identity ``recorded`` are this codec's tokens."""
        return recorded == self.identity() or recorded in self.former_identities()

    def decoder_context_frames(self) -> int | None:
        """Frames before a chunk that decoding must see for the chunk's audio to equal one-shot decoding (a
        causal decoder's receptive field, in frames): streaming decodes each chunk from that many frames back.
        None (the default): unknown, or not causal (an LSTM), and streaming decodes from the sequence's start,
        exact but slower with every chunk."""
        return None

    def decoder_alignment_frames(self) -> int:
        """Decoding that starts at frame b equals one-shot decoding (given ``decoder_context_frames`` before the
        chunk) only when b is a multiple of this: a decoder with its own oscillators, which repeat every N
        frames, counts their phase from the first frame it decodes. 1 (the default): any frame."""
        return 1

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """latent FloatTensor[B, D, T] (per frame, sum_k codebooks[k, code_k], or any point of that space) ->
        wav FloatTensor[B, 1, T * hop_length], differentiable in ``latent``: the Mel loss's ``decoder`` mode
        runs it on expected latents. Optional: the default says in one line that this codec cannot."""
        raise PianogenError(f"codec '{type(self).__name__}' cannot decode latents (it implements no "
                            f"decode_latent); use the mel loss with reconstruction = \"linear\"")

    @property
    def decodes_latent(self) -> bool:
        """Whether ``decode_latent`` works, asked before training starts: true once a codec overrides it."""
        implementation = getattr(type(self), "decode_latent", None)
        return callable(implementation) and implementation is not Codec.decode_latent


@dataclass(frozen=True)
class WeightsSpec:
    """Downloadable weights a codec plugin declares (hook ``register_codec_weights``): ``pianogen codec get``
    lists them and fetches one by its registered name, verified, to ``$PIANOGEN_HOME/codecs/<file>``."""

    codec: str  # the registered codec that loads them (its ``checkpoint`` option names the file)
    file: str  # the file name the codec loads, under $PIANOGEN_HOME/codecs/ unless --out says otherwise
    source: str  # https://... (resumed over ranges) or hf://OWNER/REPO/PATH (huggingface_hub: its cache, ETag)
    # the downloaded file's sha256, whole or a prefix of >= 8 hex digits; "" = not pinned (a hub source's ETag,
    # the sha256 of its LFS file, still verifies the transfer). A local copy is checked against it too.
    sha256: str
    size: int = 0  # bytes of the download, when known (shown by the list)
    license: str = ""  # of the weights, e.g. "CC-BY-NC-4.0"
    description: str = ""  # one line for the list
    mirror_env: str = ""  # an environment variable that, when set, replaces an https source (a mirror or a path)
    # the download -> ``file`` (an importer writing .safetensors, atomically); None = the download is the file
    convert: Callable[[Path, Path], None] | None = None
    # the codec loads ``file`` when its recipe names no checkpoint (or a folder holding it); False = it then
    # starts from fresh weights, and the recipe names the file
    loaded_by_default: bool = False

    def __post_init__(self) -> None:
        digest = self.sha256.lower()
        if digest and (len(digest) < 8 or len(digest) > 64 or any(c not in "0123456789abcdef" for c in digest)):
            raise ValueError(f"WeightsSpec.sha256 takes 8 to 64 hex digits (or ''), got '{self.sha256}'")
        if not self.source.startswith(("https://", "http://", "hf://")):
            raise ValueError(f"WeightsSpec.source takes an https:// or hf://OWNER/REPO/PATH address, got "
                             f"'{self.source}'")
        object.__setattr__(self, "sha256", digest)


class TrainableCodec(Codec):
    """A codec ``pianogen codec train`` can train: a differentiable pass and a writer for its weights."""

    @abc.abstractmethod
    def forward(self, wav: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass through the first ``n_q`` levels (all when None): wav FloatTensor[B, 1, S] ->
        (reconstruction FloatTensor[B, 1, S'], commitment loss scalar)."""

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        """Write the weights (and whatever rebuilds the architecture) so ``get_codec(..., checkpoint=path)``
        loads them; atomically."""

    def init_codebooks(self, wav: torch.Tensor) -> None:
        """Initialise untrained codebooks from audio wav FloatTensor[B, 1, S] before the first step.
        Default: nothing to do."""

    def freeze_tokens(self) -> None:
        """Leave what makes the tokens (encoder, codebooks) as it is from now on, so that training moves only
        the decoder and ``identity`` stays the same: every token model trained on the codec stays valid
        (``codec_train.train = "decoder"``). Default: this codec cannot."""
        raise PianogenError(f"codec {type(self).__name__} cannot train its decoder alone "
                            f"(codec_train.train = \"decoder\"): it has no freeze_tokens")


class TokenModel(nn.Module, abc.ABC):
    """An autoregressive model over codec frames.

    Contract: ``forward(codes)[:, k, t]`` are the logits of ``codes[:, k, t + 1]`` (next frame,
    same level), whatever the model does inside (flattened levels, delay pattern, ...).
    """

    n_levels: int  # K, levels read and predicted
    vocab_size: int  # V
    block_size: int  # longest context in frames

    @abc.abstractmethod
    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor[B, K, T] (T <= block_size) -> logits FloatTensor[B, K, T, V]."""

    @abc.abstractmethod
    def generate(
        self,
        prompt: torch.Tensor,
        n_frames: int,
        sample: Callable[[torch.Tensor], torch.Tensor],
        use_cache: bool = True,
        on_frame: Callable[[int], None] | None = None,
        compile: bool | str = False,
    ) -> torch.Tensor:
        """Continue ``prompt`` LongTensor[B, K, T0] by ``n_frames`` frames -> LongTensor[B, K, n_frames].

        ``sample(logits FloatTensor[B, K, V]) -> LongTensor[B, K]`` draws one frame (or one
        delayed step); ``use_cache=False`` recomputes the whole context each step, which must
        give the same tokens. Past ``block_size`` the context slides. ``on_frame(i)`` reports progress.
        ``compile=True`` may compile the one-step decode, in the layout best for the device; "static"
        (CUDA graphs) or "dynamic" ask for one (a model without such a path ignores it).
        """

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per frame (forward + backward), PaLM appendix B / nanoGPT count."""
        raise NotImplementedError


@dataclass
class LossContext:
    """What a loss may need beyond logits and targets, handed to ``Loss.prepare`` once."""

    codec: Codec  # the run's codec (frozen)
    levels: int  # K, levels the token model predicts
    cache_dir: Path  # the token cache: a place to store fitted artefacts beside the tokens
    train_codes: Callable[[], Iterable[torch.Tensor]]  # yields training windows LongTensor[B, K_all, T]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # validation windows, like train_codes; None = a loss holds out training windows instead
    validation_codes: Callable[[], Iterable[torch.Tensor]] | None = None


class Loss(nn.Module, abc.ABC):
    """A training objective on next-frame logits."""

    def prepare(self, ctx: LossContext) -> None:
        """Called once before training (fit or load artefacts). Default: nothing to do."""

    @abc.abstractmethod
    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """logits FloatTensor[B, K, T, V] predicting targets LongTensor[B, K, T]; mask BoolTensor[B, T]
        (True = real frame) -> (scalar loss, {metric name: value}) e.g. per-level values."""


class PostFilter(abc.ABC):
    """Cleans generated audio."""

    @abc.abstractmethod
    def __call__(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav FloatTensor[B, 1, S] -> FloatTensor[B, 1, S]."""

    def stream(self, sample_rate: int) -> "StreamingFilter | None":
        """A causal filter returns a fresh StreamingFilter (zero state) that filters audio chunk by chunk as
        one call over the whole signal would; None (the default) = not causal, filter finished files only."""
        return None


class StreamingFilter(abc.ABC):
    """A causal post-filter with state: consecutive chunks [B, 1, n] come out as one call over their whole."""

    settle_samples: int  # input samples after which the zero start state no longer shows (< 1e-6 of it)

    @abc.abstractmethod
    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        """chunk FloatTensor[B, 1, n] -> the filtered chunk, continuing from the previous one."""


@dataclass(frozen=True)
class Piece:
    """One performance of a corpus."""

    path: Path  # the audio file on disk
    audio_filename: str  # as the source names it (MAESTRO: the CSV's relative path)
    split: str  # "train" | "validation" | "test"
    duration: float | None = None  # seconds, when the source knows it
    title: str = ""
    group: str = ""  # the part of a mixed corpus it belongs to (DataSource.shares); "" for a single corpus


class DataSource(abc.ABC):
    """A corpus of piano audio with splits."""

    @abc.abstractmethod
    def pieces(self) -> list[Piece]:
        """Every usable piece, in a stable order."""

    def planned(self) -> list[Piece] | None:
        """The pieces as far as they are known before any work (no composing, rendering or downloading), with
        durations where known; None when nothing is known yet. ``pianogen train`` checks the window and the
        batch against them before it starts. Default: None."""
        return None

    def shares(self) -> dict[str, float]:
        """How often training draws from each group of pieces ({Piece.group: fraction}, summing to 1);
        {} draws every piece alike. Training honours it for any group size: a small real corpus mixed with
        a large synthetic one keeps its share."""
        return {}


@dataclass(frozen=True)
class Note:
    """One played note: what a transcriber hears, a composer writes and a sampler renders."""

    onset: float  # seconds from the start of the audio or performance
    offset: float  # seconds; the key's release (the sound may ring on under the pedal)
    pitch: int  # MIDI note number, 21 (A0) .. 108 (C8)
    velocity: int  # MIDI velocity 1..127


class Transcriber(abc.ABC):
    """Audio -> the notes played in it (automatic music transcription)."""

    name: str  # what reports call it, e.g. "basic_pitch"

    @abc.abstractmethod
    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> list[Note]:
        """wav FloatTensor[S] or [1, S] (mono, any rate) -> notes sorted by onset, then pitch."""


# A piano performance as events: what the composer writes, a MIDI file holds and the sampler renders. Times are
# seconds of performance time (tempo already applied), so a composed piece, a MAESTRO MIDI file and a
# transcription meet in one form. ``info`` records what made it (a composer's meters, tempi, textures).
SUSTAIN_CC = 64  # MIDI controller numbers of the pedals
SOFT_CC = 67
PEDAL_DOWN = 64  # a CC64/CC67 value at or above this means the pedal is down (the MIDI convention)


@dataclass
class Performance:
    notes: list[Note]
    sustain: list[tuple[float, int]] = field(default_factory=list)  # (seconds, CC64 value 0..127), time-sorted
    soft: list[tuple[float, int]] = field(default_factory=list)  # (seconds, CC67 value 0..127), time-sorted
    info: dict[str, Any] = field(default_factory=dict)  # what made it (the composer's choices), JSON-able

    @property
    def duration(self) -> float:
        """Seconds until the last key is released (release tails and pedal come on top)."""
        ends = [n.offset for n in self.notes] + [t for t, _ in self.sustain] + [t for t, _ in self.soft]
        return max(ends, default=0.0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The notes as parallel arrays sorted by onset: onset, offset (float64 s), pitch, velocity (int64)."""
        notes = sorted(self.notes, key=lambda n: (n.onset, n.pitch))
        return {"onset": np.array([n.onset for n in notes], dtype=np.float64),
                "offset": np.array([n.offset for n in notes], dtype=np.float64),
                "pitch": np.array([n.pitch for n in notes], dtype=np.int64),
                "velocity": np.array([n.velocity for n in notes], dtype=np.int64)}

    @staticmethod
    def pedal_down_at(events: list[tuple[float, int]], times: np.ndarray) -> np.ndarray:
        """Whether the pedal of ``events`` is down at each of ``times`` (bool array like ``times``)."""
        if not events:
            return np.zeros(np.shape(times), dtype=bool)
        t = np.array([e[0] for e in events])
        down = np.array([e[1] >= PEDAL_DOWN for e in events])
        idx = np.searchsorted(t, times, side="right") - 1
        return np.where(idx >= 0, down[np.clip(idx, 0, None)], False)
