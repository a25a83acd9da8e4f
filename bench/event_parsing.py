"""Reading and checking event bodies, per event, as a table. A benchmark, not a test.

    .venv/bin/python -m bench.event_parsing [--events 1000] [--rounds 5]

For the bench's usual event (~120 bytes of ``data``) spelled three ways (compact as orjson and
``JSON.stringify`` write it; as Python's ``json.dumps`` writes it; indented), and for a larger
event (50 line items, ~4 KiB), it times :func:`parse_event` (with and without an
Idempotency-Key) and :func:`parse_batch` (batches of 500) in CPU time, best of ``--rounds``,
next to the floor of the machine: ``orjson.loads`` + ``orjson.dumps`` of the same body with
no checks at all (what the ingest did before exact payloads, less its checks).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import orjson

from services.ingest.event_validation import parse_batch, parse_event

LIMIT = 262144


def _event(n: int, lines: int) -> dict[str, Any]:
    return {"account_id": f"acct_{n % 50}", "type": "invoice.paid",
            "data": {"invoice": f"in_{n}", "amount": n % 10000, "currency": "eur",
                     "lines": [{"sku": "plan-pro", "qty": 1, "unit_amount": 4200 + i}
                               for i in range(lines)]}}


SPELLINGS: dict[str, Callable[[Any], bytes]] = {
    "compact": orjson.dumps,
    "json.dumps": lambda obj: json.dumps(obj).encode(),
    "indented": lambda obj: json.dumps(obj, indent=2).encode(),
}


def _best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times)


def _row(bodies: list[bytes], batch: bytes, rounds: int) -> tuple[float, float, float, float]:
    """Seconds per event: floor, single, single with a key, in a batch of 500."""
    n = len(bodies)
    floor = _best(lambda: [orjson.dumps(orjson.loads(b)["data"]) for b in bodies], rounds)
    single = _best(lambda: [parse_event(b, max_data_bytes=LIMIT) for b in bodies], rounds)
    keyed = _best(lambda: [parse_event(b, max_data_bytes=LIMIT, idempotency_key="k")
                           for b in bodies], rounds)
    batched = _best(lambda: parse_batch(batch, LIMIT), rounds)
    return floor / n, single / n, keyed / n, batched / 500


def main() -> None:
    parser = argparse.ArgumentParser(description="Event body reading cost per event.")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    print(f"{'event':<10}{'spelling':<12}{'floor us':>9}{'single us':>10}{'+key us':>9}"
          f"{'batch us':>9}{'x floor':>8}")
    for size, lines in (("small", 1), ("4 KiB", 50)):
        events = [_event(n, lines) for n in range(opts.events)]
        for name, spell in SPELLINGS.items():
            floor, single, keyed, batched = _row([spell(e) for e in events],
                                                 spell({"events": events[:500]}), opts.rounds)
            print(f"{size:<10}{name:<12}{floor * 1e6:>9.1f}{single * 1e6:>10.1f}"
                  f"{keyed * 1e6:>9.1f}{batched * 1e6:>9.1f}{single / floor:>8.1f}")
    print("\nCPU time per event, best of", opts.rounds, "rounds; batch = parse_batch of 500.")


if __name__ == "__main__":
    main()
