"""Run a Procrastinate worker with this project's defaults (``python -m tasks worker``).

Defaults: concurrency from WORKER_CONCURRENCY, a 2 s heartbeat so a dead worker
is noticed within WORKER_STALLED_AFTER, finished jobs deleted (the emails table
keeps the history), a bounded graceful shutdown, and a wake-up timer so a job
runs at its time instead of at the next 5 s poll.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import structlog
from procrastinate import worker as procrastinate_worker

from tasks import db
from tasks.app import app
from tasks.config import Settings
from tasks.runtime import Runtime

log = structlog.get_logger("tasks.worker")

#: How soon the wake-up timer looks again at a due job nobody has fetched.
RECHECK = 0.02
#: Connections beyond the job slots: fetch/finish, heartbeat, periodic deferrer, wake-up timer.
EXTRA_CONNECTIONS = 4


class Worker(procrastinate_worker.Worker):
    """Procrastinate's worker, woken when the next job is due rather than at the next poll.

    Procrastinate is notified when a job is inserted, not when a future job
    becomes due (PROCRASTINATE.md, "Scheduling precision"); a side task sleeps
    until the earliest ``scheduled_at`` and wakes the fetch loop then.
    """

    def __init__(self, *, pool: Any, runtime: Runtime, **kwargs: Any):
        super().__init__(**kwargs)
        self._pool = pool
        self._runtime = runtime
        self._jobs_changed = asyncio.Event()

    async def _persist_job_status(
        self, job: Any, status: Any, retry_decision: Any, context: Any, job_result: Any
    ) -> None:
        # The send task already deleted its job in the statement that recorded the
        # email's outcome (one round trip instead of two).
        if job.id in self._runtime.ended_jobs:
            self._runtime.ended_jobs.discard(job.id)
            self._job_ids_to_abort.pop(job.id, None)
            return
        await super()._persist_job_status(job, status, retry_decision, context, job_result)

    async def _handle_notification(self, *, channel: str, notification: Any) -> None:
        await super()._handle_notification(channel=channel, notification=notification)
        if notification["type"] == "job_inserted":
            self._jobs_changed.set()

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        side_tasks = super()._start_side_tasks()
        side_tasks.append(asyncio.create_task(self._wake_when_due(), name="wake_when_due"))
        return side_tasks

    async def _seconds_to_next_job(self) -> float | None:
        async with self._pool.connection() as conn:
            row = await db.one_async(conn, "seconds_to_next_job")
        return row["seconds"] if row else None

    async def _wake_when_due(self) -> None:
        poll = self.fetch_job_polling_interval
        recheck = RECHECK
        while True:
            self._jobs_changed.clear()
            try:
                seconds = await self._seconds_to_next_job()
            except Exception as exc:  # a database outage must not stop the worker
                log.warning("wake-up timer: cannot read the next due job", error=str(exc))
                seconds = None
            if seconds is not None and seconds <= 0:
                # A due job nobody has fetched. Procrastinate clears its wake-up
                # event when a fetch comes back empty, so a wake that lands during
                # such a fetch is lost: wake it again if we have room, and look
                # again soon (less often while the job stays: it may be another
                # worker's to take).
                if len(self._running_jobs) < self.concurrency:
                    self._new_job_event.set()
                timeout, recheck = recheck, min(recheck * 2, poll)
            else:
                recheck = RECHECK
                timeout = poll if seconds is None else min(seconds, poll)
            try:
                await asyncio.wait_for(self._jobs_changed.wait(), timeout=max(timeout, 0) + 0.0005)
            except TimeoutError:
                if seconds is not None and 0 < seconds <= poll:
                    self._new_job_event.set()


async def run(settings: Settings, *, concurrency: int | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT, then finish in-flight sends and stop."""
    concurrency = concurrency or settings.worker_concurrency
    name = f"{socket.gethostname()}:{os.getpid()}"
    pool = db.async_pool(settings.database_url, size=concurrency + EXTRA_CONNECTIONS)
    await pool.open(wait=True, timeout=30)
    rt = Runtime.create(settings, pool, worker_name=name)
    await rt.limiter.prepare(pool)
    try:
        async with app.open_async(pool):
            app.perform_import_paths()
            worker = Worker(
                app=app,
                pool=pool,
                runtime=rt,
                name=name,
                concurrency=concurrency,
                fetch_job_polling_interval=settings.worker_poll_interval,
                shutdown_graceful_timeout=settings.worker_shutdown_timeout,
                update_heartbeat_interval=settings.worker_heartbeat,
                stalled_worker_timeout=settings.worker_stalled_after,
                delete_jobs="successful",
                additional_context={"runtime": rt},
                listen_notify=True,
            )
            log.info(
                "worker started",
                worker=name,
                concurrency=concurrency,
                transports=[t.name for t in rt.transports],
            )
            await worker.run()
    finally:
        await rt.close()
        await pool.close()
        log.info("worker stopped", worker=name)
