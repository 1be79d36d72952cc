"""Does the piano model sound like piano, measured (issue #28 item 3): on performances it never heard, played by
another piano, and on the Salamander test notes, each check pass/fail with its numbers.

    python benchmarks/piano_model.py RUN [--out DIR] [--prompts 8] [--prompt-seconds 5] [--seconds 8]

RUN: a trained run's folder or a built-in run's name (piano). From nothing (cached under $PIANOGEN_HOME):
1. "other piano": `pianogen data render $PIANOGEN_HOME/rendered/fluidsynth-TimGM6mb-m4-s1 --minutes 4 --seed 1
   --soundfont /usr/share/sounds/sf2/TimGM6mb.sf2` (another seed than any training corpus's, another sampled
   piano), scored with `--split all` (no piece of it was heard, so every piece gives prompts);
2. "salamander": the Salamander test notes (data source `salamander`, split test: velocity layer 10, which neither
   the codec nor the token model trained on); single notes, so prompts long enough are the notes of >= 13 s.
Each is `pianogen eval RUN --corpus ... --prompts N --prompt-seconds P --seconds S --out OUT/<corpus>`; the
checks (pianogen.evaluation.eval_verdict) go to the terminal, OUT/piano_model.json, and a row block for RESULTS.md.
"""

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

from pianogen.evaluation.eval_verdict import RESULTS_HEADER, check_lines, piano_verdict, results_row
from pianogen.paths import atomic_write_bytes, home

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"
CORPORA = ("other_piano", "salamander")


def other_piano(minutes: float, seed: int, soundfont: Path) -> Path:
    """The other piano's corpus, rendered once (`data render` is resumable: a complete corpus renders nothing)."""
    folder = home() / "rendered" / f"fluidsynth-{soundfont.stem}-m{minutes:g}-s{seed}"
    run([sys.executable, "-m", "pianogen", "data", "render", str(folder), "--minutes", f"{minutes:g}", "--seed",
         str(seed), "--soundfont", str(soundfont)])
    return folder


def run(args: list[str]) -> None:
    print("$ " + " ".join(args[2:] if args[:2] == [sys.executable, "-m"] else args), file=sys.stderr, flush=True)
    done = subprocess.run(args, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: `{' '.join(args[2:])}` failed (exit {done.returncode})")


def commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parent)
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", metavar="RUN", help="a trained run's folder or a built-in run's name")
    parser.add_argument("--out", type=Path, default=Path("piano_model"), help="where eval reports and the JSON go")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per corpus (the issue: at least 8)")
    parser.add_argument("--prompt-seconds", type=float, default=5.0, help="prompt length (the issue: 5-10 s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="continuation scored (the issue: 8 s)")
    parser.add_argument("--minutes", type=float, default=4.0, help="minutes of the other piano's corpus")
    parser.add_argument("--seed", type=int, default=1, help="the other piano's composer seed (training used 0)")
    parser.add_argument("--soundfont", type=Path, default=Path(DEFAULT_SOUNDFONT), help="the other piano")
    parser.add_argument("--corpora", default=",".join(CORPORA), help=f"which of {', '.join(CORPORA)}")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    chosen = [c for c in args.corpora.split(",") if c]
    unknown = [c for c in chosen if c not in CORPORA]
    if unknown or not chosen:
        raise SystemExit(f"error: --corpora takes {', '.join(CORPORA)}, got {args.corpora!r}")
    if "other_piano" in chosen and not args.soundfont.is_file():
        raise SystemExit(f"error: no soundfont {args.soundfont} (Debian: apt-get install fluidsynth "
                         f"timgm6mb-soundfont)")

    specs = {}
    if "other_piano" in chosen:
        specs["other_piano"] = (str(other_piano(args.minutes, args.seed, args.soundfont)), "all")
    if "salamander" in chosen:
        specs["salamander"] = ("salamander", "test")
    result = {"run": str(args.run), "commit": commit(), "date": datetime.date.today().isoformat(),
              "settings": {"prompts": args.prompts, "prompt_seconds": args.prompt_seconds, "seconds": args.seconds,
                           "other_piano": {"minutes": args.minutes, "seed": args.seed,
                                           "soundfont": str(args.soundfont)}},
              "corpora": {}}
    rows = []
    for name, (corpus, split) in specs.items():
        out = args.out / name
        run([sys.executable, "-m", "pianogen", "eval", str(args.run), "--corpus", corpus, "--split", split,
             "--prompts", str(args.prompts), "--prompt-seconds", f"{args.prompt_seconds:g}",
             "--seconds", f"{args.seconds:g}", "--device", args.device, "--out", str(out)])
        report = json.loads((out / "eval.json").read_text())
        verdict = piano_verdict(report, min_prompts=args.prompts)
        print(f"\n{name} ({corpus}, split {split}): {verdict['verdict'].upper()}")
        for line in check_lines(verdict):
            print("  " + line)
        result["corpora"][name] = {"corpus": report["corpus"], "split": split, "eval_json": str(out / "eval.json"),
                                   **verdict}
        rows.append(results_row(f"{name} ({split})", verdict))
    verdicts = [v["verdict"] for v in result["corpora"].values()]
    result["verdict"] = "fail" if "fail" in verdicts else "undecided" if "undecided" in verdicts else "pass"
    result["results_md"] = "\n".join([RESULTS_HEADER, *rows])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "piano_model.json", json.dumps(result, indent=2).encode())
    print(f"\nverdict: {result['verdict'].upper()}\n\nFor benchmarks/RESULTS.md (run {args.run}, commit "
          f"{result['commit']}, {result['date']}):\n\n{result['results_md']}\n\n{args.out / 'piano_model.json'}")


if __name__ == "__main__":
    main()
