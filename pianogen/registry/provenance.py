"""Where a built-in plugin comes from: only this installation's own `pianogen` distribution loads built-ins
(a foreign dist-info named pianogen, or a built-in module shadowed on sys.path, becomes a listed failure)."""

from __future__ import annotations

import importlib.util
import json
import re
from importlib.metadata import Distribution
from pathlib import Path
from urllib.parse import unquote, urlsplit

BUILTIN_DIST = "pianogen"


def is_pianogen(dist: Distribution) -> bool:
    return re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "").lower()) == BUILTIN_DIST


def install_root() -> Path:
    """The folder this installation's modules live in: site-packages, or the source tree when editable."""
    import pianogen

    return Path(pianogen.__file__).resolve().parent.parent


def installs_this_package(dist: Distribution) -> bool:
    """Whether ``dist`` is the installation of the imported ``pianogen``: its files hold our __init__.py
    (a wheel; an egg-info in the source tree), or it is an editable install of our source folder."""
    ours = install_root() / "pianogen" / "__init__.py"
    try:
        if Path(dist.locate_file("pianogen/__init__.py")).resolve() == ours:
            return True
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except (OSError, ValueError):
        return False
    url = urlsplit(str(direct.get("url", "")))
    return url.scheme == "file" and Path(unquote(url.path)).resolve() == ours.parent.parent


def inside_installation(module: str) -> bool:
    """Whether a built-in entry point's module is found inside this installation (found, not imported)."""
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return False
    origin = spec and (spec.origin or next(iter(spec.submodule_search_locations or []), None))
    return bool(origin) and Path(origin).resolve().is_relative_to(install_root())
