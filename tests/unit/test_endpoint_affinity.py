"""Endpoint affinity: every delivery of an endpoint is keyed by the endpoint id, so it lands on
one partition and one dispatcher claims it; inside that dispatcher, the endpoints it owns are
still spread over all of its claim workers."""

from __future__ import annotations

from collections import Counter

from services.dispatcher.gates import Gates, claim_shard_key
from shared.adapters.kafka.partitioning import partition_for
from shared.adapters.pg.announce import delivery_record
from shared.core.wakeup import partition_of

PARTITIONS = 16
ENDPOINTS = [f"ep_01JD{i:022d}" for i in range(4000)]


def _row(endpoint_id: str, i: int, ordering_key: str | None) -> dict[str, object]:
    return {"id": f"dlv_{i:026d}", "event_id": f"evt_{i:026d}", "endpoint_id": endpoint_id,
            "account_id": "acct", "ordering_key": ordering_key,
            "sequence": None if ordering_key is None else i + 1, "generation": i % 3}


def test_every_delivery_of_an_endpoint_goes_to_one_partition() -> None:
    for endpoint_id in ENDPOINTS[:50]:
        records = [delivery_record(_row(endpoint_id, i, key))
                   for i, key in enumerate([None, None, "order-1", "order-2", "a|b", None])]
        assert {r.key for r in records} == {endpoint_id.encode()}
        all_partitions = list(range(PARTITIONS))
        chosen = {partition_for(r.key, all_partitions, all_partitions) for r in records}
        assert chosen == {partition_of(endpoint_id.encode(), PARTITIONS)}


def _members(dispatchers: int, assignment: str) -> list[set[int]]:
    """Partitions per member: round-robin (aiokafka's default assignor: member k gets k,
    k+D, ...) or contiguous ranges (Kafka's range assignor)."""
    if assignment == "round-robin":
        return [{p for p in range(PARTITIONS) if p % dispatchers == k} for k in range(dispatchers)]
    size = PARTITIONS // dispatchers
    return [set(range(k * size, (k + 1) * size)) for k in range(dispatchers)]


def test_a_member_s_endpoints_spread_over_all_its_claim_workers() -> None:
    workers = 4
    for assignment in ("round-robin", "range"):
        for dispatchers in (1, 2, 4, 8):
            for owned in _members(dispatchers, assignment):
                mine = [e for e in ENDPOINTS if partition_of(e.encode(), PARTITIONS) in owned]
                per_worker = Counter(claim_shard_key(e) % workers for e in mine)
                assert set(per_worker) == set(range(workers)), (assignment, dispatchers)
                # within 25% of an even share (hundreds of endpoints per member)
                assert max(per_worker.values()) < 1.25 * len(mine) / workers, per_worker


def test_the_partition_hash_would_have_put_a_member_on_one_claim_worker() -> None:
    """Why the claim workers do not shard by the partition hash (crc32): with 4 members of a
    round-robin assignment and 4 workers, each member's endpoints share one crc32 residue."""
    owned = _members(4, "round-robin")[1]
    mine = [e for e in ENDPOINTS if partition_of(e.encode(), PARTITIONS) in owned]
    assert len({partition_of(e.encode(), PARTITIONS) % 4 for e in mine}) == 1


def test_gates_report_the_claim_shard_of_an_endpoint() -> None:
    gates = Gates(concurrency=8, endpoint_concurrency=4, waiting_per_endpoint=10)
    for endpoint_id in ENDPOINTS[:20]:
        assert gates.gate(endpoint_id).shard_key == claim_shard_key(endpoint_id)
