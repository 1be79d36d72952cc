"""Every module of the host and the built-in plugins imports (catches stale references early)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import pianogen

PACKAGES = ["pianogen", "pianogen_data", "pianogen_soundstream", "pianogen_encodec", "pianogen_transformers",
            "pianogen_losses", "pianogen_filters"]


def all_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, prefix=f"{package}.")
                  if not m.name.endswith("__main__")]
    return names


@pytest.mark.parametrize("name", all_modules())
def test_module_imports(name):
    assert importlib.import_module(name) is not None


def test_public_api():
    for name in pianogen.__all__:
        assert callable(getattr(pianogen, name))
