"""The console overview: delivery rate, success ratio, latency, dead letters and consumer lag,
from Postgres (attempts, dead letters) and the lag sampler, as charts.

Attempts of the last hour are read through ``attempts_started_idx`` in one-minute buckets,
dead letters of the last 24 hours through ``dead_letters_dead_at_idx`` in one-hour buckets.
:class:`OverviewCache` keeps the result for a few seconds, so operators reloading the page do
not repeat the aggregation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.dlq_replay.console.charts import Chart, bar_chart, format_value, line_chart
from services.dlq_replay.console.lag import LagSample

MINUTES = 60
HOURS = 24

_ATTEMPTS_SQL = """
SELECT floor(extract(epoch FROM started_at) / 60)::bigint AS minute,
       count(*) AS attempts,
       count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS succeeded,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99
FROM attempts WHERE started_at >= to_timestamp($1) GROUP BY 1
"""

_DEAD_SQL = """
SELECT floor(extract(epoch FROM dead_at) / 3600)::bigint AS hour, count(*) AS n
FROM dead_letters WHERE dead_at >= to_timestamp($1) GROUP BY 1
"""


@dataclass(frozen=True)
class Overview:
    """The overview page: headline numbers and charts."""

    headline: list[tuple[str, str]]
    charts: list[Chart]


def _minute_buckets(rows: Sequence[Any], first: int) -> dict[str, list[float | None]]:
    cols: dict[str, list[float | None]] = {
        k: [None] * MINUTES for k in ("rate", "ratio", "p50", "p99")}
    for row in rows:
        index = int(row["minute"]) - first
        if not 0 <= index < MINUTES:
            continue
        cols["rate"][index] = row["succeeded"] / 60.0
        cols["ratio"][index] = row["succeeded"] / row["attempts"] if row["attempts"] else None
        cols["p50"][index] = float(row["p50"])
        cols["p99"][index] = float(row["p99"])
    # a minute without attempts delivered nothing: rate 0, ratio and latency unknown
    cols["rate"] = [0.0 if v is None else v for v in cols["rate"]]
    return cols


def lag_buckets(samples: Sequence[LagSample], first_minute: int) -> list[float | None]:
    """The highest lag sampled in each of the last 60 minutes (None where none was read)."""
    values: list[float | None] = [None] * MINUTES
    for sample in samples:
        index = int(sample.at // 60) - first_minute
        if 0 <= index < MINUTES and sample.lag is not None:
            current = values[index]
            values[index] = float(sample.lag) if current is None else max(current,
                                                                          float(sample.lag))
    return values


async def build_overview(pool: asyncpg.Pool, lag_samples: Sequence[LagSample],
                         now: float | None = None) -> Overview:
    """Read the last hour (and day, for dead letters) and lay it out as charts."""
    now = time.time() if now is None else now
    last_minute = int(now // 60)
    first_minute = last_minute - MINUTES + 1
    rows = await pool.fetch(_ATTEMPTS_SQL, float(first_minute * 60))
    cols = _minute_buckets(rows, first_minute)
    first_hour = int(now // 3600) - HOURS + 1
    dead_rows = await pool.fetch(_DEAD_SQL, float(first_hour * 3600))
    dead = [0.0] * HOURS
    for row in dead_rows:
        index = int(row["hour"]) - first_hour
        if 0 <= index < HOURS:
            dead[index] = float(row["n"])
    lag = lag_buckets(lag_samples, first_minute)
    attempts = sum(int(r["attempts"]) for r in rows)
    succeeded = sum(int(r["succeeded"]) for r in rows)
    latest_lag = next((s.lag for s in reversed(lag_samples)), None)
    headline = [
        ("delivered, last hour", f"{succeeded:,}"),
        ("attempts, last hour", f"{attempts:,}"),
        ("success ratio, last hour", format_value(succeeded / attempts if attempts else None,
                                                  "%")),
        ("dead letters, last 24 h", f"{int(sum(dead)):,}"),
        ("consumer lag now", "unavailable" if latest_lag is None else f"{latest_lag:,}"),
    ]
    charts = [
        line_chart("Deliveries per second", "/s", [("delivered/s", "s-rate", cols["rate"])],
                   "-60 min", "now"),
        line_chart("Success ratio", "%", [("2xx / attempts", "s-ok", cols["ratio"])],
                   "-60 min", "now", top=1.0),
        line_chart("Latency", "ms", [("p50", "s-p50", cols["p50"]),
                                     ("p99", "s-p99", cols["p99"])], "-60 min", "now"),
        bar_chart("Dead letters per hour", "", "dead letters, 24 h", "s-dead", dead,
                  "-24 h", "now"),
        line_chart("Consumer lag", "", [("messages behind", "s-lag", lag)], "-60 min", "now"),
    ]
    return Overview(headline, charts)


class OverviewCache:
    """The last overview built by this process, reused for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self._ttl_s = ttl_s
        self._built_at = float("-inf")
        self._value: Overview | None = None
        self._lock = asyncio.Lock()

    async def get(self, pool: asyncpg.Pool, lag_samples: Sequence[LagSample]) -> Overview:
        """A fresh-enough overview; concurrent callers share one build."""
        async with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._built_at >= self._ttl_s:
                self._value = await build_overview(pool, lag_samples)
                self._built_at = time.monotonic()
            return self._value
