"""The benchmark receiver process over real sockets: what bench/e2e.py relies on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from bench._receiver import ReceiverProcess


@pytest.fixture
def receiver() -> Iterator[ReceiverProcess]:
    rx = ReceiverProcess()
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()


async def test_hooks_over_keep_alive_are_recorded_once_and_repeats_counted(
        receiver: ReceiverProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for webhook_id in ("evt_1", "evt_2", "evt_1"):
            async with session.post(receiver.url("ep1"), data=b'{"a": 1}',
                                    headers={"webhook-id": webhook_id}) as response:
                assert response.status == 204
        async with session.post(receiver.url("ep2"), data=b"x" * 200_000,
                                headers={"webhook-id": "evt_1"}) as response:
            assert response.status == 204
        async with session.get(f"http://127.0.0.1:{receiver.port}/nope") as response:
            assert response.status == 404
    stats = await asyncio.to_thread(receiver.stats)
    assert stats == {"received": 4, "distinct": 3, "duplicates": 1}
    taken = await asyncio.to_thread(receiver.take)
    assert sorted(taken) == ["ep1 evt_1", "ep1 evt_2", "ep2 evt_1"]
    assert await asyncio.to_thread(receiver.take) == {}


async def test_a_chunked_request_gets_400_and_the_server_keeps_serving(
        receiver: ReceiverProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
    writer.write(b"POST /hook/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"1\r\na\r\n0\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
    writer.close()
    assert (await asyncio.to_thread(receiver.stats))["received"] == 0
