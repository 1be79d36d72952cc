"""What a recipe needs that this machine lacks (MAESTRO audio, codec weights), and the command that fetches it."""

from __future__ import annotations

import csv
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pianogen.errors import PianogenError
from pianogen.paths import expand

if TYPE_CHECKING:
    from pianogen.recipe import Recipe


@dataclass
class Need:
    what: str  # e.g. "MAESTRO 2018 audio under /x"
    command: str  # the exact shell command that fetches it
    fetch: Callable[[], Any]  # does what the command does


def codec_file(name: str, options: dict[str, Any]) -> Path | None:
    """The weights file codec ``name`` loads with these options; None when it loads none (fresh weights). A
    folder, or no checkpoint at all, means the file of the weights the codec loads by default (WeightsSpec)."""
    from pianogen.fetch.weights import default_path, weights_for_codec

    checkpoint = str(options.get("checkpoint") or "")
    default = weights_for_codec(name)
    if not checkpoint:
        return default_path(default[0]) if default else None
    path = expand(checkpoint)
    return path / default[1].file if default and path.is_dir() else path


def missing(recipe: "Recipe", progress: bool = True) -> list[Need]:
    """The MAESTRO audio and codec weights the recipe names but this machine lacks."""
    from pianogen.fetch.maestro import csv_name, default_root, get_maestro
    from pianogen.fetch.weights import default_path, get_codec_weights, weights_for_codec

    needs = []
    data = recipe.data
    if data.source == "maestro" and data.root:
        root = expand(data.root)
        if _maestro_lacks(root / csv_name("3.0.0"), data.years, data.skip_missing):
            years = ",".join(map(str, data.years)) or "all"
            command = f"pianogen data get maestro --years {years}"
            if root.resolve() != default_root().resolve():
                command += f" --root {shlex.quote(str(root))}"
            needs.append(Need(f"MAESTRO {years} audio under {root}", command,
                              lambda: get_maestro(root, data.years, progress=progress)))
    path = codec_file(recipe.codec.name, recipe.codec.options)
    weights = None if path is None or path.is_file() or recipe.codec.train_recipe else \
        weights_for_codec(recipe.codec.name, path)
    if weights is not None:  # a codec no plugin declares weights for says itself what it lacks when it loads
        name = weights[0]
        command = f"pianogen codec get {name}"
        if path.resolve() != default_path(name).resolve():
            command += f" --out {shlex.quote(str(path))}"
        needs.append(Need(f"{recipe.codec.name} weights {path}", command,
                          lambda: get_codec_weights(name, out=path, progress=progress)))
    return needs


def _maestro_lacks(csv_path: Path, years: list[int], skip_missing: bool) -> bool:
    if not csv_path.is_file():
        return True
    if skip_missing:
        return False
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if not years or int(r.get("year") or 0) in years]
    return not rows or any(not (csv_path.parent / r["audio_filename"]).is_file() for r in rows)


def ensure(recipe: "Recipe", fetch: bool = False, progress: bool = True) -> None:
    """Stop with one line naming the exact fetch command when something is missing; with ``fetch``, fetch it."""
    needs = missing(recipe, progress)
    if not needs:
        return
    commands = " && ".join(n.command for n in needs)
    if not fetch:
        raise PianogenError(f"missing data/weights ({'; '.join(n.what for n in needs)}): run `{commands}` "
                            f"(or add --fetch)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PianogenError(f"--fetch under torchrun would fetch once per process: run `{commands}` first")
    for need in needs:
        need.fetch()
