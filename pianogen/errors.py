"""User-facing errors: the CLI prints ``str(err)`` as one line and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PianogenError(Exception):
    """Bad input from the user (recipe, file, plugin name, ...), not a bug."""


def closest(name: str, choices: Iterable[str], prefix: str = "") -> str:
    """' (did you mean 'x'?)' for the nearest choice, or '' when none is near."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{prefix}{match[0]}'?)" if match else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> PianogenError:
    choices = sorted(choices)
    return PianogenError(
        f"unknown {kind} '{name}'{closest(name, choices)}; known: {', '.join(choices) or 'none'}"
    )


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none): a user error is one
    line, whatever a library says."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
