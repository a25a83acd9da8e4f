"""Garbage-collector settings for the long-running services.

CPython's default thresholds (700, 10, 10) run a young-generation collection every 700 net
allocations and a full one every 100 of those. A dispatcher under load allocates heavily (every
webhook request builds dozens of aiohttp objects) while holding a large live set (up to
20,000 waiting messages, hundreds of attempt tasks and their records), so collections ran about
140 times a second and each older-generation pass walked that whole live set. Measured with a
``gc.callbacks`` timer in bench/e2e.py offering 2,800 events/s: 28% of the dispatcher's wall
time was spent in the collector, and the throughput fell as the backlog (the live set) grew.

Postwire's hot paths create almost no reference cycles (cycles come from exceptions and a few
framework objects), so reference counting frees nearly everything and the cyclic collector can
run far less often. :func:`tune_gc` moves what start-up allocated (modules, settings, pools)
out of the collector's sight with ``gc.freeze()`` and raises the thresholds; memory stays
bounded because the collector still runs, only every ``YOUNG_THRESHOLD`` allocations.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000   # net allocations between young-generation collections
MIDDLE_THRESHOLD = 20      # young collections between middle-generation collections
OLD_THRESHOLD = 100        # middle collections between full collections


def tune_gc() -> None:
    """Freeze what exists now and raise the collection thresholds. Call once, after start-up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
