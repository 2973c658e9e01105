"""The project's shape, checked from its source: no import cycles, the same rooms in every tab, streamlit only in the UI.

Imports are read with ``ast`` from every module of the project's packages, including imports inside functions:
an import deferred into a function still couples the two modules, it only hides the cycle from the interpreter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "hashtag", "music", "fashion", "multimodal", "ui", "bench", "scripts")
TABS = ("hashtag", "music", "fashion", "multimodal")
ROOMS = ("data", "model", "train", "evaluate", "service", "__main__")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts)
            mods[name.removesuffix(".__init__")] = path
    mods["app"] = ROOT / "app.py"
    return mods


def _imported_names(path: Path, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement in ``path`` mentions (``from a import b`` gives ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Project module → the project modules it imports (anywhere in the file)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for name in _imported_names(path, m, path.name == "__init__.py"):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            # a module importing its own package's __init__ (or itself) is not an edge
            if name and name != m and not m.startswith(name + "."):
                graph[m].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_imports_inside_functions():
    graph = import_graph()
    # ui/fashion.py imports the fashion package only inside functions (lazily, for a fast page load)
    assert any(m.startswith("fashion") for m in graph["ui.fashion"])


def test_project_import_graph_has_no_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def _module_or_package(pkg: str, room: str) -> bool:
    return (ROOT / pkg / f"{room}.py").is_file() or (ROOT / pkg / room / "__init__.py").is_file()


@pytest.mark.parametrize("tab", TABS)
def test_every_tab_has_the_same_rooms(tab):
    if tab == "music":
        # music may split its rooms into subpackages (music/data/, music/mf/, music/next/), each with the rooms
        subs = [p.name for p in (ROOT / tab).iterdir() if (p / "__init__.py").is_file() and p.name in ("mf", "next")]
        missing = [r for r in ROOMS if not _module_or_package(tab, r)
                   and not (subs and all(_module_or_package(f"{tab}/{s}", r) for s in subs))]
    else:
        missing = [r for r in ROOMS if not _module_or_package(tab, r)]
    assert not missing, f"{tab}/ lacks {missing}"


def test_only_the_ui_imports_streamlit():
    offenders = []
    for m, path in _modules().items():
        if m == "app" or m == "ui" or m.startswith("ui."):
            continue
        names = _imported_names(path, m, path.name == "__init__.py")
        if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
            offenders.append(m)
    assert not offenders, f"streamlit imported outside ui/ and app.py: {offenders}"


def _tab_imports(path: Path) -> list[str]:
    """Every module of a tab package that ``path`` imports (at the top or inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in TABS]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in TABS:
            found += [node.module] if node.module not in TABS else [f"{node.module}.{a.name}" for a in node.names]
    return found


def test_the_ui_reaches_each_tab_only_through_its_service():
    """``ui/`` imports ``<tab>.service`` and nothing else of a tab: the service is the tab's one door."""
    stray = {f"{path.name}: {module}" for path in sorted((ROOT / "ui").glob("*.py"))
             for module in _tab_imports(path) if module.split(".")[1:] != ["service"]}
    assert not stray, sorted(stray)
