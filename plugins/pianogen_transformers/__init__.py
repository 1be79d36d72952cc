"""Built-in PianoGen plugin: the token models `baseline`, `multi_output` and `delay`.

Registered through the 'pianogen' entry-point group like any third-party plugin. Each factory
takes the recipe's [model] keys plus n_levels, vocab_size and block_size from the host, and
is registered with its dataclass (``config=``) so recipes are checked before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pianogen
from pianogen.hookspecs import Register
from pianogen.interfaces import TokenModel
from pianogen_transformers.baseline import BaselineConfig, BaselineTransformer
from pianogen_transformers.delay import DelayConfig, DelayTransformer
from pianogen_transformers.multi_output import MultiOutputConfig, MultiOutputTransformer

MODELS: dict[str, tuple[type, type]] = {
    "baseline": (BaselineTransformer, BaselineConfig),
    "multi_output": (MultiOutputTransformer, MultiOutputConfig),
    "delay": (DelayTransformer, DelayConfig),
}


def factory(model_class: type, config_class: type) -> Callable[..., TokenModel]:
    def build(**config: Any) -> TokenModel:
        return model_class(config_class(**config))

    build.__doc__ = model_class.__doc__
    return build


@pianogen.hookimpl
def register_token_models(register: Register) -> None:
    for name, (model_class, config_class) in MODELS.items():
        register(name, factory(model_class, config_class), config=config_class)


__all__ = [
    "BaselineConfig", "BaselineTransformer", "MultiOutputConfig", "MultiOutputTransformer",
    "DelayConfig", "DelayTransformer", "register_token_models",
]
