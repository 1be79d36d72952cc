"""Built-in PianoGen plugin: the training losses `nll` and `mel`.

Registered through the 'pianogen' entry-point group like any third-party plugin; the host
sums them as Σ weight · loss over the recipe's [[loss]] list.
"""

from __future__ import annotations

import pianogen
from pianogen.hookspecs import Register
from pianogen_losses.mel import MelConfig, MelLoss, mel
from pianogen_losses.nll import NLLLoss


@pianogen.hookimpl
def register_losses(register: Register) -> None:
    register("nll", NLLLoss)
    register("mel", mel, config=MelConfig)


__all__ = ["MelConfig", "MelLoss", "NLLLoss", "mel", "register_losses"]
