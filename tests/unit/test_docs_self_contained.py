"""The repository documents itself: no document, manifest or product source points outside it,
and every relative link in the Markdown documents resolves to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: what CI has beside the checkout; only the real-Kafka test support may locate it
OUTSIDE = re.compile(r"\.\./shared|/work/shared|\bAPI\.md\b|\bDESIGN\.md\b")


def scanned_files() -> list[Path]:
    files = list(DOCUMENTS)
    for folder, patterns in (("services", ("*.py",)), ("shared", ("*.py", "*.sql")),
                             ("postwire", ("*.py",)), ("cli", ("*.py",)),
                             ("deploy", ("*.py", "*.yml", "*.yaml", "*.json", "Dockerfile*"))):
        for pattern in patterns:
            files.extend((REPO / folder).rglob(pattern))
    allowed = REPO / "tests" / "support" / "real_kafka.py"  # locates the real Kafka (CI)
    files.extend(p for p in [*(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py")]
                 if p != allowed and p != Path(__file__).resolve())
    return files


def test_nothing_points_outside_the_repository() -> None:
    offenders = {}
    for path in scanned_files():
        found = OUTSIDE.findall(path.read_text(errors="replace"))
        if found:
            offenders[str(path.relative_to(REPO))] = sorted(set(found))
    assert offenders == {}


def test_relative_links_resolve() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            if not (document.parent / target).exists():
                broken.append(f"{document.relative_to(REPO)} -> {target}")
    assert broken == []
