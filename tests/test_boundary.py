"""The plugin boundary and the host's layering, read from the source (ast), imports inside functions included.

Plugins import only the public API: ``pianogen`` (its exported names), ``pianogen.interfaces``,
``pianogen.errors``, ``pianogen.hookspecs``, and their own package. The host imports no plugin
package (not even through ``importlib.import_module``). The host's modules form no import circle (the
``pianogen`` facade aside, whose functions import lazily what they expose). The facade exports nothing for
the plugins alone: a name only plugins use is a plugin's code kept in the host (a composer, a renderer, the
Salamander downloads), an arrow running back up the house.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pianogen

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_PACKAGES = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file())
PUBLIC_MODULES = {"pianogen", "pianogen.interfaces", "pianogen.errors", "pianogen.hookspecs"}
PUBLIC_NAMES = set(pianogen.__all__) | set(pianogen._CONSTANTS)


def imports_of(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name imported from it or None) for every import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value, None))  # importlib.import_module("pianogen_x.y")
    return found


def crossings(path: Path, own: str | None, root: Path = ROOT) -> list[str]:
    """Where a file under plugins/ (own = its package) or pianogen/ (own = None) crosses the boundary."""
    bad = []
    for line, module, name in imports_of(path):
        top = module.split(".")[0]
        where = f"{path.relative_to(root)}:{line}: {module}{'.' + name if name else ''}"
        if own is None:
            if top in PLUGIN_PACKAGES:
                bad.append(f"{where} (the host imports a plugin)")
        elif top == "pianogen":
            if module not in PUBLIC_MODULES or (module == "pianogen" and name is not None and name not in PUBLIC_NAMES):
                bad.append(f"{where} (not the public API)")
        elif top.startswith("pianogen_") and top != own:
            bad.append(f"{where} (another plugin's internals)")
    return bad


def test_plugins_import_only_the_public_api_and_the_host_no_plugin():
    bad = [c for package in PLUGIN_PACKAGES for f in sorted((ROOT / "plugins" / package).rglob("*.py"))
           for c in crossings(f, package)]
    bad += [c for f in sorted((ROOT / "pianogen").rglob("*.py")) for c in crossings(f, None)]
    assert bad == []


def test_the_checker_sees_a_crossing(tmp_path):
    """The check above can fail: a plugin reaching into pianogen.paths and the host importing a plugin."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text("def f():\n    from pianogen.paths import home\n    from pianogen import registry\n"
                      "import pianogen_encodec.model\nfrom pianogen import expand\n")
    assert sorted(c.rsplit(": ", 1)[1] for c in crossings(plugin, "pianogen_soundstream", tmp_path)) == [
        "pianogen.paths.home (not the public API)", "pianogen.registry (not the public API)",
        "pianogen_encodec.model (another plugin's internals)"]
    host = tmp_path / "host.py"
    host.write_text("import pianogen_soundstream.convert\nimport importlib\n"
                    "importlib.import_module('pianogen_data.synth')\n")
    assert len(crossings(host, None, tmp_path)) == 2


def facade_names_used(path: Path) -> set[str]:
    """The facade's names a file takes: ``from pianogen import X`` and ``pianogen.X``."""
    tree = ast.parse(path.read_text(), str(path))
    used = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "pianogen"
            and node.level == 0 for alias in node.names}
    return used | {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and isinstance(node.value, ast.Name) and node.value.id == "pianogen"}


def names_referred_to(path: Path) -> set[str]:
    """Every name a file uses or imports (not the ones it only defines)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):  # `x = ...` only defines x
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            names |= {alias.name for alias in node.names}
    return names


def plugin_only_facade_names(plugin_files: list[Path], host_files: list[Path]) -> dict[str, list[str]]:
    """Names of ``pianogen.__all__`` some plugin uses that nothing outside the plugins refers to (host modules,
    benchmarks): {name: the plugin files using it}. The public constants (MAESTRO_CSV...) are data, not code."""
    public = set(pianogen.__all__) - {"hookimpl"}  # the marker every plugin needs, defined for them
    by_plugins: dict[str, list[str]] = {}
    for f in plugin_files:
        for name in facade_names_used(f) & public:
            by_plugins.setdefault(name, []).append(f.name)
    elsewhere = set().union(*(names_referred_to(f) for f in host_files))
    return {name: files for name, files in sorted(by_plugins.items()) if name not in elsewhere}


def test_the_facade_exports_nothing_for_the_plugins_alone():
    """The data plugin once took its synthetic corpus, corpus writer and Salamander downloads from the facade
    (``write_synthetic_corpus``, ``write_corpus``, ``salamander_notes``...): plugin code kept in the host."""
    plugins = sorted((ROOT / "plugins").rglob("*.py"))
    host = [f for f in sorted((ROOT / "pianogen").rglob("*.py")) if f != ROOT / "pianogen" / "__init__.py"]
    assert plugin_only_facade_names(plugins, host + sorted((ROOT / "benchmarks").rglob("*.py"))) == {}


def test_the_facade_check_sees_a_plugin_only_name(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import pianogen\nfrom pianogen import expand, load_audio\n"
                      "def f(p):\n    return pianogen.save_audio(p), pianogen.home()\n")
    host = tmp_path / "host.py"
    host.write_text("from pianogen.paths import expand\nload_audio = 1\ndef home():\n    return save_audio\n")
    # load_audio, home: the host file only defines them, and refers to neither
    assert plugin_only_facade_names([plugin], [host]) == {"home": ["plugin.py"], "load_audio": ["plugin.py"]}


def host_graph() -> dict[str, set[str]]:
    modules = {}
    for f in (ROOT / "pianogen").rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph = {}
    for name, f in modules.items():
        targets = set()
        for _, module, imported in imports_of(f):
            targets.add(module)
            if imported and f"{module}.{imported}" in modules:
                targets.add(f"{module}.{imported}")
        graph[name] = {t for t in targets if t in modules and t not in (name, "pianogen")}
    del graph["pianogen"]
    return graph


def test_host_modules_form_no_import_circle():
    graph, state, circles = host_graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert circles == []
    assert "pianogen.pipeline" not in graph["pianogen.training.codec_train"]  # the circle this layering removed
    assert "pianogen.training.codec_train" not in graph["pianogen.pipeline"]
