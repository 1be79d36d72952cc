"""Built-in PianoGen plugin: the pretrained run `piano` (the trained codec and token model), shipped inside the
package as basic-pitch ships its model, and found by name: ``pianogen generate piano --prompt take.wav``.

Its folder ``piano/`` is laid out as ``pianogen.runs`` describes and is never written to at run time; a retrain
replaces it once with ``pianogen.runs.pack_run(RUN_DIR, PIANO)`` (recipe with ``$RUN/codec.safetensors``, the
codec, the best weights and meta, SHA256SUMS; <= 30 MB in all). A copy of the package without the trained
files (a source checkout before a release) still registers the name, and using it says in one line that the
run is not installed here.
"""

from __future__ import annotations

from pathlib import Path

import pianogen
from pianogen.hookspecs import Register

PIANO = Path(__file__).resolve().parent / "piano"


@pianogen.hookimpl
def register_runs(register: Register) -> None:
    register("piano", PIANO)


__all__ = ["PIANO", "register_runs"]
