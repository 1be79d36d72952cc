"""What a generation writes, and the post-filters it runs, made safe to fail.

A generation is written into a temp folder beside its output folder and moved in whole, so a full disk or
a kill never leaves half of one; each file's failure names the file. A post-filter (a plugin) that raises,
changes the audio's shape or returns NaN is one line before anything is written: NaN samples written to a
WAV become full-scale noise.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import pianogen
from pianogen.errors import PianogenError, first_line
from pianogen.paths import pid_alive

MEL_MIN_SAMPLES = 1025  # plot_mel's STFT (n_fft 1024, reflect padding) needs more samples than its half window


class CheckedPostFilter:
    """A post-filter whose failures end in one line before anything is written: an exception from its call,
    audio of another shape than it was given, or NaN/inf samples (written out, they become full-scale noise)."""

    def __init__(self, name: str, post: Any) -> None:
        self.name, self.post = name, post

    def __getattr__(self, attribute: str) -> Any:  # stream(), settle_samples, ...: the filter's own
        return getattr(self.__dict__["post"], attribute)

    def __call__(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        try:
            filtered = self.post(audio, sample_rate)
        except PianogenError:
            raise
        except Exception as err:  # a plugin's bug: named, in one line
            raise PianogenError(f"post-filter '{self.name}' failed: {type(err).__name__}: "
                                f"{first_line(err)}") from None
        if not isinstance(filtered, torch.Tensor) or filtered.shape != audio.shape:
            got = list(filtered.shape) if isinstance(filtered, torch.Tensor) else type(filtered).__name__
            raise PianogenError(f"post-filter '{self.name}' returned {got} for audio {list(audio.shape)}; "
                                f"a post-filter must keep the shape")
        bad = int((~torch.isfinite(filtered)).sum())
        if bad:
            raise PianogenError(f"post-filter '{self.name}' returned {bad} NaN or infinite samples of "
                                f"{filtered.numel()}; nothing was written (choose another with --postfilter)")
        return filtered


def postfilters_for(recipe: Any, request: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """The request's post-filters (the recipe's when it names none): their specs and the (checked) filters."""
    specs = request.postfilters if request.postfilters is not None else [
        {"name": spec.name, **spec.options} for spec in recipe.postfilter]
    filters = []
    for spec in specs:
        try:
            post = pianogen.get_postfilter(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
        except PianogenError:
            raise
        except Exception as err:
            raise PianogenError(f"post-filter '{spec['name']}' could not be built: {type(err).__name__}: "
                                f"{first_line(err)}") from None
        filters.append(CheckedPostFilter(spec["name"], post))
    return specs, filters


@contextlib.contextmanager
def writing(path: Path) -> Iterator[Path]:
    """The block writes ``path``; its failure (a full disk: soundfile and torch say so with RuntimeError) is one
    line naming ``path``."""
    try:
        yield path
    except (OSError, RuntimeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
        raise PianogenError(f"could not write {path}: {reason}") from None


def remove_stale_stages(out: Path) -> None:
    """The staging folders (``.<out>.tmp<pid>``) that killed generations left beside ``out``; a live one's stay."""
    for stale in out.parent.glob(f".{glob.escape(out.name)}.tmp*"):
        pid = stale.name.rpartition(".tmp")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def staged(out: Path, write: Callable[[Path], Any]) -> Any:
    """``write(folder)`` into a temp folder beside ``out``, then moved into ``out`` whole (as checkpoints are):
    a failure (a full disk, a killed process) leaves ``out`` as it was, never half a generation. ``write`` may
    take its time (a streamed generation grows its part files there while sampling). An ``out`` that exists
    (the page's job folder, which holds the upload) receives the files, generation.json last."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_stages(out)
        stage = out.parent / f".{out.name}.tmp{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    except OSError as err:
        raise PianogenError(f"cannot create {out}: {err.strerror or err}") from None
    try:
        try:
            result = write(stage)
        except PianogenError as err:
            raise PianogenError(str(err).replace(str(stage), str(out))) from None
        if not out.exists():
            os.replace(stage, out)
            return result
        names = sorted(p.name for p in stage.iterdir())
        for name in sorted(names, key=lambda n: n == "generation.json"):
            with writing(out / name) as target:
                os.replace(stage / name, target)
        return result
    finally:
        shutil.rmtree(stage, ignore_errors=True)
