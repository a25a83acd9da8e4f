"""The fetch deadline: short while records flow, long after a quiet second."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from services.dispatcher.fetch_wait import (
    BUSY_WAIT_MS,
    QUIET_AFTER_S,
    QUIET_WAIT_MS,
    apply_fetch_wait,
    fetch_wait_ms,
)


def test_short_wait_while_records_flow_long_after_a_quiet_spell() -> None:
    assert fetch_wait_ms(100.0, 100.0) == BUSY_WAIT_MS
    assert fetch_wait_ms(100.0 + QUIET_AFTER_S - 0.01, 100.0) == BUSY_WAIT_MS
    assert fetch_wait_ms(100.0 + QUIET_AFTER_S, 100.0) == QUIET_WAIT_MS
    assert BUSY_WAIT_MS < QUIET_WAIT_MS <= 1000  # a quiet fetch still returns within a second


class _Fetcher:
    def __init__(self) -> None:
        self._fetch_max_wait_ms = BUSY_WAIT_MS


class _Consumer:
    def __init__(self, fetcher: object | None) -> None:
        self._fetcher = fetcher


def test_apply_sets_the_deadline_aiokafka_reads_for_each_fetch_request() -> None:
    fetcher = _Fetcher()
    assert apply_fetch_wait(_Consumer(fetcher), QUIET_WAIT_MS) is True
    assert fetcher._fetch_max_wait_ms == QUIET_WAIT_MS


def test_apply_refuses_a_consumer_without_that_fetcher_and_changes_nothing() -> None:
    assert apply_fetch_wait(_Consumer(None), QUIET_WAIT_MS) is False
    assert apply_fetch_wait(_Consumer(object()), QUIET_WAIT_MS) is False


def test_the_installed_aiokafka_keeps_the_deadline_where_apply_sets_it() -> None:
    """An aiokafka upgrade that moves the attribute fails here, not silently in production
    (the dispatcher would keep polling every 10 ms when idle)."""
    import inspect

    from aiokafka.consumer.fetcher import Fetcher

    source = inspect.getsource(Fetcher)
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in source
    assert "self._fetch_max_wait_ms," in source  # read when a fetch request is built
    assert "_fetcher" in inspect.getsource(AIOKafkaConsumer.start)
