"""Built-in PianoGen plugin: the audio post-filter `lowpass` (registered through the 'pianogen' entry-point group)."""

from __future__ import annotations

import pianogen
from pianogen.hookspecs import Register
from pianogen_filters.lowpass import Lowpass, LowpassConfig, lowpass


@pianogen.hookimpl
def register_postfilters(register: Register) -> None:
    register("lowpass", lowpass, config=LowpassConfig)


__all__ = ["Lowpass", "LowpassConfig", "lowpass", "register_postfilters"]
