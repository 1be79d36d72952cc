"""The registry: built-ins through entry points, third-party discovery, isolation of broken plugins."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import pytest

import pianogen
from pianogen.errors import PianogenError

BUILTINS = {
    "codec": {"soundstream", "encodec"},
    "token_model": {"baseline", "multi_output", "delay"},
    "loss": {"nll", "mel"},
    "postfilter": {"lowpass"},
    "data_source": {"maestro", "folder", "synthetic"},
}


def make_distribution(root, dist: str, modules: dict[str, str]) -> None:
    """A minimal installed distribution: modules + a *.dist-info with a `pianogen` entry point each."""
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"  # wheel naming: name-version
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = ["[pianogen]"]
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
        lines.append(f"{name} = {name}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


GOOD = """
    import pianogen

    class Echo:
        def __call__(self, wav, sample_rate):
            return wav

    @pianogen.hookimpl
    def register_postfilters(register):
        register("echo", Echo)
"""
BROKEN = "raise ImportError('this plugin is broken on purpose')\n"


@pytest.fixture
def third_party(tmp_path, monkeypatch, fresh_registry):
    make_distribution(tmp_path, "pianogen-echo", {"pianogen_echo": GOOD, "pianogen_broken": BROKEN})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return fresh_registry


def test_builtins_are_registered_through_entry_points(fresh_registry):
    for kind, names in BUILTINS.items():
        found = fresh_registry.registered(kind)
        assert names <= set(found), (kind, sorted(found))
        assert all(found[n].package == "pianogen" for n in names)
    assert fresh_registry.failures() == []


def test_third_party_plugin_is_discovered_and_a_broken_one_isolated(third_party):
    echo = third_party.registered("postfilter")["echo"]
    assert (echo.package, echo.version, echo.plugin) == ("pianogen-echo", "1.2.3", "pianogen_echo")
    failures = third_party.failures()
    assert [f.plugin for f in failures] == ["pianogen_broken"]
    assert "broken on purpose" in failures[0].error
    assert "lowpass" in third_party.registered("postfilter")  # the built-ins still work
    import torch

    wav = torch.randn(1, 1, 10)
    assert torch.equal(pianogen.get_postfilter("echo")(wav, 16000), wav)


def test_load_plugins_env_limits_third_party(third_party, monkeypatch):
    monkeypatch.setenv("PIANOGEN_LOAD_PLUGINS", "")
    third_party.reset()
    assert "echo" not in third_party.registered("postfilter")
    assert "lowpass" in third_party.registered("postfilter")
    assert third_party.failures() == []
    monkeypatch.setenv("PIANOGEN_LOAD_PLUGINS", "pianogen_echo")
    third_party.reset()
    assert "echo" in third_party.registered("postfilter")
    assert third_party.failures() == []


def test_unknown_name_lists_known_and_closest(fresh_registry):
    with pytest.raises(PianogenError, match=r"unknown codec 'soundstrem' \(did you mean 'soundstream'\?\); "
                                            r"known: .*encodec.*soundstream"):
        pianogen.get_codec("soundstrem")


def test_unknown_config_key_names_closest(fresh_registry):
    with pytest.raises(PianogenError, match=r"unknown key 'cutof' .*did you mean 'cutoff'"):
        pianogen.get_postfilter("lowpass", cutof=0.1)


def test_plugins_json_cli_lists_builtins_and_failures(tmp_path):
    make_distribution(tmp_path, "pianogen-echo", {"pianogen_echo": GOOD, "pianogen_broken": BROKEN})
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "pianogen", "plugins", "--json"], capture_output=True, text=True,
                         env=env, check=True).stdout
    listing = json.loads(out)
    names = {(p["kind"], p["name"]) for p in listing["plugins"]}
    assert {(k, n) for k, ns in BUILTINS.items() for n in ns} <= names
    assert ("postfilter", "echo") in names
    assert [f["plugin"] for f in listing["failed"]] == ["pianogen_broken"]
