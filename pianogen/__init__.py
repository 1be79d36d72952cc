"""PianoGen: continue piano performances from raw audio with codec tokens and Transformers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("pianogen")

if TYPE_CHECKING:
    from pianogen.interfaces import Codec, DataSource, Loss, PostFilter, TokenModel
    from pianogen.recipe import Recipe


def get_codec(name: str, **config: Any) -> "Codec":
    """A registered codec by name, e.g. ``get_codec("soundstream", checkpoint="ss.safetensors")``."""
    from pianogen.registry import create

    return create("codec", name, **config)


def get_token_model(name: str, **config: Any) -> "TokenModel":
    from pianogen.registry import create

    return create("token_model", name, **config)


def get_loss(name: str, **config: Any) -> "Loss":
    from pianogen.registry import create

    return create("loss", name, **config)


def get_postfilter(name: str, **config: Any) -> "PostFilter":
    from pianogen.registry import create

    return create("postfilter", name, **config)


def get_data_source(name: str, **config: Any) -> "DataSource":
    from pianogen.registry import create

    return create("data_source", name, **config)


def load_recipe(path: str, overrides: list[str] | tuple[str, ...] = ()) -> "Recipe":
    """Read a TOML recipe (a path or a built-in recipe name) and apply ``key=value`` overrides."""
    from pianogen.recipe import load_recipe as _load

    return _load(path, overrides)


__all__ = [
    "hookimpl", "get_codec", "get_token_model", "get_loss", "get_postfilter", "get_data_source", "load_recipe",
]
