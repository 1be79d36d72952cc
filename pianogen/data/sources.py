"""Open a recipe's data source: the registered factory gets the source's own ``[data]`` keys.

The sources themselves are plugins (the built-ins in ``plugins/pianogen_data``).
"""

from __future__ import annotations

from typing import Any

import pianogen
from pianogen.interfaces import DataSource
from pianogen.recipe import DataConfig


def source_config(data: DataConfig) -> dict[str, Any]:
    """The source's keys, checked and filled with its defaults (a DataConfig built by hand is filled too)."""
    from pianogen.recipe_data import source_options

    return source_options("data", data.source, data.options)


def open_source(data: DataConfig) -> DataSource:
    """Build the recipe's data source, passing it its own keys."""
    return pianogen.get_data_source(data.source, **source_config(data))
