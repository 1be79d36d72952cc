"""Built-in PianoGen plugin: the data sources `maestro`, `folder`, `synthetic`, `salamander` and `mix`.

Registered through the 'pianogen' entry-point group like any third-party plugin. Factories name
only the ``[data]`` keys they use; the host passes exactly those.
"""

from __future__ import annotations

import pianogen
from pianogen.hookspecs import Register
from pianogen_data.sources import (
    FolderSource,
    MaestroSource,
    MixSource,
    SalamanderSource,
    folder,
    maestro,
    mix,
    salamander,
    synthetic,
    synthetic_root,
)


@pianogen.hookimpl
def register_data_sources(register: Register) -> None:
    register("maestro", maestro)
    register("folder", folder)
    register("synthetic", synthetic)
    register("salamander", salamander)
    register("mix", mix)


__all__ = ["FolderSource", "MaestroSource", "MixSource", "SalamanderSource", "folder", "maestro", "mix",
           "salamander", "synthetic", "synthetic_root", "register_data_sources"]
