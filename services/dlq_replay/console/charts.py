"""Small SVG charts for the console overview, computed here and drawn by the template.

Pure: values in, coordinates and labels out (no I/O, no clock). A chart is a fixed-size
viewBox; each series is a polyline (a gap where a value is missing) or bars. The template
writes them as inline SVG elements with presentation attributes, so the strict CSP needs no
inline style or script and nothing is fetched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 480, 150
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 8, 10, 20


@dataclass(frozen=True)
class Series:
    """One line (``points`` are polyline segments, split at gaps) or a set of bars."""

    name: str
    css: str
    segments: tuple[str, ...] = ()
    dots: tuple[tuple[float, float], ...] = ()                # isolated points (x, y)
    bars: tuple[tuple[float, float, float, float], ...] = ()   # x, y, width, height
    latest: str = "-"


@dataclass(frozen=True)
class Chart:
    """A chart ready to draw: series, the y axis top label and the x axis end labels."""

    title: str
    series: tuple[Series, ...]
    y_top: str
    x_left: str
    x_right: str
    empty: bool


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (1 for nothing)."""
    if value <= 0 or math.isnan(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10.0 ** exponent
        if candidate >= value * (1 - 1e-9):
            return candidate
    return 10.0 ** (exponent + 1)


def format_value(value: float | None, unit: str) -> str:
    """A short label: ``12.5/s``, ``99.2%``, ``230 ms``; ``-`` for no value."""
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f}%"
    text = f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}"
    return f"{text}{unit}" if unit.startswith("/") else f"{text} {unit}".rstrip()


def _x(index: int, count: int) -> float:
    span = WIDTH - PAD_LEFT - PAD_RIGHT
    return PAD_LEFT + (span * index / (count - 1) if count > 1 else span / 2)


def _y(value: float, top: float) -> float:
    span = HEIGHT - PAD_TOP - PAD_BOTTOM
    return PAD_TOP + span * (1 - min(value, top) / top)


def _runs(values: Sequence[float | None], top: float) -> list[list[tuple[float, float]]]:
    """Consecutive present values as runs of (x, y) points; a missing value breaks a run."""
    runs: list[list[tuple[float, float]]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((_x(index, len(values)), _y(value, top)))
    return [run for run in runs if run]


def _line(values: Sequence[float | None],
          top: float) -> tuple[tuple[str, ...], tuple[tuple[float, float], ...]]:
    """Polyline point lists for runs of two or more points, dots for lone points."""
    runs = _runs(values, top)
    segments = tuple(" ".join(f"{x:.1f},{y:.1f}" for x, y in run) for run in runs
                     if len(run) > 1)
    dots = tuple(run[0] for run in runs if len(run) == 1)
    return segments, dots


def line_chart(title: str, unit: str, lines: Sequence[tuple[str, str, Sequence[float | None]]],
               x_left: str, x_right: str, top: float | None = None) -> Chart:
    """Lines ``(name, css class, values)`` over the same buckets, oldest first."""
    present = [v for _, _, values in lines for v in values if v is not None]
    ceiling = top if top is not None else nice_ceiling(max(present, default=0.0))
    series = tuple(
        Series(name, css, *_line(values, ceiling),
               latest=format_value(next((v for v in reversed(values) if v is not None), None),
                                   unit))
        for name, css, values in lines)
    return Chart(title, series, format_value(ceiling, unit), x_left, x_right, not present)


def bar_chart(title: str, unit: str, name: str, css: str, values: Sequence[float],
              x_left: str, x_right: str) -> Chart:
    """Bars over buckets, oldest first."""
    ceiling = nice_ceiling(max(values, default=0.0))
    count = max(len(values), 1)
    slot = (WIDTH - PAD_LEFT - PAD_RIGHT) / count
    bars = []
    for index, value in enumerate(values):
        y = _y(value, ceiling)
        bars.append((PAD_LEFT + index * slot + slot * 0.1, y, slot * 0.8, HEIGHT - PAD_BOTTOM - y))
    total = sum(values)
    series = Series(name, css, bars=tuple(bars), latest=format_value(total, unit))
    return Chart(title, (series,), format_value(ceiling, unit), x_left, x_right, total == 0)
