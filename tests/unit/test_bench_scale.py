"""The scale benchmark's pure parts: configurations, generator counts, merged load results
and the per-delivery cost it prints (bench.scale, bench._common)."""

from __future__ import annotations

import argparse

import pytest

from bench._common import LoadResult, merge_results
from bench.e2e import PgView, Phase
from bench.scale import Config, Outcome, generator_count, generator_verdict, parse_configs


def test_configs_take_a_rate_per_dispatcher_or_their_own() -> None:
    assert parse_configs("1x1, 2x2,8x4@24000", 3000.0) == [
        Config(1, 1, 3000.0), Config(2, 2, 6000.0), Config(8, 4, 24000.0)]
    assert Config(4, 2, 1.0).label == "4x2"


@pytest.mark.parametrize("raw", ["", "4", "0x1", "2x0", "ax2", "2x2@0", "2x2@-5", "2*2"])
def test_malformed_configs_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_configs(raw, 3000.0)


def test_generators_cover_the_rate_and_every_ingest() -> None:
    opts = argparse.Namespace(generators=0, generator_rate=4000.0)
    assert generator_count(Config(1, 1, 3000.0), opts) == 1
    assert generator_count(Config(8, 4, 24000.0), opts) == 6
    assert generator_count(Config(2, 3, 1000.0), opts) == 3
    opts.generators = 2
    assert generator_count(Config(8, 4, 24000.0), opts) == 2


def test_merged_results_span_every_generator() -> None:
    a = LoadResult(started=10.0, ended=20.0, offered=100, skipped=5, errors=1,
                   accepted=[("evt_a", 11.0)], request_s=[0.01], requests=2, cpu_s=0.5)
    b = LoadResult(started=9.5, ended=21.0, offered=50, accepted=[("evt_b", 12.0)],
                   request_s=[0.02, 0.03], requests=1, cpu_s=0.25)
    merged = merge_results([a, b])
    assert (merged.started, merged.ended) == (9.5, 21.0)
    assert (merged.offered, merged.skipped, merged.errors, merged.requests) == (150, 5, 1, 3)
    assert merged.cpu_s == 0.75
    assert merged.accepted == [("evt_a", 11.0), ("evt_b", 12.0)]
    assert sorted(merged.request_s) == [0.01, 0.02, 0.03]


def _outcome(gens: list[LoadResult], counters: dict[str, float],
             receipts: dict[str, float]) -> Outcome:
    load = merge_results(gens)
    phase = Phase("p", load, receipts, (load.started, load.ended),
                  {"dispatcher": 0.5, "postgres": 0.25}, {}, pg=PgView(counters=counters),
                  generators=gens)
    return Outcome(Config(1, 1, 100.0), phase)


def test_cost_per_delivery_counts_every_table_and_the_offer_window() -> None:
    gen = LoadResult(started=0.0, ended=10.0, offered=1000, cpu_s=1.0)
    receipts = {f"evt_{i}": 0.5 + i * 0.009 for i in range(1000)}  # all within 0..10
    receipts["evt_late"] = 11.0                                      # after the offer ended
    outcome = _outcome([gen], {"wal_bytes": 2_002_000.0, "commits": 1001.0,
                               "deliveries_p1.ins": 1001.0, "deliveries_p1.upd": 2002.0,
                               "attempts_p1.ins": 1001.0, "outbox.del": 1001.0}, receipts)
    assert outcome.per_delivery("wal_bytes") == 2000.0
    assert outcome.per_delivery("commits") == 1.0
    assert outcome.row_writes() == {"ins": 2.0, "upd": 2.0, "del": 1.0}
    assert outcome.delivered_while_offered() == 100.0
    assert outcome.cpu_ms_per_delivery() == {"dispatcher": 5.0, "postgres": 2.5}


def test_the_verdict_names_who_held_the_offer_back() -> None:
    fine = LoadResult(started=0.0, ended=10.0, offered=1000, cpu_s=2.0)
    assert "reached" in generator_verdict(_outcome([fine], {}, {}))
    starved = LoadResult(started=0.0, ended=10.0, offered=900, skipped=100, cpu_s=2.0)
    assert "ingest" in generator_verdict(_outcome([starved], {}, {}))
    busy = LoadResult(started=0.0, ended=10.0, offered=1000, cpu_s=9.0)
    assert "generator may be the limit" in generator_verdict(_outcome([busy], {}, {}))
