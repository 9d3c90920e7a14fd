"""The package's layers: dependencies point down, and no two packages import each other.

Reads every module's imports with ``ast`` (lazy imports inside functions included), maps them
to the top-level package of ``slimtorch`` they belong to, and checks the rules of DESIGN.md.
Run ``python tests/test_layering.py`` to print the package import graph.
"""

import ast
import pathlib
from collections import defaultdict

import slimtorch

ROOT = pathlib.Path(slimtorch.__file__).parent
COMPRESSION = {"prune", "convert", "edit", "train", "budget", "nas"}
# What each package may never import (DESIGN.md, "Layers of the code").
FORBIDDEN = {
    "graph": COMPRESSION | {"io", "measure", "report"},
    "measure": COMPRESSION | {"io"},
    "nn": COMPRESSION | {"io", "graph", "measure"},
    "edit": {"prune", "convert", "io", "train", "budget", "nas"},
    "io": {"prune", "convert", "train", "budget", "nas"},
    "report": COMPRESSION | {"io", "runtime"},
    # deployment runtimes sit below measure (benchmark(backend=) runs their sessions)
    "runtime": COMPRESSION | {"io", "measure", "report", "graph", "nn"},
    # the latency model sits below pruning; the policy search (nas) sits above everything
    "budget": {"prune", "convert", "train", "nas", "io"},
    "prune": {"nas"},
    "convert": {"nas"},
    "train": {"nas"},
}


def package_of(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")  # a subpackage, or a module at the root


def imported_packages(path: pathlib.Path) -> set[str]:
    """Top-level slimtorch packages (or root modules) that a file imports."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(ROOT).parent.parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                if not parts:  # "from . import x" at the root
                    parts = [a.name for a in node.names]
            elif node.module and node.module.startswith("slimtorch."):
                parts = node.module.split(".")[1:]
            else:
                continue
            out.add(parts[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("slimtorch."):
                    out.add(alias.name.split(".")[1])
    return out


def package_graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        src = package_of(path)
        for dst in imported_packages(path):
            dst = dst.removesuffix(".py")
            if dst != src:
                graph[src].add(dst)
    return graph


def test_forbidden_imports():
    graph = package_graph()
    bad = {src: sorted(graph[src] & banned) for src, banned in FORBIDDEN.items()}
    assert not {k: v for k, v in bad.items() if v}, bad


def test_recipes_sit_on_top():
    # recipe runs every other package's public functions; only the CLI and the demo run it
    graph = package_graph()
    users = {src for src, dsts in graph.items() if "recipe" in dsts}
    assert users <= {"_cli", "demo", "__init__", "cli"}, users


def test_no_cycle_between_packages():
    graph = package_graph()
    # Root modules (cli, demo, __init__) sit on top and may import anything; helpers
    # (_registry, _validate, _options, _forward, errors) sit at the bottom.
    top = {"__init__", "cli", "demo", "_cli"}
    nodes = {n for n in graph if n not in top}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n: str, path: list[str]) -> bool:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if m in top:
                cycle.extend([*path, n, m])
                return True
            if state.get(m) == 1:
                cycle.extend([*path, n, m])
                return True
            if state.get(m) is None and visit(m, [*path, n]):
                return True
        state[n] = 2
        return False

    for n in sorted(nodes):
        if state.get(n) is None and visit(n, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_the_check_sees_imports():
    # The checker must be able to fail: it finds what prune imports.
    graph = package_graph()
    assert {"graph", "edit", "measure"} <= graph["prune"]


if __name__ == "__main__":
    for src, dsts in sorted(package_graph().items()):
        print(f"{src:>12} -> {', '.join(sorted(dsts))}")
