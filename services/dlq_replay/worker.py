"""The bulk replay worker: claims running jobs by lease and walks them at their rate.

Safe with several admin processes: a job is claimed with ``FOR UPDATE SKIP LOCKED`` and a lease
that every step renews; every step re-checks the lease under the job's row lock (see
:mod:`jobs`), so two processes never step the same job at once, and a job whose process died is
taken over when its lease lapses. On a graceful stop the leases are released at once.

Pacing: each job has a :class:`SlidingWindowPacer`, so no one-second window holds more than
``max_per_second`` queued deliveries (as this process commits them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid

import asyncpg

from services.dlq_replay.jobs import (
    ClaimedJob,
    StepResult,
    claim_job,
    fail_job,
    release_jobs,
    run_step,
)
from services.dlq_replay.metrics import AdminMetrics
from services.dlq_replay.policy import SlidingWindowPacer, batch_size
from services.dlq_replay.settings import AdminSettings
from shared.adapters.pg.txn import RETRYABLE, in_transaction
from shared.logging import fields
from shared.outbox_relay import OutboxFlusher
from shared.tasks import cancel_and_wait, wait_event, within

log = logging.getLogger(__name__)

TRANSIENT = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
             asyncpg.CannotConnectNowError, asyncpg.exceptions.QueryCanceledError, *RETRYABLE)
MAX_STEP_FAILURES = 5  # consecutive non-transient failures before a job is marked failed


def worker_id() -> str:
    """A lease owner name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class BulkReplayWorker:
    """Background loop of one admin process; ``start``/``stop`` from the app's cleanup_ctx."""

    def __init__(self, pool: asyncpg.Pool, flusher: OutboxFlusher, metrics: AdminMetrics,
                 settings: AdminSettings) -> None:
        self._pool = pool
        self._flusher = flusher
        self._metrics = metrics
        self._settings = settings
        self.owner = worker_id()
        self._wake = asyncio.Event()
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bulk-replay-claimer")

    def wake(self) -> None:
        """Look for new jobs now (a job was just created); never blocks."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, stop walking (a step in flight is cancelled, so rolled back) and
        release the leases so another process resumes at once."""
        await cancel_and_wait(self._task, *self._jobs.values())
        with contextlib.suppress(*TRANSIENT):
            await within(release_jobs(self._pool, self.owner), 5)

    async def _run(self) -> None:
        while True:
            try:
                await self._claim_all()
            except TRANSIENT as exc:
                log.warning("bulk replay: cannot claim jobs: %r", exc)
            except Exception:  # never let the claimer die: log, and try again next round
                log.exception("bulk replay: claiming jobs failed")
            await wait_event(self._wake, self._settings.job_poll_interval_s)
            self._wake.clear()

    async def _claim_all(self) -> None:
        while len(self._jobs) < self._settings.max_jobs_per_process:
            job = await claim_job(self._pool, owner=self.owner, lease_s=self._settings.job_lease_s,
                                  exclude=list(self._jobs))
            if job is None:
                return
            log.info("bulk replay claimed", extra=fields(replay_id=job.id))
            task = asyncio.create_task(self._walk(job), name=f"bulk-replay-{job.id}")
            self._jobs[job.id] = task
            self._metrics.bulk_jobs_owned.set(len(self._jobs))

    async def _walk(self, job: ClaimedJob) -> None:
        try:
            await self._walk_until_done(job)
        finally:
            self._jobs.pop(job.id, None)
            self._metrics.bulk_jobs_owned.set(len(self._jobs))

    async def _walk_until_done(self, job: ClaimedJob) -> None:
        pacer = SlidingWindowPacer(job.max_per_second)
        batch = batch_size(job.max_per_second)
        failures = 0
        while True:
            await asyncio.sleep(pacer.wait_s(batch, time.monotonic()))
            started = time.monotonic()
            try:
                step = await self._step(job, batch)
            except TRANSIENT as exc:
                log.warning("bulk replay step failed, retrying: %r", exc,
                            extra=fields(replay_id=job.id))
                self._metrics.bulk_step_failures.inc()
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:
                failures += 1
                self._metrics.bulk_step_failures.inc()
                log.exception("bulk replay step error", extra=fields(replay_id=job.id))
                if failures >= MAX_STEP_FAILURES:
                    await fail_job(self._pool, job_id=job.id, owner=self.owner,
                                   error=f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(1.0)
                continue
            failures = 0
            pacer.record(sum(o.outcome == "queued" for o in step.outcomes), time.monotonic(),
                         started)
            if not step.running:
                log.info("bulk replay stopped walking", extra=fields(replay_id=job.id))
                return

    async def _step(self, job: ClaimedJob, batch: int) -> StepResult:
        settings = self._settings

        async def work(conn: asyncpg.Connection) -> StepResult:
            return await run_step(conn, job_id=job.id, owner=self.owner,
                                  lease_s=settings.job_lease_s, batch=batch)

        step = await in_transaction(self._pool, work)
        self._flusher.submit(step.outbox_ids, step.messages)
        self._metrics.bulk_steps.inc()
        for outcome in step.outcomes:
            self._metrics.replay_outcomes.labels("bulk", outcome.outcome).inc()
        return step
