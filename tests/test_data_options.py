"""[data] options belong to the data source: a third-party source takes keys of its own, checked like a codec's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import pianogen
from pianogen.data.audio import save_audio
from pianogen.data.sources import open_source
from pianogen.data.tokenize import data_settings
from pianogen.errors import PianogenError
from pianogen.interfaces import DataSource, Piece
from pianogen.recipe import DataConfig, load_recipe


@dataclass
class ToneOptions:
    folder: str = ""  # where the tones are written
    pitch_hz: float = 440.0  # the one key no built-in source has
    count: int = 2

    def __post_init__(self) -> None:
        if self.pitch_hz <= 0:
            raise PianogenError(f"data.pitch_hz must be > 0, got {self.pitch_hz:g}")


class Tones(DataSource):
    def __init__(self, folder: str, pitch_hz: float, count: int):
        self.folder, self.pitch_hz, self.count = Path(folder), pitch_hz, count

    def pieces(self) -> list[Piece]:
        t = np.arange(8000) / 8000
        paths = [self.folder / f"tone{i}.wav" for i in range(self.count)]
        for i, path in enumerate(paths):
            save_audio(path, 0.3 * np.sin(2 * np.pi * self.pitch_hz * (i + 1) * t), 8000)
        return [Piece(p, p.name, "train", title=p.stem) for p in paths]


class TonePlugin:
    @staticmethod
    @pianogen.hookimpl
    def register_data_sources(register):
        register("tones", lambda **options: Tones(**options), config=ToneOptions)


@pytest.fixture
def tones(fresh_registry):
    fresh_registry.register_module(TonePlugin, "tone-plugin")
    return fresh_registry


def _recipe(tmp_path: Path, data: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(f"[data]\n{data}\nwindow = 64\n")
    return path


def test_a_third_party_source_takes_keys_of_its_own(tones, tmp_path):
    recipe = load_recipe(_recipe(tmp_path, f'source = "tones"\nfolder = "{tmp_path}/t"\npitch_hz = 220'))
    assert recipe.data.options == {"folder": f"{tmp_path}/t", "pitch_hz": 220.0, "count": 2}  # defaults filled
    assert recipe.data.window == 64 and recipe.data.pitch_hz == 220.0
    pieces = open_source(recipe.data).pieces()  # the factory got its own keys, the host's none
    assert [p.audio_filename for p in pieces] == ["tone0.wav", "tone1.wav"] and pieces[1].path.is_file()
    assert data_settings(recipe.data)["pitch_hz"] == 220.0  # its keys key the token cache
    # the same keys inside data.mix, each part against its own source
    mix = load_recipe(_recipe(tmp_path, f'source = "mix"\nmix = [{{source = "tones", folder = "{tmp_path}/m", '
                                        f'count = 1, share = 1.0}}]'))
    assert [p.audio_filename for p in open_source(mix.data).pieces()] == ["tones/tone0.wav"]


@pytest.mark.parametrize("data, message", [
    ('source = "tones"\npitch_hx = 3.0', r"unknown key 'data\.pitch_hx' for data source 'tones' "
                                         r"\(did you mean 'data\.pitch_hz'\?\)"),
    ('source = "tones"\nwindw = 3', r"unknown key 'data\.windw' .*\(did you mean 'data\.window'\?\)"),
    ('source = "tones"\npitch_hz = "high"', r"data\.pitch_hz must be float, got 'high'"),
    ('source = "tones"\npitch_hz = -1', r"data\.pitch_hz must be > 0, got -1"),
    ('source = "tonez"', r"data\.source: unknown data source 'tonez' \(did you mean 'tones'\?\)"),
    ('source = "mix"\nmix = [{source = "tones", cont = 1, share = 1.0}]',
     r"unknown key 'data\.mix\.0\.cont' for data source 'tones' \(did you mean 'data\.mix\.0\.count'\?\)"),
    ('source = "mix"\nmix = [{source = "tones", pitch_hz = 0, share = 1.0}]', r"data\.mix\.0\.pitch_hz must be > 0"),
    ('source = "rendered"\nminuts = 3.0', r"unknown key 'data\.minuts' .*\(did you mean 'data\.minutes'\?\)"),
])
def test_a_bad_source_key_is_one_line_naming_it(tones, tmp_path, data, message):
    with pytest.raises(PianogenError, match=message):
        load_recipe(_recipe(tmp_path, data))


def test_another_sources_key_is_dropped_with_a_warning(tmp_path):
    """An override can switch data.source but cannot unset the old source's keys: they warn, and stay out."""
    path = _recipe(tmp_path, 'source = "rendered"\nminutes = 3.0\nseed = 4')
    with pytest.warns(UserWarning, match=r"data\.minutes is read by source rendered, synthetic, not 'maestro'"):
        recipe = load_recipe(path, ["data.source=maestro", "data.root=/m"])
    assert recipe.data.options == {"root": "/m", "years": [], "skip_missing": False}


def test_a_hand_built_data_config_keys_the_cache_as_its_recipe_does(tmp_path):
    """Defaults stated or left out, in a recipe or a DataConfig: the same token cache."""
    stated = load_recipe(_recipe(tmp_path, 'source = "rendered"\nminutes = 6\nseed = 0\nhumanize = false'))
    assert data_settings(DataConfig(source="rendered", window=64)) == data_settings(stated.data)
