"""Checking one recipe value against its type hint, range and choices, and a table against its dataclass (a leaf:
imports only errors)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import PurePath
from typing import Any, Literal

from pianogen.errors import PianogenError, closest

# key -> (low, high, low inclusive); None = unbounded on that side
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "data.chunk_seconds": (0, None, False),
    "data.chunk_overlap_seconds": (0, None, True), "data.window": (2, None, True),
    "data.window_overlap": (0, 1, True), "data.num_workers": (0, None, True),
    "codec.levels": (1, None, True),
    "train.epochs": (1, None, True), "train.max_steps": (0, None, True), "train.batch_size": (1, None, True),
    "train.grad_accum": (1, None, True), "train.lr": (0, None, False), "train.weight_decay": (0, None, True),
    "train.warmup": (0, 1, True), "train.grad_clip": (0, None, True), "train.log_every": (1, None, True),
    "train.save_every": (0, None, True),
    "train.val_batches": (0, None, True), "train.scheduled_sampling": (0, 1, True),
    "codec_train.steps": (1, None, True), "codec_train.batch_size": (1, None, True),
    "codec_train.segment_seconds": (0, None, False), "codec_train.lr": (0, None, False),
    "codec_train.quantizer_dropout": (0, 1, True), "codec_train.warmup": (0, 1, True),
    "codec_train.grad_clip": (0, None, True),
    **{f"codec_train.{name}_weight": (0, None, True) for name in ("wav", "mel", "stft", "commit")},
    "generate.seconds": (0, None, False), "generate.prompt_seconds": (0, None, False),
    "generate.temperature": (0, None, True), "generate.top_k": (0, None, True), "generate.top_p": (0, 1, True),
    "generate.prompt_prior": (0, None, True), "generate.quiet_temperature_scale": (0, None, True),
}
RANGES.update({"run.seed": (0, 2**63 - 1, True)})  # torch seeds take 64 bits
# list key -> (length, low, high): each item in [low, high) (AdamW refuses a beta of 1 or more, after minutes)
LIST_RANGES: dict[str, tuple[int, float, float]] = {"train.betas": (2, 0.0, 1.0)}
CHOICES = {"train.schedule": ("onecycle", "cosine", "constant"), "train.precision": ("fp32", "bf16"),
           "codec_train.precision": ("fp32", "bf16"), "codec_train.schedule": ("constant", "cosine"),
           "codec_train.train": ("all", "decoder")}


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a type hint; hints this cannot judge (TypeVars, ...) are left to the plugin."""
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        items = [h for h in typing.get_args(hint) if h is not Ellipsis]
        return isinstance(value, list) and all(any(_type_ok(v, h) for h in items) or not items for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is Any or origin is not None or not isinstance(hint, type):
        return True
    if issubclass(hint, PurePath):
        return isinstance(value, str)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("typing.", "")


def check_value(key: str, value: Any, hint: Any, rule: str = "") -> Any:
    """The value (a float hint makes it float), or a PianogenError naming ``key``; ``rule``: the key whose
    range and choices apply, when not ``key`` itself (a part of data.mix obeys data's)."""
    rule = rule or key
    if not _type_ok(value, hint):
        raise PianogenError(f"{key} must be {_type_name(hint)}, got {value!r}")
    if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
        raise PianogenError(f"{key} must be a finite number, got {value!r}")
    if rule in RANGES and not isinstance(value, list):
        low, high, low_inclusive = RANGES[rule]
        too_low = low is not None and (value < low if low_inclusive else value <= low)
        if too_low or (high is not None and value > high):
            bound = f"{'>=' if low_inclusive else '>'} {low}" if too_low else f"<= {high}"
            raise PianogenError(f"{key} must be {bound}, got {value!r}")
    if rule in LIST_RANGES:
        length, low, high = LIST_RANGES[rule]
        if len(value) != length or not all(low <= v < high for v in value):
            raise PianogenError(f"{key} must be {length} numbers, each >= {low:g} and < {high:g}, got {value!r}")
    if rule in CHOICES and value not in CHOICES[rule]:
        raise PianogenError(f"{key} must be one of {', '.join(CHOICES[rule])}, got {value!r}"
                            f"{closest(str(value), CHOICES[rule])}")
    return float(value) if hint is float else value


def build_table(name: str, cls: type, table: Any, rules: str = "") -> Any:
    """A recipe table -> ``cls`` (a dataclass), every key known (did-you-mean) and every value checked;
    ``rules``: the table whose ranges and choices apply, when not ``name`` itself."""
    if not isinstance(table, dict):
        raise PianogenError(f"[{name}] must be a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.name != "options"]
    values = {}
    for key, value in table.items():
        if key not in known:
            raise PianogenError(f"unknown key '{name}.{key}'{closest(key, known, f'{name}.')}; "
                                f"valid: {', '.join(known)}")
        values[key] = check_value(f"{name}.{key}", value, hints[key], f"{rules or name}.{key}")
    return cls(**values)
