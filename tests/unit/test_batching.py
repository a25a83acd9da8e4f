"""shared.batching.BatchCollector: the one batching primitive behind ingest's group commit and
the dispatcher's outcome writer."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.batching import BatchCollector, BatchResultMismatch, CollectorClosed


class GatedFlush:
    """A flush that records its batches and waits for ``gate`` before answering."""

    def __init__(self, *, open_gate: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()
        self.running = self.max_running = 0
        self.started = asyncio.Event()

    async def __call__(self, items: list[str]) -> list[str]:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            self.batches.append(list(items))
            await self.gate.wait()
            if "fail" in items:
                raise OSError("disk on fire")
            if "short" in items:
                return []
            return [f"ok:{item}" for item in items]
        finally:
            self.running -= 1


def collector(flush: GatedFlush, *, max_items: int = 10, max_wait_s: float = 0,
              max_in_flight: int = 1) -> BatchCollector[str, str]:
    batches: BatchCollector[str, str] = BatchCollector(
        flush, max_items=max_items, max_wait_s=max_wait_s, max_in_flight=max_in_flight,
        name="test-batches")
    batches.start()
    return batches


async def test_each_submitter_gets_its_own_results_only_after_the_flush() -> None:
    flush = GatedFlush()
    batches = collector(flush, max_items=5, max_wait_s=0.001, max_in_flight=2)
    futures = [batches.submit([f"a{i}"]) for i in range(9)]
    futures.append(batches.submit(["b1", "b2", "b3"]))
    await asyncio.sleep(0.05)
    assert not any(f.done() for f in futures) and flush.running == 2
    flush.gate.set()
    results = await asyncio.gather(*futures)
    assert results == [[f"ok:a{i}"] for i in range(9)] + [["ok:b1", "ok:b2", "ok:b3"]]
    assert flush.max_running == 2 and all(len(b) <= 5 for b in flush.batches)
    assert any(b[-3:] == ["b1", "b2", "b3"] for b in flush.batches)  # never split
    await batches.close()


async def test_the_open_batch_fills_while_every_flush_slot_is_busy() -> None:
    flush = GatedFlush()
    batches = collector(flush, max_items=100, max_wait_s=0)
    first = batches.submit(["first"])
    await flush.started.wait()
    later = [batches.submit([str(i)]) for i in range(7)]
    await asyncio.sleep(0.01)
    assert flush.batches == [["first"]]  # one slot: the rest waits for it
    flush.gate.set()
    await asyncio.gather(first, *later)
    assert flush.batches == [["first"], [str(i) for i in range(7)]]
    await batches.close()


async def test_a_full_batch_closes_before_its_wait_ends() -> None:
    flush = GatedFlush(open_gate=True)
    batches = collector(flush, max_items=3, max_wait_s=60)
    futures = [batches.submit([str(i)]) for i in range(3)]
    async with asyncio.timeout(5):
        assert await asyncio.gather(*futures) == [["ok:0"], ["ok:1"], ["ok:2"]]
    assert flush.batches == [["0", "1", "2"]]
    await batches.close()


async def test_a_batch_waits_for_company_until_max_wait() -> None:
    flush = GatedFlush(open_gate=True)
    batches = collector(flush, max_items=100, max_wait_s=0.05)
    first = batches.submit(["a"])
    await asyncio.sleep(0.01)
    second = batches.submit(["b"])
    assert list(await asyncio.gather(first, second)) == [["ok:a"], ["ok:b"]]
    assert flush.batches == [["a", "b"]]
    await batches.close()


async def test_a_hurried_submission_closes_the_open_batch_early_and_takes_it_along() -> None:
    flush = GatedFlush(open_gate=True)
    batches = collector(flush, max_items=100, max_wait_s=60)
    lingering = batches.submit(["slow"])
    await asyncio.sleep(0.01)
    assert flush.batches == []   # the collector's own wait is a minute
    async with asyncio.timeout(5):
        hurried = await batches.submit(["urgent"], max_wait_s=0.02)
    assert hurried == ["ok:urgent"] and lingering.done()
    assert flush.batches == [["slow", "urgent"]]
    await batches.close()


async def test_after_a_hurried_batch_the_next_one_waits_the_collectors_time_again() -> None:
    flush = GatedFlush(open_gate=True)
    batches = collector(flush, max_items=100, max_wait_s=0.3)
    await batches.submit(["urgent"], max_wait_s=0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batches.submit(["later"])
    assert loop.time() - started >= 0.25   # not the hurried deadline of the batch before
    assert flush.batches == [["urgent"], ["later"]]
    await batches.close()


async def test_a_longer_wait_than_the_collectors_is_cut_to_it() -> None:
    flush = GatedFlush(open_gate=True)
    batches = collector(flush, max_items=100, max_wait_s=0.01)
    async with asyncio.timeout(5):
        assert await batches.submit(["a"], max_wait_s=60) == ["ok:a"]
    await batches.close()


async def test_a_submission_larger_than_max_items_is_flushed_alone_and_whole() -> None:
    flush = GatedFlush(open_gate=True)
    batches = collector(flush, max_items=2, max_wait_s=0.01)
    small = batches.submit(["s"])
    big = batches.submit(["b1", "b2", "b3"])
    assert await big == ["ok:b1", "ok:b2", "ok:b3"] and await small == ["ok:s"]
    assert flush.batches == [["s"], ["b1", "b2", "b3"]]
    await batches.close()


async def test_a_failed_flush_fails_only_its_own_batch_with_its_exception() -> None:
    flush = GatedFlush()
    batches = collector(flush)
    failing = [batches.submit(["fail"]), batches.submit(["with-it"])]
    await flush.started.wait()
    later = [batches.submit([x]) for x in ("x", "y")]
    flush.gate.set()
    errors = await asyncio.gather(*failing, return_exceptions=True)
    assert all(isinstance(e, OSError) and str(e) == "disk on fire" for e in errors)
    assert await asyncio.gather(*later) == [["ok:x"], ["ok:y"]]
    assert flush.batches == [["fail", "with-it"], ["x", "y"]]
    await batches.close()


async def test_a_wrong_number_of_results_fails_the_batch() -> None:
    flush = GatedFlush(open_gate=True)
    batches = collector(flush)
    with pytest.raises(BatchResultMismatch, match="0 results for 1 items"):
        await batches.submit(["short"])
    assert await batches.submit(["fine"]) == ["ok:fine"]
    await batches.close()


async def test_an_empty_submission_resolves_at_once() -> None:
    flush = GatedFlush()
    batches = collector(flush)
    assert await batches.submit([]) == [] and flush.batches == []
    await batches.close()


async def test_submit_refuses_before_start_and_after_close_begins() -> None:
    flush = GatedFlush()
    batches: BatchCollector[str, str] = BatchCollector(flush, max_items=10, max_wait_s=60)
    assert not batches.accepting
    with pytest.raises(CollectorClosed):
        batches.submit(["early"])
    batches.start()
    queued = [batches.submit([str(i)]) for i in range(3)]
    closing = asyncio.create_task(batches.close())
    await asyncio.sleep(0.01)
    assert not batches.accepting
    with pytest.raises(CollectorClosed):
        batches.submit(["late"])
    flush.gate.set()
    await closing  # flushes what was queued without waiting max_wait_s
    assert await asyncio.gather(*queued) == [["ok:0"], ["ok:1"], ["ok:2"]]
    assert flush.batches == [["0", "1", "2"]]


async def test_wait_idle_returns_only_when_nothing_is_queued_or_flushing() -> None:
    flush = GatedFlush()
    batches = collector(flush, max_wait_s=0)
    await asyncio.wait_for(batches.wait_idle(), 1)  # idle before any work
    future = batches.submit(["a"])
    await flush.started.wait()
    batches.submit(["b"])
    waiting = asyncio.create_task(batches.wait_idle())
    await asyncio.sleep(0.02)
    assert not waiting.done()
    flush.gate.set()
    await asyncio.wait_for(waiting, 1)
    assert future.done() and flush.batches == [["a"], ["b"]] and flush.running == 0
    await batches.close()


async def test_abort_cancels_running_and_queued_work() -> None:
    flush = GatedFlush()
    batches = collector(flush, max_items=1)
    running = batches.submit(["a"])
    await flush.started.wait()
    queued = batches.submit(["b"])
    await batches.abort()
    assert running.cancelled() and queued.cancelled() and flush.running == 0
    assert flush.batches == [["a"]] and not batches.accepting
    await asyncio.wait_for(batches.wait_idle(), 1)


def test_limits_are_validated() -> None:
    async def flush(items: list[int]) -> list[int]:
        return items

    for bad in ({"max_items": 0, "max_wait_s": 0}, {"max_items": 1, "max_wait_s": -1},
                {"max_items": 1, "max_wait_s": 0, "max_in_flight": 0}):
        with pytest.raises(ValueError):
            BatchCollector(flush, **bad)  # type: ignore[arg-type]


@given(sizes=st.lists(st.integers(min_value=0, max_value=7), max_size=40),
       max_items=st.integers(min_value=1, max_value=10),
       max_in_flight=st.integers(min_value=1, max_value=3),
       pauses=st.lists(st.booleans(), max_size=40))
def test_every_item_is_flushed_once_in_order_and_answered_to_its_submitter(
        sizes: list[int], max_items: int, max_in_flight: int, pauses: list[bool]) -> None:
    async def scenario() -> None:
        batches_seen: list[list[tuple[int, int]]] = []

        async def flush(items: list[tuple[int, int]]) -> list[str]:
            batches_seen.append(items)
            await asyncio.sleep(0)
            return [f"{s}.{i}" for s, i in items]

        batches: BatchCollector[tuple[int, int], str] = BatchCollector(
            flush, max_items=max_items, max_wait_s=0.0005, max_in_flight=max_in_flight)
        batches.start()
        futures = []
        for s, size in enumerate(sizes):
            futures.append(batches.submit([(s, i) for i in range(size)]))
            if s < len(pauses) and pauses[s]:
                await asyncio.sleep(0)
        results = await asyncio.gather(*futures)
        await batches.close()
        assert results == [[f"{s}.{i}" for i in range(size)] for s, size in enumerate(sizes)]
        flushed = [item for batch in batches_seen for item in batch]
        assert flushed == [(s, i) for s, size in enumerate(sizes) for i in range(size)]
        for batch in batches_seen:
            submissions = {s for s, _ in batch}
            assert len(batch) <= max_items or len(submissions) == 1
            for s in submissions:  # a submission is never split
                assert [i for t, i in batch if t == s] == list(range(sizes[s]))

    asyncio.run(scenario())
