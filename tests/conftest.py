"""Shared fixtures: an isolated cache root and a fresh plugin registry per test."""

from __future__ import annotations

import pytest
import torch

from pianogen import plugins

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets its own $PIANOGEN_HOME, so caches never leak between tests or into ~/.cache."""
    home = tmp_path_factory.mktemp("pianogen_home")
    monkeypatch.setenv("PIANOGEN_HOME", str(home))
    return home


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry rebuilt from scratch for this test and again afterwards."""
    plugins.reset()
    yield plugins
    plugins.reset()
