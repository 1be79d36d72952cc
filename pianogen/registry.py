"""The plugin registry: one lazily built pluggy PluginManager over the ``pianogen`` entry points.

``PIANOGEN_LOAD_PLUGINS`` (comma-separated entry-point or distribution names) limits the
third-party plugins that load; set it empty to load the built-ins only; a name in it that matches
no installed plugin is warned about. A plugin that fails to import is recorded in ``failures()``
and the others keep working.

Two plugins may register the same name (a third-party ``lowpass``, say). Nothing is replaced
silently: the clash is recorded in ``clashes()`` and shown by ``pianogen plugins``; the built-in
keeps the plain name (between third-party plugins, the first loaded keeps it), and every
registration is also reachable as ``package:name`` (``evil-filters:lowpass``), so using the other
one is a deliberate choice. Using a clashing plain name warns once, naming the alternative.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from pianogen import hookspecs
from pianogen.errors import PianogenError, closest, unknown

GROUP = "pianogen"
BUILTIN_DIST = "pianogen"
KINDS = {
    "codec": "register_codecs",
    "token_model": "register_token_models",
    "loss": "register_losses",
    "postfilter": "register_postfilters",
    "data_source": "register_data_sources",
    "codec_importer": "register_codec_importers",
    "transcriber": "register_transcribers",
}


@dataclass(frozen=True)
class Registered:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str  # entry-point name
    package: str  # distribution that provides it
    version: str
    config: type | None = None  # the dataclass of the factory's keyword arguments, when it names one


@dataclass(frozen=True)
class Failure:
    plugin: str
    package: str
    error: str


@dataclass(frozen=True)
class Clash:
    kind: str
    name: str
    winner: str  # package whose plugin the plain name selects
    shadowed: str  # package whose plugin is reachable only as ``package:name``


_pm: pluggy.PluginManager | None = None
_registry: dict[str, dict[str, Registered]] = {}  # kind -> plain name -> the winner
_qualified: dict[str, dict[str, Registered]] = {}  # kind -> "package:name" -> every registration
_failures: list[Failure] = []
_clashes: list[Clash] = []
_warned: set[tuple[str, str]] = set()
_sources: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_commands_added: set[str] = set()  # plugins whose register_commands already ran


def _allow_list() -> set[str] | None:
    allow = os.environ.get("PIANOGEN_LOAD_PLUGINS")
    return None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}


def _wanted(ep) -> bool:
    dist = ep.dist.name if ep.dist else ""
    if dist == BUILTIN_DIST:
        return True
    names = _allow_list()
    return names is None or ep.name in names or dist in names


def _add(entry: Registered) -> None:
    """Register under ``package:name`` always, and under the plain name unless another plugin holds it."""
    _qualified[entry.kind][f"{entry.package}:{entry.name}"] = entry
    table = _registry[entry.kind]
    current = table.get(entry.name)
    if current is None:
        table[entry.name] = entry
        return
    # built-ins keep their names: an installed package must not change what a recipe means unasked
    if entry.package == BUILTIN_DIST and current.package != BUILTIN_DIST:
        table[entry.name], current, entry = entry, entry, current
    _clashes.append(Clash(entry.kind, entry.name, current.package, entry.package))


def get_plugin_manager() -> pluggy.PluginManager:
    """Build the manager on first use: load every wanted entry point, then collect registrations."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    sources = _sources
    found = entry_points(group=GROUP)
    unmatched = (_allow_list() or set()) - {ep.name for ep in found} - {ep.dist.name for ep in found if ep.dist}
    if unmatched:
        warnings.warn(f"PIANOGEN_LOAD_PLUGINS names {', '.join(sorted(unmatched))}, which no installed "
                      f"plugin provides; installed: {', '.join(sorted({ep.name for ep in found}))}", stacklevel=2)
    for ep in sorted(found, key=lambda e: (e.dist.name != BUILTIN_DIST, e.name)):
        if not _wanted(ep):
            continue
        dist, version = (ep.dist.name, ep.dist.version) if ep.dist else ("?", "?")
        if pm.has_plugin(ep.name):
            _failures.append(Failure(ep.name, dist, f"entry point name '{ep.name}' is already taken by "
                                                    f"{sources.get(ep.name, ('?',))[0]}; not loaded"))
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as err:  # a broken plugin must not take the others down
            _failures.append(Failure(ep.name, dist, f"{type(err).__name__}: {err}"))
            continue
        sources[ep.name] = (dist, version)
    _pm = pm
    for kind in KINDS:
        _registry[kind], _qualified[kind] = {}, {}
    _collect(pm, sources)
    return pm


def _collect(pm: pluggy.PluginManager, sources: dict[str, tuple[str, str]], only: str | None = None) -> None:
    """Call every ``@hookimpl``-marked ``register_*`` hook (of plugin ``only``, when given), in load order.

    Only pluggy's collection counts: a function that merely has a hook's name is not a registration."""
    for kind, hook_name in KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():  # in load order: built-ins first
            if only is not None and impl.plugin_name != only:
                continue
            dist, version = sources.get(impl.plugin_name, ("?", "?"))

            def register(name: str, factory: Callable[..., Any], config: type | None = None,
                         _p=impl.plugin_name, _d=dist, _v=version, _k=kind) -> None:
                if config is not None and not dataclasses.is_dataclass(config):
                    raise TypeError(f"register('{name}', ..., config=...) takes a dataclass, got {config!r}")
                _add(Registered(_k, name, factory, _p, _d, _v, config))

            try:
                impl.function(register=register)
            except Exception as err:
                _failures.append(Failure(impl.plugin_name, dist, f"{hook_name}: {type(err).__name__}: {err}"))


def register_module(module: Any, name: str, package: str = "(in-process)", version: str = "") -> None:
    """Register a plugin module or object at run time (tests, notebooks): like an entry point."""
    pm = get_plugin_manager()
    pm.register(module, name=name)
    _sources[name] = (package, version)
    _collect(pm, _sources, only=name)


def add_commands(cli: Any) -> int:
    """Let every plugin not asked yet add its commands to ``cli``; returns how many were asked. A plugin
    whose hook fails is recorded and skipped."""
    pm = get_plugin_manager()
    fresh = [impl for impl in pm.hook.register_commands.get_hookimpls() if impl.plugin_name not in _commands_added]
    for impl in fresh:
        _commands_added.add(impl.plugin_name)
        try:
            impl.function(cli=cli)
        except Exception as err:
            dist = _sources.get(impl.plugin_name, ("?",))[0]
            _failures.append(Failure(impl.plugin_name, dist, f"register_commands: {type(err).__name__}: {err}"))
    return len(fresh)


def reset() -> None:
    """Forget everything loaded (tests; after changing PIANOGEN_LOAD_PLUGINS)."""
    global _pm
    _pm = None
    _registry.clear()
    _qualified.clear()
    _failures.clear()
    _clashes.clear()
    _warned.clear()
    _sources.clear()
    _commands_added.clear()


def registered(kind: str) -> dict[str, Registered]:
    """Plain name -> the plugin it selects."""
    get_plugin_manager()
    return dict(_registry[kind])


def every_registration(kind: str) -> dict[str, Registered]:
    """``package:name`` -> plugin, for every registration, including names shadowed by a clash."""
    get_plugin_manager()
    return dict(_qualified[kind])


def clashes() -> list[Clash]:
    get_plugin_manager()
    return list(_clashes)


def failures() -> list[Failure]:
    get_plugin_manager()
    return list(_failures)


def lookup(kind: str, name: str) -> Registered:
    """A plain name (the built-in on a clash) or ``package:name`` (exactly that package's plugin)."""
    table = registered(kind)
    if ":" in name:
        qualified = every_registration(kind)
        if name not in qualified:
            raise unknown(kind.replace("_", " "), name, qualified)
        return qualified[name]
    if name not in table:
        raise unknown(kind.replace("_", " "), name, table)
    shadowed = [c.shadowed for c in _clashes if (c.kind, c.name) == (kind, name)]
    if shadowed and (kind, name) not in _warned:
        _warned.add((kind, name))
        warnings.warn(f"{kind.replace('_', ' ')} '{name}' is also registered by {', '.join(shadowed)}; using "
                      f"{table[name].package}'s (name '{shadowed[0]}:{name}' to use the other)", stacklevel=2)
    return table[name]


def config_fields(entry: Registered) -> dict[str, inspect.Parameter | dataclasses.Field] | None:
    """The keyword arguments a plugin's factory accepts, or None when it takes anything (**kwargs)."""
    if entry.config is not None:
        return {f.name: f for f in dataclasses.fields(entry.config)}
    params = inspect.signature(entry.factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n: p for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def config_hints(entry: Registered) -> dict[str, Any]:
    """Type hints of a plugin's keyword arguments (of its ``config`` dataclass when it has one); {} when unknown."""
    target = entry.config if entry.config is not None else entry.factory
    if inspect.isclass(target) and not dataclasses.is_dataclass(target):
        target = target.__init__
    try:
        return typing.get_type_hints(target)
    except Exception:  # a hint naming something importable only under TYPE_CHECKING: leave the check to the plugin
        return {}


def check_config(kind: str, name: str, config: dict[str, Any], where: str = "") -> None:
    """Raise a PianogenError naming any key the plugin does not accept, with the closest valid key."""
    fields = config_fields(lookup(kind, name))
    if fields is None:
        return
    for key in config:
        if key not in fields:
            raise PianogenError(
                f"unknown key '{where}{key}' for {kind.replace('_', ' ')} '{name}'{closest(key, fields, where)}; "
                f"valid: {', '.join(sorted(fields)) or 'none'}"
            )


def create(kind: str, name: str, **config: Any) -> Any:
    """Build a registered plugin object after checking its config keys."""
    check_config(kind, name, config)
    return lookup(kind, name).factory(**config)
