"""The packages' import graph stays layered: no module reaches (directly or around a loop) back
into one that imports it, the runtime never depends on the plugin, and the plain data/report
modules load without pytest (usable from scripts and benchmarks, like pytest-benchmark's stats).

The graph is read from the source with `ast`, not by importing: every `import` counts, at module
level, inside functions and under `if TYPE_CHECKING:` (a type-only loop is still a layering loop).
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cosyvoice_runtime", "pytest_cosyvoice")
PYTEST_NAMES = {"pytest", "_pytest"}
# The plugin's rooms and which others each may import (at run time or for types). The pytest layer
# (modules directly in pytest_cosyvoice/: plugin, settings, markers, session, rounds, finish, ...) may
# import any room; the rooms never import the pytest layer, and only the pytest layer imports pytest.
# `engine` and `faults` are the public modules a user's engine or test imports: they import no room.
PUBLIC = ("engine", "faults", "stats")
ROOMS: dict[str, tuple[str, ...]] = {
    "stats": (),                                   # median and friends: one place, imports nothing
    "engine": (),
    "faults": (),
    "judging": ("stats",),                          # one test: specs, checks, playback, verdict, junit
    "recording": ("judging", "engine", "stats", "tracking"),   # the engine's calls, threads and tokens (and
                                                    # the base worker's stack, as tracking.stack reads it)
    "tracking": ("judging", "stats"),               # across sessions: key, stack, health, baselines, drift
    "report": ("tracking", "judging", "stats"),     # the session report
}


@dataclass(frozen=True)
class Import:
    target: str          # absolute dotted name as written (relative imports resolved)
    names: tuple[str, ...]   # for `from X import a, b`: ("a", "b"); for `import X`: ()
    type_only: bool      # under `if TYPE_CHECKING:`: never executed at run time


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the two packages."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """`from ..x import y` inside `module` -> absolute `pkg.x`."""
    if level == 0:
        return target or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(package) - 1:
        raise ValueError(f"{module}: relative import beyond the top-level package")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(source: str, module: str, is_package: bool) -> list[Import]:
    """Every import statement of a module, anywhere in it, with relative names resolved."""
    out: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            out.extend(Import(alias.name, (), type_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module)
            out.append(Import(target, tuple(a.name for a in node.names), type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(ast.parse(source), False)
    return out


def _known(name: str, modules: Iterable[str]) -> str | None:
    """The longest known module that `name` is or lies in."""
    known = set(modules)
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def edges_of(imports: Iterable[Import], modules: Iterable[str], *, runtime_only: bool = False) -> set[str]:
    """The package modules an import list reaches; `from pkg import sub` reaches pkg.sub."""
    modules = set(modules)
    out: set[str] = set()
    for imp in imports:
        if runtime_only and imp.type_only:
            continue
        subs = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in modules]
        if subs:
            out.update(subs)
            if len(subs) < len(imp.names):      # other names come from the package itself
                out.add(imp.target)
            continue
        hit = _known(imp.target, modules)
        if hit:
            out.add(hit)
    return out


def build_graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        imps = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        graph[name] = edges_of(imps, files, runtime_only=runtime_only) - {name}
    return graph


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component that has one.

    Tarjan's algorithm for the components, then a search inside each for a concrete loop so the
    failure message names the modules to untangle."""
    succ = {n: sorted(set(vs)) for n, vs in graph.items()}
    for vs in list(succ.values()):
        for v in vs:
            succ.setdefault(v, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:   # recursion depth <= number of modules (~40)
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            components.append(comp)

    for v in sorted(succ):
        if v not in index:
            strongconnect(v)

    cycles = []
    for comp in components:
        members = set(comp)
        start = min(comp)
        if len(comp) == 1 and start not in succ[start]:
            continue
        cycles.append(_path_back(start, succ, members))
    return sorted(cycles)


def _path_back(start: str, succ: Mapping[str, list[str]], members: set[str]) -> list[str]:
    """Shortest path start -> ... -> start inside one component (breadth first)."""
    parent: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt = []
        for v in frontier:
            for w in succ[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if w in members and w not in seen:
                    seen.add(w)
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is in a component without a cycle")   # unreachable


def reach(graph: Mapping[str, Iterable[str]], start: str) -> dict[str, list[str]]:
    """Every module `start` imports, directly or not, with the import chain that gets there."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return paths


# -- the helpers themselves --------------------------------------------------------------------

def test_cycle_finder_on_a_synthetic_graph() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"d"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    # Two loops through one module form one component; one of them is named.
    both = find_cycles({"x": {"y", "z"}, "y": {"x"}, "z": {"x"}})
    assert both == [["x", "y", "x"]]


def test_relative_imports_resolve_and_function_level_imports_count() -> None:
    src = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
           "from . import gate, helper_name\nfrom .report import x\nimport pytest_cosyvoice.tracking.drift\n"
           "if TYPE_CHECKING:\n    from .session import S\n"
           "def f():\n    from ..cosyvoice_runtime import tiny\n    import pytest\n")
    imps = imports_of(src, "pkg.sub.mod", is_package=False)
    assert {(i.target, i.type_only) for i in imps} == {
        ("__future__", False), ("typing", False), ("pkg.sub", False), ("pkg.sub.report", False),
        ("pytest_cosyvoice.tracking.drift", False), ("pkg.sub.session", True), ("pkg.cosyvoice_runtime", False),
        ("pytest", False)}
    modules = {"pkg.sub", "pkg.sub.gate", "pkg.sub.report", "pkg.sub.session", "pkg.cosyvoice_runtime.tiny"}
    # `gate` is a submodule, `helper_name` a name in the package's __init__: both edges.
    assert edges_of(imps, modules) == {"pkg.sub", "pkg.sub.gate", "pkg.sub.report", "pkg.sub.session",
                                       "pkg.cosyvoice_runtime.tiny"}
    assert "pkg.sub.session" not in edges_of(imps, modules, runtime_only=True)
    assert _resolve("pkg", True, 1, "x") == "pkg.x"      # inside an __init__, "." is the package


# -- the packages ------------------------------------------------------------------------------

def test_the_graph_is_read() -> None:
    graph = build_graph()
    assert "pytest_cosyvoice.plugin" in graph and "cosyvoice_runtime.runtime" in graph
    assert "pytest_cosyvoice.session" in graph["pytest_cosyvoice.plugin"]   # from .session import ...


def test_no_import_cycles() -> None:
    cycles = find_cycles(build_graph())
    assert not cycles, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def test_the_runtime_never_imports_the_plugin() -> None:
    files = module_files()
    bad = [f"{name}: {imp.target}" for name, path in files.items() if name.startswith("cosyvoice_runtime")
           for imp in imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
           if imp.target.split(".")[0] == "pytest_cosyvoice"]
    assert not bad, f"cosyvoice_runtime imports the plugin: {bad}"


def pytest_import_chain(module: str) -> str | None:
    """How importing `module` would import pytest ("a -> b: pytest"), or None when it does not.
    Type-only imports do not count: they never run."""
    files = module_files()
    for mod, chain in reach(build_graph(runtime_only=True), module).items():
        path = files[mod]
        for imp in imports_of(path.read_text(encoding="utf-8"), mod, path.name == "__init__.py"):
            if not imp.type_only and imp.target.split(".")[0] in PYTEST_NAMES:
                return f"{' -> '.join(chain)}: {imp.target}"
    return None


def test_the_pytest_check_sees_pytest() -> None:
    # finish imports pytest itself; plugin through finish, session, ...: the check is not blind.
    assert pytest_import_chain("pytest_cosyvoice.finish") == "pytest_cosyvoice.finish: pytest"
    assert pytest_import_chain("pytest_cosyvoice.plugin") is not None


def room_of(module: str) -> str | None:
    """The room a plugin module lies in (its first name under pytest_cosyvoice), or None for the pytest layer."""
    parts = module.split(".")
    if parts[0] != "pytest_cosyvoice" or len(parts) == 1:
        return None
    return parts[1] if parts[1] in ROOMS else None


def room_modules() -> list[str]:
    return sorted(m for m in module_files() if room_of(m) is not None)


def test_every_room_exists_and_holds_its_modules() -> None:
    files = module_files()
    for room in ROOMS:
        assert f"pytest_cosyvoice.{room}" in files, f"room {room} is missing"
    # The pytest layer is small: everything else lives in a room.
    layer = sorted(m for m in files if m.startswith("pytest_cosyvoice.") and room_of(m) is None)
    # quality_gate.py is the session's quality gate (like rounds.py: it reads the settings and ends a
    # session whose golden files are unusable with pytest.UsageError); its judging is judging/'s.
    # options.py declares and resolves an option (settings.py holds the plugin's table of them).
    assert layer == ["pytest_cosyvoice.finish", "pytest_cosyvoice.host", "pytest_cosyvoice.markers",
                     "pytest_cosyvoice.options", "pytest_cosyvoice.plugin", "pytest_cosyvoice.quality_gate",
                     "pytest_cosyvoice.rounds", "pytest_cosyvoice.session", "pytest_cosyvoice.settings"], layer


@pytest.mark.parametrize("module", room_modules())
def test_rooms_import_only_the_rooms_below_them(module: str) -> None:
    room = room_of(module)
    assert room is not None
    allowed = {room, *ROOMS[room]}
    bad = sorted(t for t in build_graph()[module]
                 if t.startswith("pytest_cosyvoice") and room_of(t) not in allowed)
    assert not bad, f"{module} (room {room}) imports {bad}; {room} may import {sorted(allowed)} only"


@pytest.mark.parametrize("module", room_modules())
def test_only_the_pytest_layer_imports_pytest(module: str) -> None:
    chain = pytest_import_chain(module)
    assert chain is None, f"{module} imports pytest: {chain}"


def test_the_room_rules_can_fail() -> None:
    # The plugin module is in no room; a room module that reached it would be named.
    assert room_of("pytest_cosyvoice.plugin") is None
    assert room_of("pytest_cosyvoice.judging.checks") == "judging"
    assert pytest_import_chain("pytest_cosyvoice.plugin") is not None
