"""A keyed delivery dead-lettered at claim (its endpoint is disabled) hands the key to the next
delivery at once, like one that died after an attempt: the whole key is dead-lettered in a
few seconds, with the sweeper's stale window far away (600 s) and no message announcing the
successors but the releases themselves."""

from __future__ import annotations

from tests.support.dispatch import DispatcherFactory, Seeder


async def test_a_disabled_keyed_head_releases_its_successor_at_claim(
        seeder: Seeder, dispatchers_per_test: DispatcherFactory) -> None:
    ep = await seeder.endpoint("http://127.0.0.1:9/never", enabled=False)
    events = [await seeder.event([ep], ordering_key="K", data={"n": n}, publish=False)
              for n in range(4)]
    # only the head's message reaches Kafka; the successors' outbox rows are dropped, so
    # nothing but a release can announce them
    await seeder.pool.execute("DELETE FROM outbox")
    head = events[0]
    await seeder._publish([], list(head.messages))
    await dispatchers_per_test.start(SWEEP_STALE_S="600")
    ids = [d for e in events for d in e.delivery_ids.values()]
    final = await seeder.wait_status(ids, {"dead"}, timeout_s=30)
    assert set(final.values()) == {"dead"}
    reasons = await seeder.pool.fetch(
        "SELECT reason FROM dead_letters WHERE delivery_id = ANY($1)", ids)
    assert [r["reason"] for r in reasons] == ["endpoint_disabled"] * len(ids)
