"""bench/e2e.py's reading of the low-rate path: the Postgres statement trace understands the
claim's compound BEGIN and COMMIT round trips, and the latency legs say which transport carried
the delivery messages instead of showing Kafka legs for messages that never went there."""

from __future__ import annotations

from bench._common import LoadResult, parse_pg_trace
from bench.e2e import Phase, transport_line

_TRACE = """\
2026-12-04 21:00:00.000 UTC [11] LOG:  duration: 0.100 ms  statement: BEGIN; SET LOCAL plan_cache_mode = force_generic_plan
2026-12-04 21:00:00.001 UTC [11] LOG:  duration: 0.200 ms  execute s1: SELECT endpoint_id, consecutive_failures, failing_since, circuit_open_until, probe_until, rate_next_free_at FROM endpoint_health
2026-12-04 21:00:00.002 UTC [12] LOG:  duration: 0.050 ms  statement: SELECT 1
2026-12-04 21:00:00.004 UTC [11] LOG:  duration: 1.500 ms  statement: DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id = ANY('{7}'::bigint[]) FOR UPDATE SKIP LOCKED); COMMIT
2026-12-04 21:00:00.005 UTC [11] LOG:  duration: 0.100 ms  statement: BEGIN; SET LOCAL plan_cache_mode = force_generic_plan
2026-12-04 21:00:00.006 UTC [11] LOG:  duration: 0.300 ms  execute s1: SELECT endpoint_id, consecutive_failures, failing_since, circuit_open_until, probe_until, rate_next_free_at FROM endpoint_health
2026-12-04 21:00:00.008 UTC [11] LOG:  duration: 1.000 ms  statement: COMMIT
"""  # noqa: E501


def test_the_trace_closes_a_claim_at_its_compound_commit() -> None:
    stats = parse_pg_trace(_TRACE)
    claim = stats["dispatcher claim"]
    assert claim.count == 2                       # one with the outbox delete, one without
    assert claim.statements == 3                  # the lock twice, the delete once
    assert claim.commit_ms == 2.5 and round(claim.server_ms, 3) == 0.5
    assert stats["autocommit: SELECT 1"].count == 1


def _phase(accepted: list[str], kafka: list[str], probed: bool) -> Phase:
    load = LoadResult(accepted=[(e, 10.0) for e in accepted], started=9.0, ended=11.0)
    phase = Phase("p", load, {}, (9.0, 11.0), {}, {}, probed=probed)
    phase.kafka = {e: (10.0, 10.1) for e in kafka}
    return phase


def test_the_legs_name_the_transport() -> None:
    assert transport_line(_phase(["a", "b"], [], probed=False)) is None
    only_pg = transport_line(_phase(["a", "b"], [], probed=True))
    assert only_pg is not None and "Postgres only" in only_pg and "no Kafka leg" in only_pg
    some = transport_line(_phase(["a", "b", "c"], ["b"], probed=True))
    assert some is not None and "1 of 3" in some
