"""The WireGuard package is shared by hub workers and the client: it imports neither side."""

from __future__ import annotations

import ast
from pathlib import Path

import dataplane

FORBIDDEN = {"api", "workers", "beat", "client", "db"}


def test_elysium_wireguard_imports_no_process_package() -> None:
    package = Path(dataplane.__file__).parent
    found = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]

    assert found == []
