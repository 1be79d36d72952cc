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

The built-ins are the entry points of *this* installation only (the ``pianogen`` distribution whose files,
or editable source folder, hold the imported package; each module found inside it). Another distribution
calling itself ``pianogen`` (a stray ``pianogen-9.9.dist-info``) is not loaded, and is listed in
``failures()``. A third-party command under a taken name (``train``, ``codec import soundstream``) does
not replace ours: it is kept as ``<package>:<name>`` in the same group, the clash recorded (kind ``command``).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import distributions, entry_points
from typing import Any

import pluggy

from pianogen import hookspecs
from pianogen.errors import PianogenError, closest, unknown
from pianogen.registry.provenance import (
    BUILTIN_DIST,
    inside_installation,
    install_root,
    installs_this_package,
    is_pianogen,
)

GROUP = "pianogen"
KINDS = {
    "codec": "register_codecs",
    "token_model": "register_token_models",
    "loss": "register_losses",
    "postfilter": "register_postfilters",
    "data_source": "register_data_sources",
    "codec_importer": "register_codec_importers",
    "transcriber": "register_transcribers",
    "run": "register_runs",  # pretrained runs shipped in a package (pianogen.runs)
    "codec_weights": "register_codec_weights",  # downloadable codec weights (pianogen.fetch.weights)
    "logger": "register_loggers",  # where training metrics go (pianogen.training.loggers)
}
# Plugins that are modules of the host itself (simonw/llm's default plugins): loaded before every entry point
HOST_PLUGINS = {"pianogen.training.loggers": "pianogen.training.loggers"}


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
    use_other: str = ""  # how to select the shadowed one ("" = ``shadowed:name``)

    def __post_init__(self) -> None:
        if not self.use_other:
            object.__setattr__(self, "use_other", f"{self.shadowed}:{self.name}")


_pm: pluggy.PluginManager | None = None
_registry: dict[str, dict[str, Registered]] = {}  # kind -> plain name -> the winner
_qualified: dict[str, dict[str, Registered]] = {}  # kind -> "package:name" -> every registration
_failures: list[Failure] = []
_clashes: list[Clash] = []
_warned: set[tuple[str, str]] = set()
_sources: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_commands_added: set[str] = set()  # plugins whose register_commands already ran
_builtin_plugins: set[str] = set()  # entry-point names of this installation's plugins
_command_owners: dict[tuple[str, ...], str] = {}  # command path -> package that added it (absent: pianogen)


def _allow_list() -> set[str] | None:
    allow = os.environ.get("PIANOGEN_LOAD_PLUGINS")
    return None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}


def _wanted(ep) -> bool:
    names = _allow_list()
    return names is None or ep.name in names or (ep.dist is not None and ep.dist.name in names)


def _builtin_entry_points() -> list[Any]:
    """This installation's own entry points; every other distribution named pianogen is a failure, not loaded."""
    ours, seen = None, set()
    for dist in distributions():
        if not is_pianogen(dist):
            continue
        where = str(dist.locate_file(""))
        if installs_this_package(dist):
            ours = ours or dist
        elif where not in seen and dist.entry_points.select(group=GROUP):
            seen.add(where)
            _failures.append(Failure(", ".join(ep.name for ep in dist.entry_points.select(group=GROUP)),
                                     f"pianogen {dist.version} ({getattr(dist, '_path', where)})",
                                     "a distribution named 'pianogen' that is not this installation; not loaded"))
    if ours is None:
        _failures.append(Failure("(built-ins)", BUILTIN_DIST, f"no installed metadata of the pianogen in "
                                                              f"{install_root()}; run make install"))
        return []
    found = []
    for ep in ours.entry_points.select(group=GROUP):
        if inside_installation(ep.value.split(":")[0]):
            found.append(ep)
        else:
            _failures.append(Failure(ep.name, BUILTIN_DIST, f"its module '{ep.value}' is found outside "
                                                            f"{install_root()} (shadowed on sys.path); not loaded"))
    return found


def _own_version() -> str:
    import pianogen

    return pianogen.__version__


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
    builtin = sorted(_builtin_entry_points(), key=lambda e: e.name)
    third_party = sorted((ep for ep in entry_points(group=GROUP) if ep.dist is None or not is_pianogen(ep.dist)),
                         key=lambda e: e.name)
    found = builtin + third_party
    unmatched = (_allow_list() or set()) - {ep.name for ep in found} - {ep.dist.name for ep in found if ep.dist}
    if unmatched:
        warnings.warn(f"PIANOGEN_LOAD_PLUGINS names {', '.join(sorted(unmatched))}, which no installed "
                      f"plugin provides; installed: {', '.join(sorted({ep.name for ep in found}))}", stacklevel=2)
    for name, module_name in HOST_PLUGINS.items():
        pm.register(importlib.import_module(module_name), name=name)
        sources[name] = (BUILTIN_DIST, _own_version())
        _builtin_plugins.add(name)
    for ep in found:  # built-ins first: they keep their names on a clash
        is_builtin = any(ep is b for b in builtin)
        if not is_builtin and not _wanted(ep):
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
        if is_builtin:
            _builtin_plugins.add(ep.name)
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
    """Let every plugin not asked yet add its commands to ``cli``; returns how many were asked. A failing hook
    is recorded; a name already in use keeps its command (built-ins are asked first), the newcomer's becomes
    ``<package>:<name>``."""
    pm = get_plugin_manager()
    fresh = [impl for impl in pm.hook.register_commands.get_hookimpls() if impl.plugin_name not in _commands_added]
    fresh.sort(key=lambda impl: impl.plugin_name not in _builtin_plugins)
    for impl in fresh:
        _commands_added.add(impl.plugin_name)
        dist = _sources.get(impl.plugin_name, ("?",))[0]
        before = _command_tree(cli)
        try:
            impl.function(cli=cli)
        except Exception as err:
            _failures.append(Failure(impl.plugin_name, dist, f"register_commands: {type(err).__name__}: {err}"))
        finally:
            if impl.plugin_name in _builtin_plugins:  # ours may add (or, in a reset registry, re-add) our commands
                for path in _command_tree(cli).keys() - before.keys():
                    _command_owners.setdefault(path, dist)
            else:
                _keep_existing_commands(cli, before, dist)
    return len(fresh)


def _command_tree(group: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Command path -> command, through every subgroup's ``commands`` (list_commands would ask plugins again)."""
    tree = {}
    for name, command in list(getattr(group, "commands", {}).items()):
        tree[(*path, name)] = command
        tree.update(_command_tree(command, (*path, name)))
    return tree


def _keep_existing_commands(cli: Any, before: dict[tuple[str, ...], Any], package: str) -> None:
    """Put back every command a plugin's hook replaced (or removed); the newcomer stays as ``package:name``."""
    for path in sorted(before, key=len):  # groups first: their children are then looked up in the originals
        parent = before[path[:-1]] if len(path) > 1 else cli
        current = parent.commands.get(path[-1])
        if current is before[path]:
            continue
        parent.commands[path[-1]] = before[path]
        if current is None:
            continue
        parent.commands[f"{package}:{path[-1]}"] = current
        _command_owners[(*path[:-1], f"{package}:{path[-1]}")] = package
        _clashes.append(Clash("command", " ".join(path), _command_owners.get(path, BUILTIN_DIST), package,
                              " ".join((*path[:-1], f"{package}:{path[-1]}"))))
    for path in _command_tree(cli).keys() - before.keys():
        _command_owners.setdefault(path, package)


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
    _builtin_plugins.clear()
    _command_owners.clear()


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
