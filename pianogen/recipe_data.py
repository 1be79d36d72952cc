"""``[data]``: the host's keys (DataConfig) and the data source's own, checked against the options it registers.

The host reads only how audio becomes training windows (chunking, windows, workers, strictness); every other
key belongs to the source, which names its keys with a dataclass (``register(name, factory, config=Options)``),
as a codec does: an unknown key is one line with did-you-mean, a value of the wrong type too, and the source's
``__post_init__`` checks ranges. ``data.mix``'s parts are checked the same way, each against its own source.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pianogen.errors import PianogenError, closest
from pianogen.recipe_values import build_table, check_value


@dataclass
class DataConfig:
    source: str = "synthetic"  # a registered data source: synthetic | rendered | maestro | folder | salamander | mix
    strict: bool = False  # fail on the first unreadable audio file instead of skipping it
    chunk_seconds: float = 15.0  # audio encoded per codec call
    chunk_overlap_seconds: float = 2.0  # context on each side of a chunk, trimmed after encoding
    window: int = 2048  # frames per training window (the model's context)
    window_overlap: float = 0.5  # fraction of a window shared with the next one
    num_workers: int = 2  # DataLoader worker processes
    # the source's own keys (root, minutes, seed, mix, ...): every other key of [data], checked against the
    # options the source registers and filled with their defaults (source_options)
    options: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        """A source's key reads like a host one (``recipe.data.root``); only called for names not found."""
        options = self.__dict__.get("options") or {}
        if name in options:
            return options[name]
        raise AttributeError(f"data source '{self.__dict__.get('source')}' has no key '{name}'")


HOST_KEYS = tuple(f.name for f in dataclasses.fields(DataConfig) if f.name != "options")


def _source_fields(entry: Any) -> dict[str, Any] | None:
    from pianogen.registry import config_fields

    return config_fields(entry)


def _readers(key: str) -> list[str]:
    """The registered sources that take ``key``."""
    from pianogen.registry import registered

    return sorted(name for name, entry in registered("data_source").items() if key in (_source_fields(entry) or {}))


def source_options(where: str, source: str, given: dict[str, Any], lenient: bool = False) -> dict[str, Any]:
    """A source's keys from a table named ``where`` (``data``, ``data.mix.0``): unknown ones refused with
    did-you-mean, values checked against the source's type hints and its options' own checks, then filled
    with its defaults (so a recipe that states a default and one that leaves it out key the same tokens).
    ``lenient``: a key another source takes is dropped with a warning (an override can switch
    ``data.source`` but cannot unset the old source's keys)."""
    from pianogen.registry import config_hints, lookup

    try:
        entry = lookup("data_source", source)
    except PianogenError as err:
        raise PianogenError(f"{where}.source: {err}") from None
    fields, hints = _source_fields(entry), config_hints(entry)
    values = {}
    for key, value in given.items():
        if fields is not None and key not in fields:
            readers = _readers(key)
            if lenient and readers:
                warnings.warn(f"{where}.{key} is read by source {', '.join(readers)}, not '{source}'; ignored",
                              stacklevel=3)
                continue
            known = sorted(fields) + [k for k in HOST_KEYS if where == "data"]
            raise PianogenError(f"unknown key '{where}.{key}' for data source '{source}'"
                                f"{closest(key, known, f'{where}.')}; valid: {', '.join(known) or 'none'}")
        values[key] = check_value(f"{where}.{key}", value, hints[key]) if key in hints else value
    if entry.config is None:  # a factory's signature: its defaults fill what the table leaves out
        defaults = {n: p.default for n, p in (fields or {}).items() if p.default is not inspect.Parameter.empty}
        return {**defaults, **values}
    lacking = [f.name for f in dataclasses.fields(entry.config) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if lacking:
        raise PianogenError(f"data source '{source}' needs {', '.join(f'{where}.{k}' for k in lacking)}")
    try:
        options = entry.config(**values)  # its __post_init__ checks ranges before anything runs
    except PianogenError as err:  # it names its keys data.<key>; inside data.mix they are data.mix.<i>.<key>
        message = str(err)
        for key in values if where != "data" else ():
            message = message.replace(f"data.{key} ", f"{where}.{key} ")
        raise PianogenError(message) from None
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def data_table(table: Any) -> DataConfig:
    """``[data]`` -> DataConfig: the host's keys checked here, every other key as the source's option."""
    if not isinstance(table, dict):
        raise PianogenError(f"[data] must be a table, got {table!r}")
    data = build_table("data", DataConfig, {k: v for k, v in table.items() if k in HOST_KEYS})
    given = {k: v for k, v in table.items() if k not in HOST_KEYS}
    if "mix" in given and data.source != "mix":
        raise PianogenError(f"data.mix is read by data.source = \"mix\" only (data.source is '{data.source}')")
    data.options = source_options("data", data.source, given, lenient=True)
    return data


@dataclass(frozen=True)
class MixPart:
    label: str  # the group its pieces get (Piece.group) and the folder their names start with
    source: str  # a registered data source
    config: dict[str, Any]  # its source's keys, checked and filled, as its factory takes them
    data: DataConfig  # the same as a [data] table of that source (the host's keys at their defaults)
    share: float  # fraction of training draws, the shares normalised to sum to 1


def mix_parts(entries: list[dict[str, Any]]) -> list[MixPart]:
    """``data.mix`` -> its parts, each checked like a [data] table of its own: a registered source (not
    "mix" again), only keys that source takes (did-you-mean for the others), values of the right type, and
    a positive share. Labels are the source names, numbered where a source comes twice."""
    if not entries:
        raise PianogenError('data.source = "mix" needs data.mix, e.g. [{source = "salamander", share = 0.6}, '
                            '{source = "synthetic", minutes = 20.0, share = 0.4}]')
    parsed = []
    for i, entry in enumerate(entries):
        where = f"data.mix.{i}"
        if not isinstance(entry, dict) or "source" not in entry or "share" not in entry:
            raise PianogenError(f"{where} must be a table with a source and a share, got {entry!r}")
        share = entry["share"]
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not (share > 0 and math.isfinite(share)):
            raise PianogenError(f"{where}.share must be a number > 0, got {share!r}")
        source = check_value(f"{where}.source", entry["source"], str)
        if source == "mix":
            raise PianogenError(f"{where}: a mix cannot hold another mix; list its parts here")
        options = source_options(where, source, {k: v for k, v in entry.items() if k not in ("source", "share")})
        parsed.append((source, options, float(share)))
    total = sum(share for _, _, share in parsed)
    repeats, seen = Counter(source for source, _, _ in parsed), Counter()
    parts = []
    for source, options, share in parsed:
        seen[source] += 1
        label = source if repeats[source] == 1 else f"{source}{seen[source]}"
        parts.append(MixPart(label, source, options, DataConfig(source=source, options=options), share / total))
    return parts
