"""How long a fetch may wait at the broker: short while messages flow, long when quiet.

A Kafka fetch names a deadline (``fetch.max.wait.ms``). Real Kafka answers a waiting fetch as
soon as data arrives, so a long wait costs no latency there. Tansu (the embedded broker)
answers only at the deadline, so while messages flow the dispatcher fetches with a short wait
(``BUSY_WAIT_MS``): a new record is read within that much. With no traffic that short wait is
a busy poll (100 fetches a second, about 0.12 cores of broker and 0.05 of dispatcher on the
2-core reference machine), so after ``QUIET_AFTER_S`` without a record the fetch waits
``QUIET_WAIT_MS``: a couple of fetches a second. At low rates messages reach the dispatcher
through the Postgres wake-up (``services/dispatcher/wakeup.py``) and their Kafka copies do not
count as records here, so the long wait stays; the first fetch that returns other records
brings the short wait back.

Pure: :func:`fetch_wait_ms` decides, :func:`apply_fetch_wait` sets it on aiokafka's fetcher
(read by aiokafka for each fetch request it builds).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

BUSY_WAIT_MS = 10          # Tansu answers a waiting fetch only at this deadline
QUIET_WAIT_MS = 500        # no traffic: a few fetches a second instead of a hundred
QUIET_AFTER_S = 1.0        # this long without a record is a quiet spell


def fetch_wait_ms(now: float, last_record_at: float) -> int:
    """The fetch deadline to use at ``now`` (monotonic seconds) when the last record was
    read at ``last_record_at``."""
    return QUIET_WAIT_MS if now - last_record_at >= QUIET_AFTER_S else BUSY_WAIT_MS


def apply_fetch_wait(consumer: Any, wait_ms: int) -> bool:
    """Set the deadline of the next fetches of an aiokafka consumer; False (and nothing
    changed) when this aiokafka keeps it elsewhere. The fetch in flight keeps its own."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
        return False
    fetcher._fetch_max_wait_ms = wait_ms
    return True
