"""Layering, checked on the source: which top-level package may import which.

- The pure core (``shared.core``) imports no I/O library: it is tested without processes.
- A service never imports another service (each is its own process over one library).
- ``shared`` never imports ``services``, ``deploy``, ``cli``, ``tests`` or ``bench``.
- ``deploy`` never imports ``services``, ``cli``, ``tests`` or ``bench``; it starts services as
  processes by module name.
- ``postwire`` (the client library) imports nothing of the product: it ships alone.
- No product code (``services``, ``shared``, ``deploy``, ``cli``, ``postwire``) imports
  ``tests`` or ``bench``.

Every import counts, including those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "shared" / "core"
FORBIDDEN_IN_CORE = {"aiohttp", "aiokafka", "asyncpg", "prometheus_client", "uvloop"}
PRODUCT = ("services", "shared", "deploy", "cli", "postwire")
TEST_ONLY = {"tests", "bench"}
MAY_NOT_IMPORT = {
    "shared": {"services", "deploy", "cli"} | TEST_ONLY,
    "deploy": {"services", "cli"} | TEST_ONLY,
    "postwire": {"services", "shared", "deploy", "cli"} | TEST_ONLY,
    "cli": TEST_ONLY,
    "services": {"cli"} | TEST_ONLY,
}


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``from a.b import c`` gives ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path)}


def _sources(package: str) -> Iterator[Path]:
    yield from sorted((REPO / package).rglob("*.py"))


def test_core_modules_import_no_io_library() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 8, "the core package should not be empty"
    offenders = {p.name: sorted(_imported_roots(p) & FORBIDDEN_IN_CORE) for p in modules}
    assert {name: libs for name, libs in offenders.items() if libs} == {}


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    sources = list(_sources(package))
    assert sources, f"{package}/ has no Python sources"
    forbidden = MAY_NOT_IMPORT[package]
    offenders = {str(p.relative_to(REPO)): sorted(_imported_roots(p) & forbidden)
                 for p in sources}
    assert {path: roots for path, roots in offenders.items() if roots} == {}


def test_a_service_never_imports_another_service() -> None:
    services = sorted(p.name for p in (REPO / "services").iterdir()
                      if (p / "__init__.py").is_file())
    assert {"ingest", "dispatcher", "dlq_replay"} <= set(services)
    crossings: dict[str, list[str]] = {}
    for service in services:
        for path in _sources(f"services/{service}"):
            others = sorted({name for name in _imported_modules(path)
                             if name.startswith("services.")
                             and name.split(".")[1] != service})
            if others:
                crossings[str(path.relative_to(REPO))] = others
    assert crossings == {}


def test_the_checks_see_imports_inside_functions(tmp_path: Path) -> None:
    """The checks would pass vacuously if the walker missed an import form."""
    module = tmp_path / "m.py"
    module.write_text("import a.b\nfrom c.d import e\n\ndef f():\n    from tests.support import x\n"
                      "    import services.ingest\n", encoding="utf-8")
    assert _imported_modules(module) == {"a.b", "c.d", "tests.support", "services.ingest"}
    assert _imported_roots(module) & TEST_ONLY == {"tests"}
