"""CLI contract: user errors are one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def pianogen(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pianogen", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["train", "demo", "train.epocs=3"], "did you mean 'train.epochs'?"),
    (["train", "demo", "model.name=transformr"], "unknown token model 'transformr'"),
    (["train", "no/such/recipe.toml"], "recipe not found"),
    (["tokenize", "demo", "codec.name=soundstrem"], "did you mean 'soundstream'?"),
    (["trian"], "No such command 'trian'"),
    (["cp", "nonexistent", "x.toml"], "recipe not found"),
])
def test_user_errors_are_one_line_exit_2(args, message):
    done = pianogen(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback():
    done = pianogen("--debug", "train", "demo", "train.epocs=3")
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_ls_and_cp(tmp_path):
    listing = pianogen("ls").stdout
    for name in ("baseline", "novel", "demo", "codec"):
        assert name in listing
    done = pianogen("cp", "novel", str(tmp_path))
    assert done.returncode == 0 and (tmp_path / "novel.toml").read_text().startswith("# pianogen train")
    again = pianogen("cp", "novel", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr
