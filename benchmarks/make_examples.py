"""Make the example prompts the page offers (pianogen/web/examples/): short excerpts of composed pieces
played by the sampled Salamander grand, as Ogg Vorbis, with examples.json saying how each was made.

    pianogen data render /tmp/ex --minutes 1 --seed 7
    python benchmarks/make_examples.py /tmp/ex

Stereo at the render's 44.1 kHz (the take keeps its own rate and channels; only the continuation is the
codec's mono). A 10 ms fade-in so the clip does not start with a click; no fade-out: the model continues
from the clip's last moment, and a fade would hand it silence.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

OUT = Path(__file__).resolve().parents[1] / "pianogen" / "web" / "examples"
SECONDS = 7.0
START_S = 2.0  # past each piece's first chord, inside its first phrase
FADE_IN_S = 0.01
QUALITY = 0.6  # libsndfile's Vorbis compression level: 0 best, 1 smallest
RENDER = {"command": "pianogen data render OUT --minutes 1 --seed 7", "seed": 7, "minutes": 1}


def main(render_dir: Path) -> None:
    with open(render_dir / "maestro-v3.0.0.csv", newline="") as f:
        pieces = list(csv.DictReader(f))
    examples = []
    for number, piece in enumerate(pieces, start=1):
        audio, rate = sf.read(render_dir / piece["audio_filename"], dtype="float64", always_2d=True)
        clip = audio[int(START_S * rate):int((START_S + SECONDS) * rate)].copy()
        fade = int(FADE_IN_S * rate)
        clip[:fade] *= np.linspace(0.0, 1.0, fade)[:, None]
        tail_dbfs = 10 * np.log10(np.mean(clip[-rate:] ** 2) + 1e-20)
        assert tail_dbfs > -40, f"{piece['canonical_title']} ends in silence ({tail_dbfs:.1f} dBFS)"
        name = f"example_{number}.ogg"
        sf.write(OUT / name, clip.astype(np.float32), rate, format="OGG", subtype="VORBIS", compression_level=QUALITY)
        examples.append({"file": name, "title": piece["canonical_title"], "seconds": SECONDS,
                         "sample_rate": rate, "channels": clip.shape[1],
                         "made_from": {**RENDER, "piece": piece["audio_filename"], "start_s": START_S,
                                       "end_s": START_S + SECONDS, "fade_in_s": FADE_IN_S,
                                       "encoding": f"Ogg Vorbis, libsndfile compression level {QUALITY}"}})
    (OUT / "examples.json").write_text(json.dumps({
        "license": "Salamander Grand Piano V3 by Alexander Holm, CC BY 3.0 "
                   "(https://creativecommons.org/licenses/by/3.0/); the pieces were composed by "
                   "pianogen_data.composer",
        "examples": examples}, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
