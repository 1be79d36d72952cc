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
    from pianogen.fetch.weights import CODECS, default_path

    path = codec_file(recipe.codec.name, recipe.codec.options)
    if path is None or not path.is_file():
        return  # a codec without a file (fresh weights) has nothing to find again
    record = {"name": recipe.codec.name, "checkpoint": recipe.codec.options.get("checkpoint", ""),
              "path": str(path.resolve()), "file": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}
    if recipe.codec.name in CODECS and path.name == default_path(recipe.codec.name).name:
        record["get"] = f"pianogen codec get {recipe.codec.name}"
    atomic_write_bytes(run_dir / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def locate_codec(run_dir: Path, recipe: "Recipe") -> "Recipe":
    """The run's recipe pointed at a file with the recorded content; a one-line error naming it if none has."""
    if not (run_dir / RECORD).is_file():
        return recipe  # runs trained before codec.json existed load as before
    record = json.loads((run_dir / RECORD).read_text())
    expected = codec_file(recipe.codec.name, recipe.codec.options)
    candidates = [expected, Path(record["path"]), home() / "codecs" / record["file"], run_dir / record["file"]]
    seen: list[Path] = []
    for candidate in candidates:
        if candidate is None or candidate in seen:
            continue
        seen.append(candidate)
        if (candidate.is_file() and candidate.stat().st_size == record["bytes"]
                and sha256_of(candidate) == record["sha256"]):
            if candidate != expected:
                recipe.codec.options["checkpoint"] = str(candidate)
                recipe.codec.train_recipe = ""  # found: nothing to train
            return recipe
    how = f", or run `{record['get']}`" if record.get("get") else ""
    raise PianogenError(f"{run_dir} was trained with codec file {record['file']} (sha256 {record['sha256'][:16]}..., "
                        f"{record['bytes']:,} bytes), found at none of {', '.join(map(str, seen))}: copy it to "
                        f"{expected or seen[0]}{how}")
