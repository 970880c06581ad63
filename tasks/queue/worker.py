"""Run a Procrastinate worker with this project's defaults (``python -m tasks worker``).

Defaults: concurrency from WORKER_CONCURRENCY, a 2 s heartbeat so a dead worker
is noticed within WORKER_STALLED_AFTER, finished jobs deleted (the emails table
keeps the history), a bounded graceful shutdown, and a wake-up timer so a job
runs at its time instead of at the next 5 s poll.

The process outlives its database: when PostgreSQL goes away (a restart, a
failover), Procrastinate stops the worker (its LISTEN connection fails) or its
fetch raises. ``run`` then gives running jobs a short grace, drops the pool and
builds everything again, with backoff, until the database answers; only
SIGTERM/SIGINT end it. A supervisor is still recommended (docs/deploying.md, "Supervision").
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any

import psycopg
import psycopg_pool
import structlog
from procrastinate import exceptions as procrastinate_exceptions

from tasks.core import db, stopping
from tasks.core.config import Settings
from tasks.delivery import transports
from tasks.delivery.runtime import Runtime
from tasks.queue import jobs, procrastinate_boundary
from tasks.queue.app import app

log = structlog.get_logger("tasks.queue.worker")

#: How soon the wake-up timer looks again at a due job nobody has fetched.
RECHECK = 0.02
#: Connections beyond the job slots: fetch/finish, heartbeat, periodic deferrer, wake-up
#: timer, and the send task's two group commits (tasks/delivery/groupcommit.py).
EXTRA_CONNECTIONS = 6
#: Seconds running jobs get to finish (and write their outcome) when the worker
#: stops because it lost the database; then they are cancelled and the reconciler
#: decides (retry if DATA had not begun, else ``uncertain``).
CRASH_GRACE = 15.0
#: Backoff between rebuilds while the database does not answer: first, most.
RESTART_BACKOFF = (0.5, 15.0)
#: A run that lasted this long resets the backoff.
HEALTHY_RUN = 60.0
#: Errors that mean "the database went away", after which the worker is rebuilt.
CONNECTION_ERRORS = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    procrastinate_exceptions.ConnectorException,
    OSError,
)


class Worker(procrastinate_boundary.HookedWorker):
    """Procrastinate's worker, woken when the next job is due rather than at the next poll.

    Procrastinate is notified when a job is inserted, not when a future job
    becomes due (it would find one only at its next poll); a side task sleeps
    until the earliest ``scheduled_at`` and wakes the fetch loop then. It uses
    only the hooks of ``HookedWorker`` (tasks/queue/procrastinate_boundary.py),
    none of Procrastinate's private names.
    """

    def __init__(self, *, pool: db.AsyncPool, runtime: Runtime, **kwargs: Any):
        super().__init__(**kwargs)
        self._pool = pool
        self._runtime = runtime
        self._jobs_changed = asyncio.Event()

    def side_task_failed(self, name: str, error: BaseException) -> None:
        # The jobs left get a short grace instead of the deploy's long one.
        log.error("worker side task failed; stopping to start again", task=name, error=str(error))
        if self.shutdown_graceful_timeout is None or self.shutdown_graceful_timeout > CRASH_GRACE:
            self.shutdown_graceful_timeout = CRASH_GRACE

    def job_ended_by_task(self, job_id: int) -> bool:
        # The send task already deleted its job in the statement that recorded the
        # email's outcome (one round trip instead of two).
        if job_id in self._runtime.ended_jobs:
            self._runtime.ended_jobs.discard(job_id)
            return True
        return False

    def job_inserted(self) -> None:
        self._jobs_changed.set()

    def extra_side_tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        return {"wake_when_due": self._wake_when_due()}

    async def _seconds_to_next_job(self) -> tuple[float | None, float | None]:
        async with self._pool.connection() as conn:
            return await procrastinate_boundary.seconds_to_next_job(conn)

    async def _wake_when_due(self) -> None:
        poll = self.fetch_job_polling_interval
        recheck = RECHECK
        while True:
            self._jobs_changed.clear()
            try:
                seconds, future = await self._seconds_to_next_job()
            except Exception as exc:  # a database outage must not stop the worker
                log.warning("wake-up timer: cannot read the next due job", error=str(exc))
                seconds, future = None, None
            # Sleep until the next job not yet due, at most a poll interval...
            timeout = poll if future is None else min(future, poll)
            if seconds is not None and seconds <= 0:
                # ...or less: a due job nobody has fetched. Procrastinate clears its
                # wake-up event when a fetch comes back empty, so a wake that lands during
                # such a fetch is lost: wake it again if we have room, and look again soon
                # (less often while the job stays: it may be another worker's to take, or
                # wait for a lock). That backoff never delays the wake for a job to come:
                # when a burst has been drained, the next one is woken for on time.
                if self.has_room():
                    self.wake()
                timeout, recheck = min(timeout, recheck), min(recheck * 2, poll)
            else:
                recheck = RECHECK
            try:
                await asyncio.wait_for(self._jobs_changed.wait(), timeout=max(timeout, 0) + 0.0005)
            except TimeoutError:
                if future is not None and 0 < future <= timeout + 0.001:
                    self.wake()


async def run(settings: Settings, *, concurrency: int | None = None) -> None:
    """Run the worker until SIGTERM/SIGINT; after losing the database, start it again.

    A signal at any moment stops it: while it connects or waits for the database
    it gives up at once, while it runs it finishes its jobs first (a second
    signal: at once).

    ``concurrency`` (``--concurrency``) overrides WORKER_CONCURRENCY everywhere the
    worker reads it: its job slots, its database pool and each SMTP transport's
    connection pool.
    """
    if concurrency is not None:
        settings = dataclasses.replace(settings, worker_concurrency=concurrency)
    with stopping.StopSignals() as stop:
        delay = RESTART_BACKOFF[0]
        previous: int | None = None
        while True:
            began = time.monotonic()
            try:
                crash, previous = await _run_once(settings, previous, stop)
            except CONNECTION_ERRORS as exc:
                crash = exc
            except stopping.Stopped:
                return
            if crash is None:
                return
            if time.monotonic() - began > HEALTHY_RUN:
                delay = RESTART_BACKOFF[0]
            log.warning(
                "database unavailable; the worker starts again when it answers",
                error=_describe(crash),
                retry_in=round(delay, 1),
            )
            try:
                await stop.until(asyncio.sleep(delay))
            except stopping.Stopped:
                return
            delay = min(delay * 2, RESTART_BACKOFF[1])


def _warn_if_helo_name_is_not_qualified(settings: Settings) -> None:
    """Say so when remote SMTP servers would be greeted with a name they may refuse (not a FQDN)."""
    name = transports.helo_name(settings)
    loopback = ("localhost", "127.0.0.1", "::1")
    remote = [s for s in settings.mail_transports if s.scheme in ("smtp", "smtps") and s.host not in loopback]
    if "." not in name and remote:
        log.warning("this host has no fully qualified name for the SMTP greeting: set SMTP_HELO_NAME", helo_name=name)


def _describe(exc: BaseException) -> str:
    # Procrastinate's ConnectorException says only "Database error": the cause says which.
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {str(cause).strip()}"[:300]


async def _wait_for_database(url: str) -> None:
    # A quick probe: the pool would retry silently for its whole timeout.
    conn = await psycopg.AsyncConnection.connect(url, connect_timeout=5)
    await conn.close()


async def _run_once(
    settings: Settings, previous: int | None, stop: stopping.StopSignals
) -> tuple[BaseException | None, int | None]:
    """Run one worker; return why it stopped (None: on request) and its registration if left behind.

    Raises ``stopping.Stopped`` when asked to stop before the worker ran.
    """
    concurrency = settings.worker_concurrency
    name = f"{socket.gethostname()}:{os.getpid()}"
    await stop.until(_wait_for_database(settings.database_url))
    pool = db.async_pool(settings.database_url, size=concurrency + EXTRA_CONNECTIONS)
    rt: Runtime | None = None
    try:
        await stop.until(pool.open(wait=True, timeout=30))
        rt = Runtime.create(settings, pool, worker_name=name)
        await stop.until(rt.limiter.prepare(pool))
        async with app.open_async(pool):
            app.perform_import_paths()
            if previous is not None:
                # Our own earlier run, stopped without unregistering (the database was
                # gone): its jobs are over, so let the reconciler recover them now
                # instead of after WORKER_STALLED_AFTER.
                await stop.until(app.job_manager.unregister_worker(previous))
            # One round trip fetches a job for every free slot and claims the due
            # emails among them (tasks/queue/procrastinate_boundary.py).
            fetcher = procrastinate_boundary.BatchingJobManager(
                app.connector,
                pool=pool,
                worker_name=name,
                send_task=jobs.SEND_TASK,
                lead=jobs.LEAD,
                free_slots=lambda: worker.free_slots(),
                on_claimed=rt.claimed.__setitem__,
            )
            with procrastinate_boundary.job_manager(app, fetcher):
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
                    # Ours cover the whole life of the process (tasks/core/stopping.py).
                    install_signal_handlers=False,
                )
                if stop.requested.is_set():
                    raise stopping.Stopped
                log.info(
                    "worker started",
                    worker=name,
                    concurrency=concurrency,
                    transports=[t.name for t in rt.transports],
                )
                _warn_if_helo_name_is_not_qualified(settings)
                try:
                    # From here a request reaches the worker by a loop callback, so after
                    # ``run`` has begun (which clears any earlier stop request).
                    with stop.on_stop(worker.stop):
                        await worker.run()
                    # Jobs fetched for slots the worker never filled (it stopped meanwhile).
                    if released := await fetcher.release_kept():
                        log.info("fetched jobs given back", jobs=released)
                    log.info(
                        "round trips",
                        fetches=fetcher.fetches,
                        jobs_fetched=fetcher.fetched,
                        **{f"{name}_writes": g.stats.round_trips for name, g in rt.groups.items()},
                        **{f"{name}_requests": g.stats.requests for name, g in rt.groups.items()},
                    )
                except CONNECTION_ERRORS as exc:
                    # Asked to stop and the database is gone too: stop, do not start again.
                    return (None, None) if worker.stop_requested else (exc, worker.worker_id)
                if worker.crash is not None and not worker.stop_requested:
                    return worker.crash, worker.worker_id
                return None, None
    finally:
        # The App keeps an external pool after closing, so the next open_async
        # would reuse this closed one: forget it.
        procrastinate_boundary.forget_pool(app, pool)
        if rt is not None:
            await rt.close()
        await pool.close(timeout=5)
        log.info("worker stopped", worker=name)
