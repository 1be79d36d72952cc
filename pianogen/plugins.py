"""The plugin registry: one lazily built pluggy PluginManager over the ``pianogen`` entry points.

``PIANOGEN_LOAD_PLUGINS`` (comma-separated entry-point or distribution names) limits the
third-party plugins that load; set it empty to load the built-ins only. A plugin that fails
to import is recorded in ``failures()`` and the others keep working.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
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
}


@dataclass(frozen=True)
class Registered:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str  # entry-point name
    package: str  # distribution that provides it
    version: str


@dataclass(frozen=True)
class Failure:
    plugin: str
    package: str
    error: str


_pm: pluggy.PluginManager | None = None
_registry: dict[str, dict[str, Registered]] = {}
_failures: list[Failure] = []


def _wanted(ep) -> bool:
    dist = ep.dist.name if ep.dist else ""
    if dist == BUILTIN_DIST:
        return True
    allow = os.environ.get("PIANOGEN_LOAD_PLUGINS")
    if allow is None:
        return True
    names = {n.strip() for n in allow.split(",") if n.strip()}
    return ep.name in names or dist in names


def get_plugin_manager() -> pluggy.PluginManager:
    """Build the manager on first use: load every wanted entry point, then collect registrations."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    sources: dict[str, tuple[str, str]] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.dist.name != BUILTIN_DIST, e.name)):
        if not _wanted(ep) or pm.has_plugin(ep.name):
            continue
        dist, version = (ep.dist.name, ep.dist.version) if ep.dist else ("?", "?")
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as err:  # a broken plugin must not take the others down
            _failures.append(Failure(ep.name, dist, f"{type(err).__name__}: {err}"))
            continue
        sources[ep.name] = (dist, version)
    _pm = pm
    for kind, hook_name in KINDS.items():
        _registry[kind] = {}
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            dist, version = sources.get(impl.plugin_name, ("?", "?"))
            table = _registry[kind]

            def register(name: str, factory: Callable[..., Any], _p=impl.plugin_name, _d=dist, _v=version,
                         _t=table, _k=kind) -> None:
                _t[name] = Registered(_k, name, factory, _p, _d, _v)

            try:
                impl.function(register=register)
            except Exception as err:
                _failures.append(Failure(impl.plugin_name, dist, f"{hook_name}: {type(err).__name__}: {err}"))
    return pm


def register_module(module: Any, name: str, package: str = "(in-process)", version: str = "") -> None:
    """Register a plugin module or object at run time (tests, notebooks): like an entry point."""
    pm = get_plugin_manager()
    pm.register(module, name=name)
    for kind, hook_name in KINDS.items():
        impl = getattr(module, hook_name, None)
        if impl is not None:
            table = _registry[kind]
            impl(register=lambda n, f, _k=kind, _t=table: _t.__setitem__(n, Registered(_k, n, f, name, package,
                                                                                           version)))


def reset() -> None:
    """Forget everything loaded (tests; after changing PIANOGEN_LOAD_PLUGINS)."""
    global _pm
    _pm = None
    _registry.clear()
    _failures.clear()


def registered(kind: str) -> dict[str, Registered]:
    get_plugin_manager()
    return dict(_registry[kind])


def failures() -> list[Failure]:
    get_plugin_manager()
    return list(_failures)


def lookup(kind: str, name: str) -> Registered:
    table = registered(kind)
    if name not in table:
        raise unknown(kind.replace("_", " "), name, table)
    return table[name]


def config_fields(factory: Callable[..., Any]) -> dict[str, inspect.Parameter | dataclasses.Field] | None:
    """The keyword arguments a factory accepts, or None when it takes anything (**kwargs)."""
    config_class = getattr(factory, "config_class", None)
    if config_class is not None and dataclasses.is_dataclass(config_class):
        return {f.name: f for f in dataclasses.fields(config_class)}
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n: p for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_config(kind: str, name: str, config: dict[str, Any], where: str = "") -> None:
    """Raise a PianogenError naming any key the plugin does not accept, with the closest valid key."""
    fields = config_fields(lookup(kind, name).factory)
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
