"""``pianogen eval RUN_DIR``: objective evaluation of a trained run.

Three parts, each with a floor or reference to read it against:
- tokens: the model's NLL / perplexity / accuracy per level and bits per second of audio on a split,
  next to two reference models fitted on the training tokens (``unigram``, ``repeat``);
- codec: how well the run's codec reconstructs the split's audio from its first 1, 2, 4, 8, all levels;
- continuation: prompts from the split continued by the model and compared, second by second, with
  the true continuation (codec-resynthesised and raw): the drift curve of pianogen.drift.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianogen import pipeline
from pianogen.codec_metrics import markdown_tables
from pianogen.drift import drift_curves
from pianogen.errors import PianogenError
from pianogen.generate import counting_progress

LN2 = math.log(2)
CODEC_LEVELS: tuple[int | str, ...] = (1, 2, 4, 8, "all")
SIGNALS = {
    "generated": "the model's continuation, decoded by the run's codec",
    "resynth": "the true continuation, codec-resynthesised from the levels the model predicts",
    "raw": "the true continuation, the original audio",
}
REFERENCES = {"generated": ["resynth", "raw"], "resynth": ["raw"]}  # who each signal is compared with


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


@torch.no_grad()
def token_metrics(model: torch.nn.Module, cache: Any, split: str, levels: int, window: int,
                  refs: ReferenceModels, device: torch.device, batch_size: int = 8,
                  progress: bool = False) -> dict[str, Any]:
    """Model and reference scores on the split's next-frame targets: windows of ``window`` frames with
    no overlap (each target predicted once, from the frames before it in its window), mask honoured."""
    from pianogen.data.windows import WindowDataset, iter_windows

    n_batches = math.ceil(len(WindowDataset(cache, split, levels, window)) / batch_size)
    names = ("model", "unigram", "repeat")
    nll = {n: torch.zeros(levels, dtype=torch.float64) for n in names}
    hits = {n: torch.zeros(levels, dtype=torch.float64) for n in names}
    count = 0.0
    with counting_progress(progress, transient=True) as bar:
        task = bar.add_task(f"scoring {split} tokens", total=n_batches)
        for batch in iter_windows(cache, split, levels, window, batch_size):
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
    out: dict[str, Any] = {"targets_per_level": int(count), "windows": {"frames": window, "overlap": 0.0}}
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


def codec_metrics(codec: Any, wavs: list[torch.Tensor], model_levels: int) -> dict[str, Any]:
    """Reconstruction by levels with bitrates, codebook health per level, Opus at the codec's bitrate and 2x."""
    from pianogen.codec_metrics import evaluate_codec

    result = evaluate_codec(codec, wavs, CODEC_LEVELS)
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


def _load_segment(path: Path, sample_rate: int, start: int, length: int) -> torch.Tensor:
    from pianogen.data.audio import load_audio

    wav = load_audio(path, sample_rate)[0, start:start + length]
    return torch.nn.functional.pad(wav, (0, length - wav.numel()))


def continuation_metrics(recipe: Any, codec: Any, model: Any, cache: Any, split: str, n_prompts: int,
                         prompt_seconds: float, seconds: float, seed: int, device: torch.device,
                         progress: bool) -> tuple[dict[str, Any], list[dict[str, torch.Tensor]]]:
    """Continue prompts from the split and score the drift against the true continuation, by second.
    Returns the JSON block and, per prompt, the decoded {signal: FloatTensor[S]} audio (for figures)."""
    from pianogen.generate import GenerationRequest, continue_codes

    levels, hop, sr = recipe.codec.levels, codec.hop_length, codec.sample_rate
    prompt_frames = max(1, round(prompt_seconds * codec.frame_rate))
    frames = round(seconds * codec.frame_rate)
    chosen = pick_prompts(cache.pieces(split), n_prompts, prompt_frames, frames)
    if not chosen:
        raise PianogenError(f"no {split} piece is longer than the {prompt_seconds} s prompt + {seconds} s "
                            f"continuation asked: use a shorter --prompt-seconds or --seconds")
    codes = torch.stack([torch.from_numpy(np.asarray(cache.codes(p)[:levels, s:s + prompt_frames + frames],
                                                     dtype=np.int64)) for p, s in chosen]).to(device)
    prompt = codes[:, :, :prompt_frames]
    g = recipe.generate
    request = GenerationRequest(prompt=split, seconds=seconds, out=Path("."), prompt_seconds=prompt_seconds,
                                temperature=g.temperature, top_k=g.top_k, top_p=g.top_p, seed=seed)
    generated = continue_codes(model, prompt, frames, request, progress)
    with torch.inference_mode():
        decoded = {"generated": codec.decode(torch.cat([prompt, generated], dim=-1)).float().cpu(),
                   "resynth": codec.decode(codes).float().cpu()}
    paths = _piece_paths(recipe)
    boundary, total = prompt_frames * hop, (prompt_frames + frames) * hop
    audio, curves = [], []
    for i, (piece, start) in enumerate(chosen):
        signals = {"generated": decoded["generated"][i, 0, :total], "resynth": decoded["resynth"][i, 0, :total],
                   "raw": _load_segment(paths[piece["audio_filename"]], sr, start * hop, total)}
        audio.append(signals)
        curves.append(drift_curves(signals, boundary, REFERENCES, sr))
    mean = {name: {metric: np.mean([c[name][metric] for c in curves], axis=0).tolist() for metric in metrics}
            for name, metrics in curves[0].items()}
    n_bins = len(next(iter(mean["raw"].values())))
    block = {
        "split": split, "levels": levels, "n_prompts": len(chosen), "prompt_seconds": prompt_frames / codec.frame_rate,
        "seconds": frames / codec.frame_rate, "bin_seconds": 1.0, "postfilters": "none (raw decoder output)",
        "sampling": {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p, "seed": seed},
        "prompts": [{"audio_filename": p["audio_filename"], "start_s": s / codec.frame_rate} for p, s in chosen],
        "signals": SIGNALS, "seconds_after_prompt": [float(b + 1) for b in range(n_bins)], **mean,
    }
    return block, audio


def evaluate(run_dir: str | Path, split: str = "test", out: str | Path | None = None, n_prompts: int = 4,
             prompt_seconds: float | None = None, seconds: float | None = None, codec_seconds: float = 4.0,
             codec_pieces: int = 8, seed: int = 0, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Evaluate a run's ``best`` checkpoint on ``split``; with ``out``, also write eval.json, report.md and PNGs.

    prompt_seconds / seconds default to the recipe's [generate] values; the codec is scored on the
    first ``codec_seconds`` of up to ``codec_pieces`` pieces of the split.
    """
    if split not in ("train", "validation", "test"):
        raise PianogenError(f"split must be train, validation or test, got '{split}'")
    if n_prompts < 1:
        raise PianogenError(f"n_prompts must be >= 1, got {n_prompts}")
    torch_device = pipeline.pick_device(device)
    recipe, codec, model, meta = pipeline.load_run(run_dir, "best", torch_device)
    cache = pipeline.build_token_cache(recipe, codec, progress=progress)
    levels = recipe.codec.levels
    if not cache.pieces(split):
        raise PianogenError(f"the run's corpus has no '{split}' pieces")

    refs = ReferenceModels.fit((cache.codes(p) for p in cache.pieces("train")), levels, codec.codebook_size)
    tokens = token_metrics(model, cache, split, levels, recipe.data.window, refs, torch_device,
                           recipe.train.batch_size, progress)
    paths = _piece_paths(recipe)
    n_codec = round(codec_seconds * codec.sample_rate)
    wavs = [_load_segment(paths[p["audio_filename"]], codec.sample_rate, 0, n_codec)
            for p in cache.pieces(split)[:codec_pieces]]
    continuation, audio = continuation_metrics(
        recipe, codec, model, cache, split, n_prompts, prompt_seconds or recipe.generate.prompt_seconds,
        seconds or recipe.generate.seconds, seed, torch_device, progress)
    report = {
        "run_dir": str(run_dir), "split": split, "checkpoint_step": meta["step"], "device": str(torch_device),
        "codec_name": recipe.codec.name, "model": recipe.model.name if recipe.model else None,
        "levels": levels, "frame_rate": codec.frame_rate, **tokens,
        "codec": codec_metrics(codec, wavs, levels), "continuation": continuation,
    }
    if out is not None:
        write_report(report, audio, Path(out), codec.sample_rate)
    return report


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(fmt(v) for v in row) + " |" for row in rows), ""]


def report_markdown(r: dict[str, Any]) -> str:
    """The eval report: tokens (model vs floors by level), codec by levels, drift by second."""
    K, c = r["levels"], r["continuation"]
    lines = [f"# Evaluation of {r['run_dir']}", "",
             f"Split `{r['split']}`, checkpoint step {r['checkpoint_step']}, model `{r['model']}`, codec "
             f"`{r['codec_name']}` ({r['frame_rate']:g} frames/s, {K} levels modelled), device {r['device']}.", "",
             f"## Tokens ({r['targets_per_level']} next-frame targets per level, windows of "
             f"{r['windows']['frames']} frames without overlap)", "",
             "NLL in nats/token; `unigram` and `repeat` are floors fitted on the training tokens.", ""]
    rows = [[f"level {k + 1}", r["nll_per_level"][k], r["unigram_nll_per_level"][k], r["repeat_nll_per_level"][k],
             r["perplexity_per_level"][k], r["accuracy_per_level"][k], r["unigram_accuracy_per_level"][k],
             r["repeat_accuracy_per_level"][k]] for k in range(K)]
    rows.append(["bits/s", r["bits_per_second"], r["unigram_bits_per_second"], r["repeat_bits_per_second"],
                 "", "", "", ""])
    lines += _table(["", "model NLL", "unigram NLL", "repeat NLL", "model ppl", "model acc", "unigram acc",
                     "repeat acc"], rows)
    codec = r["codec"]
    lines += [f"## Codec ({codec['seconds']:.1f} s of `{r['split']}` audio; first k levels, then Opus on the same "
              "audio; codes used per level)", ""]
    lines += markdown_tables(codec, codec["codebook_size"])
    lines += [f"## Continuation drift ({c['n_prompts']} prompts of {c['prompt_seconds']:g} s, "
              f"{c['seconds']:g} s continued, sampling {c['sampling']}, no post-filter)", ""]
    lines += [f"- `{name}`: {text}" for name, text in c["signals"].items()] + [""]
    lines += ["Mel L1 / spectral convergence (SC): lower = closer to the true continuation. Chroma: cosine to the "
              "prompt's chroma (staying in key). Bad: fraction of near-silent or noise-like 0.1 s frames.", ""]
    g, s, w = c["generated"], c["resynth"], c["raw"]
    rows = [[t, g["mel_l1_vs_resynth"][b], g["spectral_convergence_vs_resynth"][b], g["mel_l1_vs_raw"][b],
             s["mel_l1_vs_raw"][b], g["chroma_similarity"][b], s["chroma_similarity"][b], w["chroma_similarity"][b],
             g["bad_frame_fraction"][b], w["bad_frame_fraction"][b]]
            for b, t in enumerate(c["seconds_after_prompt"])]
    lines += _table(["second", "gen Mel L1 vs resynth", "gen SC vs resynth", "gen Mel L1 vs raw",
                     "resynth Mel L1 vs raw", "gen chroma", "resynth chroma", "raw chroma", "gen bad",
                     "raw bad"], rows)
    return "\n".join(lines)


def plot_drift(c: dict[str, Any], out: Path) -> None:
    from pianogen.plots import plt, save_figure

    x = c["seconds_after_prompt"]
    panels = [("Mel L1 vs true", "mel_l1_vs_"), ("spectral convergence vs true", "spectral_convergence_vs_"),
              ("chroma similarity to prompt", "chroma_similarity"), ("near-silent / noise-like frames",
                                                                     "bad_frame_fraction")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, (title, key) in zip(axes, panels):
        for name in SIGNALS:
            for metric, values in c[name].items():
                if metric.startswith(key):
                    ax.plot(x, values, marker="o", label=f"{name} {metric.removeprefix(key)}".strip())
        ax.set(title=title, xlabel="seconds after prompt")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, out)


def write_report(report: dict[str, Any], audio: list[dict[str, torch.Tensor]], out: Path, sample_rate: int,
                 max_figures: int = 4) -> None:
    """eval.json, report.md, drift.png and, per prompt (up to ``max_figures``), Mel spectrograms of
    prompt + generated and prompt + true (resynthesised) continuation."""
    from pianogen.plots import plot_mel

    out.mkdir(parents=True, exist_ok=True)
    c = report["continuation"]
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    plot_drift(c, out / "drift.png")
    for i, signals in enumerate(audio[:max_figures]):
        name = c["prompts"][i]["audio_filename"]
        for kind in ("generated", "resynth"):
            plot_mel(signals[kind], sample_rate, out / f"mel_{i}_{kind}.png", boundary_s=c["prompt_seconds"],
                     title=f"{name}: prompt | {kind} continuation")
