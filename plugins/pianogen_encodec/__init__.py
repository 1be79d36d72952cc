"""Built-in PianoGen plugin: the ``encodec`` codec (registered through the 'pianogen' entry-point group)."""

from __future__ import annotations

import pianogen
from pianogen_encodec.model import EncodecCodec, EncodecOptions


def encodec(checkpoint: str = "", bandwidth: float = 6.0) -> EncodecCodec:
    """``get_codec("encodec", checkpoint=PATH, bandwidth=6.0)``: the 24 kHz model from a local weights file."""
    return EncodecCodec(checkpoint=checkpoint, bandwidth=bandwidth)



@pianogen.hookimpl
def register_codecs(register) -> None:
    register("encodec", encodec, config=EncodecOptions)
