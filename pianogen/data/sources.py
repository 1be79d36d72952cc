"""Open a recipe's data source: the registered factory gets exactly the ``[data]`` keys it names.

The sources themselves are plugins (the built-ins in ``plugins/pianogen_data``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pianogen
from pianogen.interfaces import DataSource
from pianogen.recipe import DataConfig


def source_config(data: DataConfig) -> dict[str, Any]:
    """The ``[data]`` keys the source's factory names (all of them when it takes ``**kwargs``)."""
    from pianogen.registry import config_fields, lookup

    values = dataclasses.asdict(data)
    fields = config_fields(lookup("data_source", data.source))
    return {k: v for k, v in values.items() if k != "source" and (fields is None or k in fields)}


def open_source(data: DataConfig) -> DataSource:
    """Build the recipe's data source, passing it the ``[data]`` keys it asks for."""
    return pianogen.get_data_source(data.source, **source_config(data))
