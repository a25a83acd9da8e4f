"""Plain-text rendering for the operator CLI: aligned tables and a replay progress bar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_CELL = 48


def cell(value: Any, max_width: int = MAX_CELL) -> str:
    """One table cell: ``-`` for None, newlines flattened, long text cut with ``...``."""
    text = "-" if value is None else " ".join(str(value).split())
    return text if len(text) <= max_width else text[: max_width - 3] + "..."


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, a header line first; no trailing blanks."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                 for row in cells)
    return "\n".join(lines)


def render_fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``label: value`` lines with the labels aligned."""
    width = max((len(label) for label, _ in pairs), default=0)
    return "\n".join(f"{(label + ':').ljust(width + 1)} {cell(value, 200)}"
                     for label, value in pairs)


def progress_line(job: Mapping[str, Any], width: int = 30, rate: float | None = None) -> str:
    """One line describing a bulk replay's progress, e.g.
    ``[########----]  45%  2250/5000  queued 2250  skipped 0  running  ~980/s``."""
    matched = int(job.get("matched") or 0)
    done = int(job.get("queued") or 0) + int(job.get("skipped") or 0)
    fraction = 1.0 if matched == 0 else min(1.0, done / matched)
    filled = round(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    line = (f"[{bar}] {fraction * 100:3.0f}%  {done}/{matched}  queued {job.get('queued', 0)}"
            f"  skipped {job.get('skipped', 0)}  {job.get('status', '?')}")
    if rate is not None and job.get("status") == "running":
        line += f"  ~{rate:.0f}/s"
    return line
