"""Every hook a PianoGen plugin can implement.

A plugin is a module named in the ``pianogen`` entry-point group. It implements any of the
hooks below with ``@pianogen.hookimpl`` (pluggy collects only marked functions) and calls
``register(name, factory, config=ConfigDataclass)`` once per thing it provides.
``factory(**config)`` builds the object; recipes are validated against the ``config``
dataclass, or against the factory's typed keyword arguments when it names none, before
anything is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("pianogen")


class Register(Protocol):
    """The callback handed to every ``register_*`` hook."""

    def __call__(self, name: str, factory: Callable[..., Any], config: type | None = None) -> None: ...


@hookspec
def register_codecs(register: Register) -> None:
    """Register audio codecs: ``factory(**config) -> pianogen.interfaces.Codec``.

    The recipe's ``[codec]`` table (all keys but ``name`` and ``levels``) becomes ``config``.
    """


@hookspec
def register_token_models(register: Register) -> None:
    """Register token models: ``factory(**config) -> pianogen.interfaces.TokenModel``.

    ``config`` is the recipe's ``[model]`` table (without ``name``) plus ``n_levels``,
    ``vocab_size`` and ``block_size``, which the host derives from the codec and data.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register training losses: ``factory(**config) -> pianogen.interfaces.Loss``.

    ``config`` is one ``[[loss]]`` table without ``name`` and ``weight``.
    """


@hookspec
def register_postfilters(register: Register) -> None:
    """Register audio post-filters: ``factory(**config) -> pianogen.interfaces.PostFilter``.

    ``config`` is one ``[[postfilter]]`` table without ``name``.
    """


@hookspec
def register_data_sources(register: Register) -> None:
    """Register audio corpora: ``factory(**config) -> pianogen.interfaces.DataSource``.

    ``config`` holds the recipe's ``[data]`` keys that the factory's signature names.
    """


@hookspec
def register_transcribers(register: Register) -> None:
    """Register note transcribers: ``factory(**config) -> pianogen.interfaces.Transcriber``.

    Evaluation uses them to hear notes in audio (``pianogen eval``, ``pianogen codec eval``).
    """


@hookspec
def register_codec_importers(register: Register) -> None:
    """Register converters of foreign checkpoints: ``factory(checkpoint: Path, out: Path) -> None`` writes a
    ``.safetensors`` file the codec of the same name loads (a ``WeightsSpec.convert`` may be the same function).
    """


@hookspec
def register_runs(register: Register) -> None:
    """Register pretrained runs shipped inside a package: ``register(name, folder)``, ``folder`` a ``Path`` (or a
    callable returning one) laid out as ``pianogen.runs`` describes (recipe.toml, codec, checkpoints/best,
    SHA256SUMS). ``pianogen generate NAME``, ``eval NAME``, ``serve`` and ``pianogen.continue_audio(run=NAME)``
    then find it; nothing is ever written into it.
    """


@hookspec
def register_codec_weights(register: Register) -> None:
    """Register downloadable codec weights: ``register(name, spec)``, ``spec`` a
    ``pianogen.interfaces.WeightsSpec`` (or a callable returning one). ``pianogen codec get`` lists every
    registration and fetches one by name, checksum-verified; a recipe whose codec file is missing names that
    command. Several may serve one codec (``WeightsSpec.codec``).
    """


@hookspec
def register_loggers(register: Register) -> None:
    """Register training loggers: ``factory(place: LogPlace) -> Logger``
    (both in ``pianogen.training.loggers``).

    A recipe chooses them by name (``[train] loggers = ["jsonl", "tensorboard"]``, ``[codec_train] loggers``);
    both trainers hand every metric record to each. The built-ins ``jsonl`` and ``tensorboard`` are
    registered this way too (``pianogen/training/loggers.py``).
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``pianogen`` command line: ``cli`` is its root ``click.Group``.

    The host's groups are reachable as ``cli.commands["codec"]`` and so on; the ``codec import``
    group (``cli.commands["codec"].commands["import"]``) is there for plugins to add importers to.
    """
