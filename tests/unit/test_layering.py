"""The pure core imports no I/O library: it can be tested without processes or a network."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "shared" / "core"
FORBIDDEN = {"aiohttp", "aiokafka", "asyncpg", "prometheus_client", "uvloop"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_import_no_io_library() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 8, "the core package should not be empty"
    offenders = {p.name: sorted(_imported_roots(p) & FORBIDDEN) for p in modules}
    assert {name: libs for name, libs in offenders.items() if libs} == {}
