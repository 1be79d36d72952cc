"""``pianogen eval RUN_DIR``: objective evaluation of a trained run, in three parts, each beside its floor:
- tokens: the model's NLL / perplexity / accuracy per level and bits per second of audio on a split,
  next to two reference models fitted on the training tokens (``unigram``, ``repeat``);
- codec: how well the run's codec reconstructs the split's audio from its first 1, 2, 4, 8, all levels;
- continuation: prompts from the split continued by the model and compared, second by second, with
  the true continuation (codec-resynthesised and raw): the drift curve of evaluation.drift. Every drift number
  has its floors beside it: the same metric for another piece of the corpus, for white and pink noise and for
  a drone (the prompt key's tonic triad, held) put in place of the continuation (white noise scores chroma
  ~0.5 against a C-major prompt). A transcriber (basic_pitch) also hears the notes of the continuation and its
  floors: notes/s, distinct pitches, pitch-class correlation and key agreement with the prompt, by second.
This module measures; ``evaluation.eval_report`` writes what it measured (eval.json, report.md, figures).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianogen import pipeline
from pianogen.device import pick_device
from pianogen.errors import PianogenError
from pianogen.evaluation.drift import coloured_noise, drift_curves
from pianogen.evaluation.eval_corpus import (
    ALL,
    SPLITS,
    AllSplits,
    check_split,
    corpus_table,
    reference_cache,
    with_corpus,
)
from pianogen.evaluation.eval_report import write_report
from pianogen.evaluation.notes import (
    NOTE_METRICS,
    average_note_metrics,
    drone,
    load_transcriber,
    signal_note_metrics,
    split_at,
)
from pianogen.generation.precision import PRECISIONS, in_precision
from pianogen.progress import progress_bar

LN2 = math.log(2)
CODEC_LEVELS: tuple[int | str, ...] = (1, 2, 4, 8, "all")
FLOORS = {  # after the (original) prompt, in place of the continuation
    "other_piece": "floor: another piece of the corpus (original audio)",
    "white_noise": "floor: white noise at the prompt's RMS",
    "pink_noise": "floor: pink noise at the prompt's RMS",
    "drone": "floor: the tonic triad of the prompt's key, held at the prompt's RMS (stuck on one chord)",
}
NOISE_EXPONENTS = {"white_noise": 0.0, "pink_noise": 1.0}
SIGNALS = {
    "generated": "the model's continuation, decoded by the run's codec",
    "resynth": "the true continuation, codec-resynthesised from the levels the model predicts",
    "raw": "the true continuation, the original audio",
    **FLOORS,
}
# the signals whose notes are heard. resynth is the codec's ceiling: a token model that sampled every true code
# would sound like it, so a check it fails too is the codec's to mend, not the token model's
NOTE_SIGNALS = ("generated", "raw", "resynth", *FLOORS)
# what the notes block calls them: the model's continuation, the true one (the ceiling), the codec's rendition
# of the true one, and the floors
NOTE_NAMES = {"generated": "model", "raw": "true", "resynth": "codec", "white_noise": "noise"}
# who each signal is compared with by Mel L1 and spectral convergence
REFERENCES = {"generated": ["resynth", "raw"], "resynth": ["raw"], **{name: ["resynth", "raw"] for name in FLOORS}}


@dataclass
class ReferenceModels:
    """Token floors fitted per level on training streams, both add-one smoothed.

    unigram: p(code) = (count + 1) / (N + V). repeat: the next code equals the previous one with
    probability r = (repeats + 1) / (pairs + 2); the other V - 1 codes share 1 - r evenly.
    """

    unigram_logp: torch.Tensor  # FloatTensor[K, V], log-probabilities
    repeat_p: torch.Tensor  # FloatTensor[K]

    @classmethod
    def fit(cls, streams: Iterable[np.ndarray], levels: int, vocab: int) -> "ReferenceModels":
        """streams: uint16/int arrays [>= levels, T], one per piece (pairs never cross pieces)."""
        counts = np.zeros((levels, vocab), dtype=np.float64)
        repeats, pairs = np.zeros(levels), np.zeros(levels)
        for codes in streams:
            codes = np.asarray(codes[:levels], dtype=np.int64)
            for k in range(levels):
                counts[k] += np.bincount(codes[k], minlength=vocab)[:vocab]
            repeats += (codes[:, 1:] == codes[:, :-1]).sum(axis=1)
            pairs += max(codes.shape[1] - 1, 0)
        unigram = (counts + 1) / (counts.sum(axis=1, keepdims=True) + vocab)
        return cls(torch.from_numpy(np.log(unigram)).float(), torch.from_numpy((repeats + 1) / (pairs + 2)).float())

    def scores(self, codes: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """codes LongTensor[B, K, T] -> {name: (nll [B, K, T-1], correct [B, K, T-1])} for targets codes[:, :, 1:].

        top-1 guesses: unigram, the most frequent code; repeat, the previous code."""
        prev, target = codes[:, :, :-1], codes[:, :, 1:]
        logp = self.unigram_logp.to(codes.device)
        K, V = logp.shape
        uni_nll = -logp.unsqueeze(0).expand(codes.shape[0], -1, -1).gather(2, target)
        uni_hit = target == logp.argmax(dim=1)[None, :, None]
        r = self.repeat_p.to(codes.device)[None, :, None]
        same = target == prev
        rep_nll = torch.where(same, -r.log(), -((1 - r) / (V - 1)).log()).expand_as(target)
        return {"unigram": (uni_nll, uni_hit), "repeat": (rep_nll, same)}


def scoring_windows(cache: Any, split: str, levels: int, window: int, batch_size: int
                    ) -> tuple[int, Iterable[dict[str, torch.Tensor]]]:
    """(number of batches, batches) of windows that score every next-frame target of the split once.

    A window of W frames scores the targets of its frames 1..W-1, so windows start every W - 1 frames
    (sharing one frame): frames 1..F-1 of a piece are each a target exactly once. The last window of a
    piece is right-padded with code 0 and ``mask`` False on the padding, never realigned to the end
    (that would score the frames it shares with the window before a second time).
    """
    from torch.utils.data.dataloader import default_collate

    if window < 2:
        raise PianogenError(f"scoring needs data.window >= 2 (a window scores its frames after the first), "
                            f"got {window}")
    stride = window - 1
    spans = [(p, s) for p in cache.pieces(split) for s in range(0, max(p["frames"] - 1, 0), stride)]

    def item(piece: dict[str, Any], start: int) -> dict[str, torch.Tensor]:
        part = np.asarray(cache.codes(piece)[:levels, start:start + window], dtype=np.int64)
        codes = torch.zeros(levels, window, dtype=torch.long)
        codes[:, :part.shape[1]] = torch.from_numpy(part)
        return {"codes": codes, "mask": torch.arange(window) < part.shape[1]}

    batches = (default_collate([item(*span) for span in spans[i:i + batch_size]])
               for i in range(0, len(spans), batch_size))
    return math.ceil(len(spans) / batch_size), batches


@torch.no_grad()
def token_metrics(model: torch.nn.Module, cache: Any, split: str, levels: int, window: int,
                  refs: ReferenceModels, device: torch.device, batch_size: int = 8,
                  progress: bool = False) -> dict[str, Any]:
    """Model and reference scores on the split's next-frame targets, each scored once, from the frames
    before it in its window (``scoring_windows``)."""
    n_batches, batches = scoring_windows(cache, split, levels, window, batch_size)
    names = ("model", "unigram", "repeat")
    nll = {n: torch.zeros(levels, dtype=torch.float64) for n in names}
    hits = {n: torch.zeros(levels, dtype=torch.float64) for n in names}
    count = 0.0
    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task(f"scoring {split} tokens", total=n_batches)
        for batch in batches:
            codes, mask = batch["codes"].to(device), batch["mask"].to(device)
            logits = model(codes)[:, :, :-1].float()  # [B, K, T-1, V] predicting codes[:, :, 1:]
            target = codes[:, :, 1:]
            logp = torch.log_softmax(logits, dim=-1)
            scored = {"model": (-logp.gather(3, target[..., None])[..., 0], logits.argmax(dim=-1) == target),
                      **refs.scores(codes)}
            weight = mask[:, None, 1:].double()  # [B, 1, T-1]
            for name, (values, correct) in scored.items():
                nll[name] += (values.double() * weight).sum(dim=(0, 2)).cpu()
                hits[name] += (correct.double() * weight).sum(dim=(0, 2)).cpu()
            count += float(mask[:, 1:].sum())
            bar.advance(task)
    if count == 0:
        raise PianogenError(f"the {split} split has no next-frame targets: use a longer piece or data.window > 1")
    frame_rate = cache.frame_rate
    out: dict[str, Any] = {"targets_per_level": int(count), "windows": {"frames": window, "stride": window - 1}}
    for name in names:
        per_level = (nll[name] / count).tolist()
        prefix = "" if name == "model" else f"{name}_"
        out[f"{prefix}nll_per_level"] = per_level
        out[f"{prefix}perplexity_per_level"] = [math.exp(v) for v in per_level]
        out[f"{prefix}accuracy_per_level"] = (hits[name] / count).tolist()
        out[f"{prefix}bits_per_second"] = sum(per_level) / LN2 * frame_rate
    return out


def _piece_paths(recipe: Any) -> dict[str, Path]:
    return {p.audio_filename: p.path for p in pipeline.build_source(recipe).pieces()}


def codec_metrics(codec: Any, wavs: list[torch.Tensor], model_levels: int, paths: list[Path] | None = None,
                  transcriber: str | None = "basic_pitch") -> dict[str, Any]:
    """Reconstruction and note F1 by levels with bitrates, codebook health per level, and Opus (opusenc from
    48 kHz) at 6..16 kbps on the same metrics; note F1 also against the MIDI beside each of ``paths``."""
    from pianogen.evaluation.codec_metrics import evaluate_codec
    from pianogen.evaluation.codec_notes import clip_midi_notes

    seconds = [w.shape[-1] / codec.sample_rate for w in wavs]
    midi = [clip_midi_notes(p, s) for p, s in zip(paths, seconds)] if paths and transcriber else None
    result = evaluate_codec(codec, wavs, CODEC_LEVELS, notes=transcriber is not None,
                            transcriber=transcriber or "basic_pitch", midi=midi)
    for line in result["warnings"]:
        print(f"warning: codec: {line}", file=sys.stderr)
    return {"levels_modelled": model_levels, "codebook_size": codec.codebook_size, **result}


def pick_prompts(pieces: list[dict[str, Any]], n: int, prompt_frames: int, frames: int) -> list[tuple[dict, int]]:
    """(piece, start frame) of up to ``n`` prompt+continuation segments of ``prompt_frames + frames``:
    the start of every piece first, then later non-overlapping segments when the split has fewer pieces.
    The last frame of a piece is never used (it may cover zero padding)."""
    span = prompt_frames + frames
    chosen: list[tuple[dict, int]] = []
    for j in range(max((p["frames"] - 1) // span for p in pieces) if pieces else 0):
        chosen += [(p, j * span) for p in pieces if (j + 1) * span <= p["frames"] - 1]
    return chosen[:n]


def segment_codes(cache: Any, chosen: list[tuple[dict, int]], levels: int, length: int) -> torch.Tensor:
    """The first ``levels`` levels of each ``pick_prompts`` segment, ``length`` frames from its start ->
    LongTensor[len(chosen), levels, length]."""
    return torch.stack([torch.from_numpy(np.asarray(cache.codes(p)[:levels, s:s + length], dtype=np.int64))
                        for p, s in chosen])


def _load_segment(path: Path, sample_rate: int, start: int, length: int) -> torch.Tensor:
    from pianogen.data.audio import load_audio

    wav = load_audio(path, sample_rate)[0, start:start + length]
    return torch.nn.functional.pad(wav, (0, length - wav.numel()))


def other_piece(cache: Any, split: str, piece: dict[str, Any], start: int, frames: int
                ) -> tuple[dict[str, Any], int] | None:
    """(piece, start frame) of ``frames`` frames from another piece than ``piece``: the split's next piece
    (cyclically), else one of the training or validation split; None when the corpus has no other piece
    that long. The segment starts where the true continuation does when the piece is long enough."""
    same = cache.pieces(split)
    at = next((i for i, p in enumerate(same) if p["audio_filename"] == piece["audio_filename"]), 0)
    candidates = same[at + 1:] + same[:at] + [p for s in ("train", "validation", "test") if s != split
                                              for p in cache.pieces(s)]
    for candidate in candidates:
        if candidate["audio_filename"] != piece["audio_filename"] and candidate["frames"] - 1 >= frames:
            return candidate, min(start, candidate["frames"] - 1 - frames)
    return None


def continuation_metrics(recipe: Any, codec: Any, model: Any, cache: Any, split: str, n_prompts: int,
                         prompt_seconds: float, seconds: float, seed: int, device: torch.device,
                         progress: bool, transcriber: str | None = "basic_pitch"
                         ) -> tuple[dict[str, Any], list[dict[str, torch.Tensor]]]:
    """Continue prompts from the split and score the drift against the true continuation, by second, and
    the notes ``transcriber`` hears in it. Returns the JSON block and, per prompt, the decoded
    {signal: FloatTensor[S]} audio (for figures)."""
    from pianogen.generation.generate import GenerationRequest, continue_codes, sampling_temperature
    from pianogen.generation.prompt_end import recent_onset_rate
    from pianogen.generation.ring_out import band_decay_rates, ring_out_whole

    levels, hop, sr = recipe.codec.levels, codec.hop_length, codec.sample_rate
    prompt_frames = max(1, round(prompt_seconds * codec.frame_rate))
    frames = round(seconds * codec.frame_rate)
    if frames < codec.frame_rate:  # drift is scored in 1 s bins
        raise PianogenError(f"the scored continuation must be at least 1 s (one drift bin), got {seconds} s: "
                            f"use --seconds 1 or more")
    chosen = pick_prompts(cache.pieces(split), n_prompts, prompt_frames, frames)
    if not chosen:
        raise PianogenError(f"no {split} piece is longer than the {prompt_seconds} s prompt + {seconds} s "
                            f"continuation asked: use a shorter --prompt-seconds or --seconds")
    if len(chosen) < n_prompts:  # said, and recorded as n_prompts_asked: the report's count is what was scored
        print(f"warning: the {split} split holds {len(chosen)} non-overlapping {prompt_seconds} + {seconds} s "
              f"prompts; scoring {len(chosen)} of the {n_prompts} asked", file=sys.stderr)
    codes = segment_codes(cache, chosen, levels, prompt_frames + frames).to(device)
    prompt = codes[:, :, :prompt_frames]
    g = recipe.generate
    request = GenerationRequest(prompt=split, seconds=seconds, out=Path("."), prompt_seconds=prompt_seconds,
                                temperature=g.temperature, top_k=g.top_k, top_p=g.top_p, prompt_prior=g.prompt_prior,
                                quiet_temperature_scale=g.quiet_temperature_scale, ring_out=g.ring_out, seed=seed)
    paths = _piece_paths(recipe)
    boundary, total = prompt_frames * hop, (prompt_frames + frames) * hop
    raws = [_load_segment(paths[piece["audio_filename"]], sr, start * hop, total) for piece, start in chosen]
    # each prompt's own temperature and fade, as generate gives a recording's (prompt_end.py, ring_out.py)
    onset_rates = decays = None
    if g.quiet_temperature_scale != 1.0 or g.ring_out:
        onset_rates = [recent_onset_rate(raw[:boundary], sr) for raw in raws]
    if g.ring_out:
        decays = [band_decay_rates(raw[:boundary], sr) for raw in raws]
    generated = continue_codes(model, prompt, frames, request, progress, onset_rates=onset_rates)
    with torch.inference_mode():
        decoded = {"generated": codec.decode(torch.cat([prompt, generated], dim=-1)).float().cpu(),
                   "resynth": codec.decode(codes).float().cpu()}
    if decays is not None:
        continued = ring_out_whole(decoded["generated"][:, 0, boundary:], sr, decays, onset_rates)
        decoded["generated"] = torch.cat([decoded["generated"][:, 0, :boundary], continued], dim=-1)[:, None]
    others = [other_piece(cache, split, piece, start + prompt_frames, frames) for piece, start in chosen]
    floors = [name for name in FLOORS if name != "other_piece" or all(others)]
    hearing, unavailable = load_transcriber(transcriber)
    if transcriber is not None and hearing is None:
        print(f"warning: notes: {unavailable}", file=sys.stderr)
    audio, curves, notes = [], [], []
    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task("scoring continuations" + (" and hearing their notes" if hearing else ""),
                            total=len(chosen))
        for i, raw in enumerate(raws):
            prompt_audio, rms = raw[:boundary], float(raw[:boundary].pow(2).mean().sqrt())
            signals = {"generated": decoded["generated"][i, 0, :total], "resynth": decoded["resynth"][i, 0, :total],
                       "raw": raw}
            heard = {"raw": hearing.transcribe(raw, sr)} if hearing else {}
            prompt_notes = split_at(heard["raw"], boundary / sr)[0] if hearing else None  # the original prompt's
            for name in floors:
                if name == "other_piece":
                    other, other_start = others[i]
                    tail = _load_segment(paths[other["audio_filename"]], sr, other_start * hop, total - boundary)
                elif name == "drone":  # the prompt's key from its notes, from its chroma when none were heard
                    tail = drone(prompt_audio, prompt_notes, sr, (total - boundary) / sr)
                else:
                    tail = coloured_noise(total - boundary, NOISE_EXPONENTS[name], rms, seed + i)
                signals[name] = torch.cat([prompt_audio, tail])
            audio.append(signals)
            curves.append(drift_curves(signals, boundary, REFERENCES, sr))
            if hearing:
                notes.append(signal_note_metrics(hearing, {n: signals[n] for n in NOTE_SIGNALS if n in signals}, sr,
                                                 boundary, frames / codec.frame_rate, heard, prompt_notes))
            bar.advance(task)
    mean = {name: {metric: np.mean([c[name][metric] for c in curves], axis=0).tolist() for metric in metrics}
            for name, metrics in curves[0].items()}
    n_bins = len(next(iter(mean["raw"].values())))
    block = {
        "split": split, "levels": levels, "n_prompts": len(chosen), "n_prompts_asked": n_prompts,
        "prompt_seconds": prompt_frames / codec.frame_rate,
        "seconds": frames / codec.frame_rate, "bin_seconds": 1.0, "postfilters": "none (raw decoder output)",
        "sampling": {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p,
                     "prompt_prior": g.prompt_prior, "quiet_temperature_scale": g.quiet_temperature_scale,
                     "ring_out": g.ring_out, "prompt_onset_rates": onset_rates,
                     "prompt_decays_db_per_s": decays,
                     "temperatures": onset_rates and sampling_temperature(request, onset_rates).tolist(),
                     "seed": seed},
        "prompts": [{"audio_filename": p["audio_filename"], "start_s": s / codec.frame_rate} for p, s in chosen],
        "signals": {name: SIGNALS[name] for name in curves[0]}, "floors": floors,
        "other_pieces": [None if o is None else {"audio_filename": o[0]["audio_filename"],
                                                 "start_s": o[1] / codec.frame_rate} for o in others],
        "seconds_after_prompt": [float(b + 1) for b in range(n_bins)], **mean,
        "notes": {"unavailable": unavailable} if not hearing else _notes_block(transcriber, notes),
    }
    return block, audio


def _notes_block(transcriber: str, notes: list[dict[str, Any]]) -> dict[str, Any]:
    """eval.json's ``continuation.notes``: each signal's note metrics (mean over prompts, and by second)."""
    mean = {NOTE_NAMES.get(name, name): metrics for name, metrics in average_note_metrics(notes).items()}
    return {"transcriber": transcriber, "metrics": list(NOTE_METRICS), "signals": list(mean),
            "seconds_after_prompt": [float(b + 1) for b in range(len(mean["true"]["per_second"]["notes_per_second"]))],
            **mean}


def evaluate(run_dir: str | Path, split: str = "test", out: str | Path | None = None, n_prompts: int = 4,
             prompt_seconds: float | None = None, seconds: float | None = None, codec_seconds: float = 4.0,
             codec_pieces: int = 8, seed: int = 0, device: str = "auto", progress: bool = True,
             precision: str = "fp32", transcriber: str | None = "basic_pitch", corpus: str | Path | None = None
             ) -> dict[str, Any]:
    """Evaluate a run's ``best`` checkpoint on ``split``; with ``out``, also write eval.json, report.md and PNGs.

    ``corpus``: another corpus than the run's (a folder, MAESTRO layout or plain audio, or a data source's name;
    ``pianogen.evaluation.eval_corpus``), where ``split`` may also be "all"; the floors stay fitted on the run's
    training tokens.

    ``precision`` other than fp32: the tokens are scored at fp32 and at that precision (its NLL cost,
    under ``precision``), and the continuations are sampled at that precision.

    prompt_seconds / seconds default to the recipe's [generate] values; the codec is scored on the
    first ``codec_seconds`` of up to ``codec_pieces`` pieces of the split. ``transcriber`` hears the
    continuations' notes (None: no notes; one that fails to load is a warning, and the rest still runs).
    """
    if split not in (*SPLITS, ALL) or (split == ALL and corpus is None):
        raise PianogenError(f"split must be train, validation or test{' or all' if corpus else ''}, got '{split}'"
                            + (" (all is for --corpus: the run's own corpus holds what it trained on)"
                               if split == ALL else ""))
    if n_prompts < 1:
        raise PianogenError(f"n_prompts must be >= 1, got {n_prompts}")
    if precision not in PRECISIONS:
        raise PianogenError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    from pianogen.runs import refuse_writing_into, resolve_run

    run = resolve_run(run_dir)  # a run folder, or a built-in run's name (read-only: out must lie outside it)
    if out is not None:
        refuse_writing_into(run, Path(out))
    run_dir = run.path
    torch_device = pick_device(device)
    recipe, codec, model, meta = pipeline.load_run(run_dir, "best", torch_device)
    run_recipe, other = recipe, corpus_table(corpus) if corpus is not None else None
    if other is not None:  # checked from the source's list before any tokenizing
        recipe = with_corpus(recipe, other)
        check_split(pipeline.build_source(recipe).pieces(), split, f"corpus {other.name}")
    cache = pipeline.build_token_cache(recipe, codec, progress=progress)
    levels = recipe.codec.levels
    check_split(cache.pieces(), split, "run's corpus" if other is None else f"corpus {other.name} (tokenized)")
    cache = AllSplits(cache) if split == ALL else cache
    trained = reference_cache(run_recipe, codec, progress) if other is not None else cache
    refs = ReferenceModels.fit((trained.codes(p) for p in trained.pieces("train")), levels, codec.codebook_size)
    tokens = token_metrics(model, cache, split, levels, recipe.data.window, refs, torch_device,
                           recipe.train.batch_size, progress)
    precision_block = None
    if precision != "fp32":
        model = in_precision(model, precision)
        scored = token_metrics(model, cache, split, levels, recipe.data.window, refs, torch_device,
                               recipe.train.batch_size, progress)
        precision_block = {"name": precision, "nll_per_level": scored["nll_per_level"],
                           "fp32_nll_per_level": tokens["nll_per_level"],
                           "nll_change": sum(scored["nll_per_level"]) / sum(tokens["nll_per_level"]) - 1}
    paths = _piece_paths(recipe)
    n_codec = round(codec_seconds * codec.sample_rate)
    codec_paths = [paths[p["audio_filename"]] for p in cache.pieces(split)[:codec_pieces]]
    wavs = [_load_segment(path, codec.sample_rate, 0, n_codec) for path in codec_paths]
    continuation, audio = continuation_metrics(
        recipe, codec, model, cache, split, n_prompts, prompt_seconds or recipe.generate.prompt_seconds,
        seconds or recipe.generate.seconds, seed, torch_device, progress, transcriber)
    report = {
        "run_dir": str(run_dir), "split": split, "checkpoint_step": meta["step"], "device": str(torch_device),
        "codec_name": recipe.codec.name, "model": recipe.model.name if recipe.model else None,
        "corpus": None if other is None else {"name": other.name, **other.table},
        "references_fitted_on": "the run's training tokens" + (f" ({run_recipe.data.source})" if other else ""),
        "levels": levels, "frame_rate": codec.frame_rate, **tokens,
        "codec": codec_metrics(codec, wavs, levels, codec_paths, transcriber), "continuation": continuation,
    }
    if precision_block is not None:
        report["precision"] = precision_block
    if out is not None:
        write_report(report, audio, Path(out), codec.sample_rate)
    return report
