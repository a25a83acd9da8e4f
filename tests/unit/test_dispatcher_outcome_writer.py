"""The dispatcher's outcome writer over the shared batching primitive, with its recording step
replaced by an in-memory fake (the SQL side is tests/integration/test_dispatcher_store.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import pytest

from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.model import Finished
from services.dispatcher.outcomes import OutcomeWriter
from shared.core.backoff import BackoffPolicy


def finished(name: str) -> Finished:
    """A stand-in outcome: the writer itself only reads ``claimed`` ids (to log a refusal)."""
    claimed = SimpleNamespace(event_id=f"evt_{name}", delivery_id=f"dlv_{name}",
                              endpoint_id="ep_1")
    return cast(Finished, SimpleNamespace(claimed=claimed, name=name))


class FakeRecording:
    """Records batches; raises an unexpected (non-database) error for batches holding ``bad``."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, batch: Sequence[Any]) -> None:
        names = [item.name for item in batch]
        if "bad" in names:
            raise KeyError("a bug in the recording step")
        self.batches.append(names)


def writer_with(recording: FakeRecording) -> OutcomeWriter:
    writer = OutcomeWriter(cast(Any, None), "me", BackoffPolicy(), DispatcherMetrics(),
                           lambda ids, messages: None, lambda batch: None,
                           batch_max=10, batch_wait_ms=0)
    writer._record_with_retry = recording  # type: ignore[method-assign]
    return writer


async def test_an_unexpected_error_is_logged_and_later_batches_are_still_recorded(
        caplog: pytest.LogCaptureFixture) -> None:
    recording = FakeRecording()
    writer = writer_with(recording)
    writer.start()
    with caplog.at_level(logging.ERROR, logger="services.dispatcher.outcomes"):
        writer.submit(finished("bad"))
        assert await writer.drain(5)
        writer.submit(finished("a"))
        writer.submit(finished("b"))
        assert await writer.drain(5)
    await writer.stop()
    assert recording.batches == [["a", "b"]]
    failures = [r for r in caplog.records if "left to the sweeper" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None

