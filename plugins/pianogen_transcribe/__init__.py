"""Built-in PianoGen plugin: the note transcriber `basic_pitch` (registered through the 'pianogen' entry-point
group). Spotify's basic-pitch ONNX model on onnxruntime, its note decoding ported to numpy (Apache-2.0)."""

from __future__ import annotations

import pianogen
from pianogen.hookspecs import Register
from pianogen_transcribe.basic_pitch_onnx import BasicPitch, BasicPitchConfig, basic_pitch


@pianogen.hookimpl
def register_transcribers(register: Register) -> None:
    register("basic_pitch", basic_pitch, config=BasicPitchConfig)


__all__ = ["BasicPitch", "BasicPitchConfig", "basic_pitch", "register_transcribers"]
