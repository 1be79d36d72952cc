"""A run directory that travels: the codec it was trained with, recorded by content hash and path.

``train`` writes ``codec.json`` beside ``recipe.toml``. ``eval``/``generate`` (``pipeline.load_run``)
then load the recipe's codec file only if its sha256 is the recorded one, else look for that
content where a moved ``$PIANOGEN_HOME`` or a copied run would hold it, else name the file needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pianogen.errors import PianogenError
from pianogen.fetch.http import sha256_of
from pianogen.fetch.needs import codec_file
from pianogen.paths import atomic_write_bytes, home

if TYPE_CHECKING:
    from pianogen.recipe import Recipe

RECORD = "codec.json"


def record_codec(run_dir: Path, recipe: "Recipe") -> None:
    """Write ``run_dir/codec.json``: the codec's file name, path, size, sha256 and how to get it again."""
    from pianogen.fetch.weights import weights_for_codec

    path = codec_file(recipe.codec.name, recipe.codec.options)
    if path is None or not path.is_file():
        return  # a codec without a file (fresh weights) has nothing to find again
    record = {"name": recipe.codec.name, "checkpoint": recipe.codec.options.get("checkpoint", ""),
              "path": str(path.resolve()), "file": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}
    weights = weights_for_codec(recipe.codec.name, path)
    if weights is not None and path.name == weights[1].file:  # fetched, not trained: say how to fetch it again
        record["get"] = f"pianogen codec get {weights[0]}"
    atomic_write_bytes(run_dir / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def locate_codec(run_dir: Path, recipe: "Recipe") -> "Recipe":
    """The run's recipe pointed at a file with the recorded content; a one-line error naming it if none has.

    Only a missing file is looked for elsewhere: a file at the recipe's path with other content (a
    deliberate edit, or another codec under the same name) is refused, never silently replaced."""
    if not (run_dir / RECORD).is_file():
        return recipe  # runs trained before codec.json existed load as before
    record = json.loads((run_dir / RECORD).read_text())
    expected = codec_file(recipe.codec.name, recipe.codec.options)
    needed = (f"{run_dir} was trained with codec {record['name']} from {record['file']} "
              f"(sha256 {record['sha256'][:16]}..., {record['bytes']:,} bytes)")
    how = f", or run `{record['get']}`" if record.get("get") else ""
    if expected is not None and expected.is_file():
        if _same(expected, record):
            return recipe
        raise PianogenError(f"{needed}, but {expected} holds other weights (sha256 {sha256_of(expected)[:16]}...); "
                            f"put that file there{how}")
    candidates = [Path(record["path"]), home() / "codecs" / record["file"], run_dir / record["file"]]
    for candidate in candidates:
        if _same(candidate, record):
            recipe.codec.options["checkpoint"] = str(candidate)
            recipe.codec.train_recipe = ""  # found: nothing to train
            return recipe
    looked = ", ".join(str(p) for p in dict.fromkeys([expected, *candidates]) if p is not None)
    raise PianogenError(f"{needed}, found at none of {looked}: copy it to {expected or candidates[1]}{how}")


def _same(path: Path, record: dict) -> bool:
    return path.is_file() and path.stat().st_size == record["bytes"] and sha256_of(path) == record["sha256"]
