"""The 2-minute chaos soak (the 10-minute one is ``make chaos``): steady load through 2 ingest,
3 dispatcher and 1 admin processes with bulk replays running, while a dispatcher, the broker,
Postgres, an ingest and the admin are killed with SIGKILL in turn (15-22 s apart) and brought
back. The ledger must hold: accepted = delivered + dead + cancelled, nothing open, every
success arrived, repeats only after a crash and with the same webhook-id, and every fault fully
recovered. See ``bench/chaos.py``."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import Options, run_soak

ORDER = ("dispatcher-1", "broker", "postgres", "ingest-0", "admin", "dispatcher-2")


async def test_two_minute_chaos_soak_keeps_the_ledger(tmp_path: Path) -> None:
    opts = Options(duration_s=120.0, rate=15.0, fault_min_s=15.0, fault_max_s=22.0,
                   replay_every_s=15.0, drain_timeout_s=120.0, seed=8, order=ORDER)
    ledger = await run_soak(tmp_path / "chaos", opts)
    print(ledger.table())
    assert ledger.ok, ledger.table()
    assert len(ledger.faults) >= 4, ledger.table()
    assert {f.target for f in ledger.faults} >= {"dispatcher-1", "broker", "postgres"}
    counts = ledger.deliveries
    assert counts.get("succeeded", 0) and counts.get("dead", 0) and counts.get("cancelled", 0)
    assert ledger.replays_started > 0
    assert sum(counts.values()) == (counts.get("succeeded", 0) + counts.get("dead", 0)
                                    + counts.get("cancelled", 0))
