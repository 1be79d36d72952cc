"""Built-in PianoGen plugin: the ``encodec`` codec (registered through the 'pianogen' entry-point group)."""

from __future__ import annotations

import pianogen
from pianogen.interfaces import WeightsSpec
from pianogen_encodec.model import WEIGHTS_FILE, WEIGHTS_URL, EncodecCodec, EncodecOptions

# The official 24 kHz file, checked against the sha256 prefix its official name carries (which torch.hub
# checks too; the full digest is unpublished). The codec loads it when a recipe names no checkpoint.
WEIGHTS = WeightsSpec(
    codec="encodec", file=WEIGHTS_FILE, source=WEIGHTS_URL, sha256="d7cc33bc", license="CC-BY-NC-4.0",
    mirror_env="PIANOGEN_ENCODEC_URL", loaded_by_default=True,
    description="EnCodec 24 kHz (facebookresearch/encodec): causal, 1.5-24 kbps, 75 frames/s",
)


def encodec(checkpoint: str = "", bandwidth: float = 6.0) -> EncodecCodec:
    """``get_codec("encodec", checkpoint=PATH, bandwidth=6.0)``: the 24 kHz model from a local weights file."""
    return EncodecCodec(checkpoint=checkpoint, bandwidth=bandwidth)


@pianogen.hookimpl
def register_codecs(register) -> None:
    register("encodec", encodec, config=EncodecOptions)


@pianogen.hookimpl
def register_codec_weights(register) -> None:
    register("encodec", WEIGHTS)
