"""Retention: keep ``procrastinate_jobs`` small; keep every email row.

- The worker deletes a job as soon as it succeeds (``delete_jobs="successful"``).
- Every hour, one worker deletes the other finished jobs (failed, cancelled,
  aborted: a cancel or a reschedule leaves one) older than JOB_RETENTION_HOURS,
  with Procrastinate's own ``remove_old_jobs``. Email timelines are kept.
- ``python -m tasks prune --older-than 30d`` does the same for older jobs and, on
  the operator's word, deletes old ``email_events`` of finished emails. What it
  deletes is added to ``email_event_totals`` first, so the counters of
  ``/metrics`` never go down.
"""

from __future__ import annotations

import datetime as dt

import procrastinate
import structlog
from procrastinate import JobContext, builtin_tasks

from tasks.core import db
from tasks.delivery import runtime
from tasks.domain import models
from tasks.ops import metrics
from tasks.queue import procrastinate_boundary
from tasks.queue.app import app

log = structlog.get_logger("tasks.queue.retention")

#: Events deleted per statement, so a large prune never holds long locks.
EVENT_BATCH = 10_000


@app.periodic(cron="17 * * * *", periodic_id="prune_jobs")
@app.task(name="prune_jobs", queue="maintenance", queueing_lock="prune_jobs", priority=50, pass_context=True)
async def prune_jobs(context: JobContext, timestamp: int) -> None:
    """Delete finished jobs older than JOB_RETENTION_HOURS (every hour, on one worker)."""
    hours = runtime.of(context).settings.job_retention_hours
    await builtin_tasks.remove_old_jobs(
        context, max_hours=hours, remove_failed=True, remove_cancelled=True, remove_aborted=True
    )


def count_finished_jobs(conn: db.Conn) -> int:
    """Count the jobs that reached a final state."""
    return procrastinate_boundary.count_finished_jobs(conn)


async def delete_old_jobs(database_url: str, hours: int) -> None:
    """Delete finished jobs (any final state) older than ``hours``, with Procrastinate's own query."""
    pool = db.async_pool(database_url, size=1, name="reachdbox-prune")
    await pool.open(wait=True, timeout=30)
    # A throwaway App: opening the shared one asynchronously would switch this
    # process's synchronous defers (web, CLI) onto the async connector.
    prune_app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    try:
        async with prune_app.open_async(pool):
            await prune_app.job_manager.delete_old_jobs(
                nb_hours=hours, include_failed=True, include_cancelled=True, include_aborted=True
            )
    finally:
        await pool.close()


def prune_events(conn: db.Conn, before: dt.datetime) -> int:
    """Delete the events older than ``before`` of emails that are finished; return how many.

    Each batch adds what it deletes to ``email_event_totals`` in the same
    transaction, so a counter computed from events plus totals never goes down.
    """
    deleted = 0
    while True:
        with conn.transaction():
            row = db.one(
                conn,
                "prune_email_events",
                before=before,
                terminal=sorted(models.TERMINAL),
                bounds=list(metrics.LATENESS_BUCKETS),
                batch=EVENT_BATCH,
            )
        n = row["n"] if row else 0
        deleted += n
        if n < EVENT_BATCH:
            return deleted
