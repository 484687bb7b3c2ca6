"""The import graph has layers and no circles: read from every module's imports (those inside
functions too), so a newcomer's upward import fails here, not in review.

    cli ─▶ api, workers, beat, client ─▶ services ─▶ db ─▶ elysium (core)
                  client, workers ─▶ dataplane ─▶ elysium (core)

A module's layer is its top-level package, nothing more.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "api", "workers", "beat", "client", "services", "db", "dataplane", "elysium")

# What each layer may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "elysium": set(),
    "dataplane": {"elysium"},
    "db": {"elysium"},
    "services": {"elysium", "db"},
    "api": {"elysium", "db", "services"},
    "workers": {"elysium", "db", "services", "dataplane"},
    "beat": {"elysium", "db", "services"},
    "client": {"elysium", "dataplane"},
    "cli": {"elysium", "db", "services", "dataplane", "api", "workers", "beat"},
}


def layer(module: str) -> str | None:
    top = module.split(".")[0]
    if top not in PACKAGES:
        return None  # the standard library or a dependency
    return top


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every Elysium module ``name`` imports, at the top or inside a function."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if layer(m) is not None}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {
        name: {m for m in imports(name, path) if m in mods} - {name} for name, path in mods.items()
    }


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        for target in targets
        if layer(target) != layer(name) and layer(target) not in ALLOWED[layer(name) or ""]
    )
    assert wrong == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in g:
        if v not in index:
            visit(v)
    assert circles == []
