"""A dispatcher stops even when a message wakes a claim worker in the very loop turn its
shutdown cancels that worker. On Python 3.11, ``asyncio.wait_for`` with a time limit returned
normally in that case and lost the cancellation, so the worker went on claiming and the
shutdown waited for it forever: a dispatcher that ignored SIGTERM (seen once in a clean
``make test``). Waits go through :func:`shared.tasks.wait_event` now, which keeps it.

The real pipeline on the embedded Postgres and broker, in this test's event loop.
"""

from __future__ import annotations

import asyncio

from services.dispatcher.settings import load_dispatcher_settings
from shared.core.delivery_message import DeliveryMessage
from tests.conftest import ServiceEnvFactory
from tests.support.dispatch import FAST_ENV, Endpoint, Event
from tests.support.pipeline_rig import PipelineRig, pipeline_rig
from tests.support.receiver import Receiver, Reply

STOP_WITHIN_S = 10.0
ROUNDS = 3


def _accept(rig: PipelineRig, event: Event, ep: Endpoint, offset: int) -> None:
    ticket = rig.pipeline.tracker.track("p", offset)
    rig.pipeline.accept(ticket, DeliveryMessage(
        event.delivery_ids[ep.id], event.id, ep.id, ep.account_id, None, None))


async def _stop_as_a_message_arrives(rig: PipelineRig, rx: Receiver, sent_before: int) -> None:
    # one request in flight at a time, and it is slow: the second message is deferred, so
    # the claim worker waits for a wake with a time limit (the wait that lost the cancel)
    ep = await rig.seed.endpoint(rx.url("/race"), max_in_flight=1)
    events = [await rig.seed.event([ep], publish=False) for _ in range(3)]
    rig.start()
    for offset, event in enumerate(events[:2]):
        _accept(rig, event, ep, offset)
    await rx.wait_for(lambda: len(rx.requests) > sent_before, timeout_s=5)
    await asyncio.sleep(0.05)
    assert rig.pipeline.gates.next_ready_in() is not None, "the second message is deferred"
    _accept(rig, events[2], ep, 2)
    # no await from the wake above to the rig's exit, whose Pipeline.shutdown cancels the
    # woken worker in this same loop turn


async def test_a_message_arriving_as_shutdown_begins_does_not_keep_the_pipeline_running(
        database_url: str, kafka_bootstrap: str, topic_prefix: str,
        service_env: ServiceEnvFactory) -> None:
    settings = load_dispatcher_settings(service_env(
        **FAST_ENV, DISPATCHER_CLAIM_WORKERS="1", DISPATCHER_CLAIM_LINGER_MS="0"))
    async with Receiver() as rx:
        rx.program("/race", [], default=Reply(200, delay_s=2.0))
        for round_ in range(ROUNDS):   # a fresh pipeline each round: each must stop
            async with asyncio.timeout(STOP_WITHIN_S):
                async with pipeline_rig(database_url, kafka_bootstrap, topic_prefix, settings,
                                        f"shutdown-race-{round_}") as rig:
                    await _stop_as_a_message_arrives(rig, rx, sent_before=len(rx.requests))
