"""The plugin boundary and the host's layering, read from the source (ast), imports inside functions included.

Plugins import only the public API: ``pianogen`` (its exported names), ``pianogen.interfaces``,
``pianogen.errors``, ``pianogen.hookspecs``, and their own package. The host imports no plugin
package. The host's modules form no import circle (the ``pianogen`` facade aside, whose functions
import lazily what they expose).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pianogen

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_PACKAGES = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file())
PUBLIC_MODULES = {"pianogen", "pianogen.interfaces", "pianogen.errors", "pianogen.hookspecs"}
PUBLIC_NAMES = set(pianogen.__all__) | {"AUDIO_SUFFIXES", "MAESTRO_CSV", "MAESTRO_COLUMNS"}


def imports_of(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name imported from it or None) for every import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
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
    host.write_text("import pianogen_soundstream.convert\n")
    assert len(crossings(host, None, tmp_path)) == 1


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
    assert "pianogen.pipeline" not in graph["pianogen.codec_train"]  # the circle this layering removed
    assert "pianogen.codec_train" not in graph["pianogen.pipeline"]
