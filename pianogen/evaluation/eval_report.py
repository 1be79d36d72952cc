"""The ``pianogen eval`` report: eval.json, report.md (tables next to their floors), the drift figure and
Mel spectrograms, from the numbers ``pianogen.evaluation.evaluate`` measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pianogen.evaluation.codec_metrics import markdown_tables
from pianogen.evaluation.strikes import STRIKE_DB
from pianogen.paths import atomic_write_bytes


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(fmt(v) for v in row) + " |" for row in rows), ""]


def _corpus_lines(r: dict[str, Any]) -> list[str]:
    """A corpus other than the run's own (``eval --corpus``): what it is, and where the floors come from."""
    corpus = r.get("corpus")
    if not corpus:
        return []
    where = f" at `{corpus['root']}`" if corpus.get("root") else ""
    return [f"Corpus `{corpus['name']}` (data source `{corpus['source']}`{where}), not the run's own; the token "
            f"floors are fitted on {r['references_fitted_on']}.", ""]


def report_markdown(r: dict[str, Any]) -> str:
    """The eval report: tokens (model vs floors by level), codec by levels, drift by second."""
    K, c = r["levels"], r["continuation"]
    lines = [f"# Evaluation of {r['run_dir']}", "",
             f"Split `{r['split']}`, checkpoint step {r['checkpoint_step']}, model `{r['model']}`, codec "
             f"`{r['codec_name']}` ({r['frame_rate']:g} frames/s, {K} levels modelled), device {r['device']}.", "",
             *_corpus_lines(r),
             f"## Tokens ({r['targets_per_level']} next-frame targets per level, each scored once: windows of "
             f"{r['windows']['frames']} frames sharing one)", "",
             "NLL in nats/token; `unigram` and `repeat` are floors fitted on the training tokens.", ""]
    rows = [[f"level {k + 1}", r["nll_per_level"][k], r["unigram_nll_per_level"][k], r["repeat_nll_per_level"][k],
             r["perplexity_per_level"][k], r["accuracy_per_level"][k], r["unigram_accuracy_per_level"][k],
             r["repeat_accuracy_per_level"][k]] for k in range(K)]
    rows.append(["bits/s", r["bits_per_second"], r["unigram_bits_per_second"], r["repeat_bits_per_second"],
                 "", "", "", ""])
    lines += _table(["", "model NLL", "unigram NLL", "repeat NLL", "model ppl", "model acc", "unigram acc",
                     "repeat acc"], rows)
    if "precision" in r:
        p = r["precision"]
        lines += [f"At precision `{p['name']}` (continuations below sampled at it): NLL per level "
                  + ", ".join(f"{v:.4f}" for v in p["nll_per_level"]) + " against fp32's "
                  + ", ".join(f"{v:.4f}" for v in p["fp32_nll_per_level"]) + f": {p['nll_change']:+.2%} in total.", ""]
    codec = r["codec"]
    lines += [f"## Codec ({codec['seconds']:.1f} s of `{r['split']}` audio; first k levels, then Opus on the same "
              "audio; codes used per level)", ""]
    lines += markdown_tables(codec, codec["codebook_size"])
    lines += [f"## Continuation drift ({c['n_prompts']} prompts of {c['prompt_seconds']:g} s, "
              f"{c['seconds']:g} s continued, sampling {c['sampling']}, no post-filter)", ""]
    lines += [f"- `{name}`: {text}" for name, text in c["signals"].items()] + [""]
    lines += ["Floors (the last columns): the same metric with another piece of the corpus, or noise at the "
              "prompt's loudness, in place of the continuation. A number only means something next to them.", ""]
    for title, metric in DRIFT_TABLES:
        names = [name for name in c["signals"] if metric in c[name]]
        lines += [f"### {title}", ""]
        lines += _table(["second", *(name.replace("_", " ") for name in names)],
                        [[t, *(c[name][metric][b] for name in names)]
                         for b, t in enumerate(c["seconds_after_prompt"])])
    lines += notes_markdown(c.get("notes"))
    return "\n".join(lines)


NOTE_COLUMNS = [  # (header, metric) of the notes table
    ("notes/s", "notes_per_second"), ("struck notes/s", "struck_notes_per_second"),
    ("distinct pitches", "distinct_pitches"),
    ("pitch-class corr. to prompt", "pitch_class_correlation"), ("key agreement", "key_agreement"),
    ("level dB/s", "level_db_per_second"),  # one slope over the continuation: no per-second table
]
PER_SECOND_UP_TO = 10  # continuations this many seconds or shorter also get the notes by second


def notes_markdown(notes: dict[str, Any] | None) -> list[str]:
    """The notes the transcriber heard: signal x metric (mean over prompts and seconds), then by second."""
    if not notes:
        return []
    if "unavailable" in notes:
        return ["## Notes heard in the continuation", "", f"> warning: notes not measured: {notes['unavailable']}",
                ""]
    lines = [f"## Notes heard in the continuation (transcriber `{notes['transcriber']}`; mean over prompts and "
             "1 s bins)", "",
             "Per second after the prompt: onsets (notes/s), the onsets whose partials jump by at least "
             f"{STRIKE_DB:g} dB (struck notes/s: a wavering held chord is heard as notes, not as struck ones), "
             "pitches sounding (distinct pitches), Pearson correlation "
             "of the sounding pitch-class profile with the prompt's, and the MIREX key score of the second's key "
             "against the prompt's (the original prompt's notes for every signal; 1 same key, 0.5 a fifth above, "
             "0.3 relative, 0.2 parallel major/minor); and the slope of its level over the continuation (level dB/s: "
             "a lone note's tail fades, a drone holds). `true` (the real continuation) is the ceiling; `codec`, the "
             "true continuation's codes decoded, is what a token model that sampled every true code would give (the "
             "codec's own ceiling); `other_piece`, the noises and `drone` are floors.", ""]
    columns = [(header, metric) for header, metric in NOTE_COLUMNS  # a report from before struck notes lacks them
               if all(metric in notes[name] for name in notes["signals"])]
    lines += _table(["signal", *(header for header, _ in columns)],
                    [[name.replace("_", " "), *(notes[name][metric] for _, metric in columns)]
                     for name in notes["signals"]])
    seconds = notes["seconds_after_prompt"]
    if len(seconds) <= PER_SECOND_UP_TO:
        for header, metric in columns:
            if metric not in notes[notes["signals"][0]]["per_second"]:
                continue
            lines += [f"### Notes by second: {header}", ""]
            lines += _table(["second", *(name.replace("_", " ") for name in notes["signals"])],
                            [[t, *(notes[name]["per_second"][metric][b] for name in notes["signals"])]
                             for b, t in enumerate(seconds)])
    return lines


DRIFT_TABLES = [  # (title, metric): each a table by second, a column per signal that has the metric
    ("Chroma similarity to the prompt's chroma (higher = staying in key)", "chroma_similarity"),
    ("Bad-frame fraction: near-silent or noise-like 0.1 s frames (lower)", "bad_frame_fraction"),
    ("Mel L1 vs the true continuation, original audio (lower = closer)", "mel_l1_vs_raw"),
    ("Mel L1 vs the true continuation, codec-resynthesised (lower = closer)", "mel_l1_vs_resynth"),
    ("Spectral convergence vs the codec-resynthesised true continuation (lower = closer)",
     "spectral_convergence_vs_resynth"),
]


def plot_drift(c: dict[str, Any], out: Path) -> None:
    from pianogen.evaluation.plots import plt, save_figure

    x = c["seconds_after_prompt"]
    panels = [("Mel L1 vs true", "mel_l1_vs_"), ("spectral convergence vs true", "spectral_convergence_vs_"),
              ("chroma similarity to prompt", "chroma_similarity"), ("near-silent / noise-like frames",
                                                                     "bad_frame_fraction")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, (title, key) in zip(axes, panels):
        for name in c["signals"]:
            for metric, values in c[name].items():
                if metric.startswith(key):
                    ax.plot(x, values, marker="o", linestyle="--" if name in c.get("floors", ()) else "-",
                            label=f"{name} {metric.removeprefix(key)}".strip())
        ax.set(title=title, xlabel="seconds after prompt")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, out)


def write_report(report: dict[str, Any], audio: list[dict[str, torch.Tensor]], out: Path, sample_rate: int,
                 max_figures: int = 4) -> None:
    """eval.json, report.md, drift.png and, per prompt (up to ``max_figures``), Mel spectrograms of
    prompt + generated and prompt + true (resynthesised) continuation."""
    from pianogen.evaluation.plots import plot_mel

    out.mkdir(parents=True, exist_ok=True)
    c = report["continuation"]
    atomic_write_bytes(out / "eval.json", json.dumps(report, indent=2).encode())  # a killed eval leaves no half file
    atomic_write_bytes(out / "report.md", report_markdown(report).encode())
    plot_drift(c, out / "drift.png")
    for i, signals in enumerate(audio[:max_figures]):
        name = c["prompts"][i]["audio_filename"]
        for kind in ("generated", "resynth"):
            plot_mel(signals[kind], sample_rate, out / f"mel_{i}_{kind}.png", boundary_s=c["prompt_seconds"],
                     title=f"{name}: prompt | {kind} continuation")
