"""Defer the send job of an email, always on the caller's connection (its transaction).

Only emails due within the scheduling horizon get a job: Procrastinate's fetch
scans every future ``todo`` job, so far-future emails wait in ``emails`` alone
and the reconciler promotes them as they come near.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from procrastinate import jobs as procrastinate_jobs

from tasks.core import db
from tasks.queue.app import app

SEND_TASK = "send_email"
SEND_QUEUE = "emails"
#: A send job is due this long before its email: the worker fetches and starts it
#: a little ahead, and the task waits for the exact instant (tasks/delivery/send.py). The
#: fetch, the wake-up and a busy moment then cost no lateness, up to this lead.
LEAD = dt.timedelta(milliseconds=50)


def within_horizon(at: dt.datetime, horizon: float, now: dt.datetime | None = None) -> bool:
    """Tell whether an attempt due at ``at`` should hold a job now."""
    now = now or dt.datetime.now(dt.UTC)
    return at <= now + dt.timedelta(seconds=horizon)


def _job(email_id: uuid.UUID | str, at: dt.datetime) -> procrastinate_jobs.Job:
    return procrastinate_jobs.Job(
        id=None,
        queue=SEND_QUEUE,
        task_name=SEND_TASK,
        lock=None,
        queueing_lock=None,
        task_kwargs={"email_id": str(email_id)},
        scheduled_at=at - LEAD,
    )


def defer_sends(conn: db.Conn, items: Sequence[tuple[uuid.UUID | str, dt.datetime]]) -> list[int]:
    """Defer one send job per ``(email_id, at)`` in the caller's transaction (due ``LEAD`` early)."""
    if not items:
        return []
    deferred = app.job_manager.batch_defer_jobs(jobs=[_job(e, at) for e, at in items], connection=conn)
    return [job.id for job in deferred if job.id is not None]


def defer_due_sends(
    conn: db.Conn, items: Sequence[tuple[uuid.UUID, dt.datetime]], horizon: float
) -> dict[uuid.UUID, int]:
    """Defer the send jobs of the ``(email_id, at)`` within the horizon, in the caller's transaction, in one
    batch; return each one's job (an email beyond the horizon gets none: the reconciler gives it one)."""
    due = [(e, at) for e, at in items if within_horizon(at, horizon)]
    return dict(zip([e for e, _ in due], defer_sends(conn, due), strict=True))


async def defer_sends_async(conn: db.AsyncConn, items: Sequence[tuple[uuid.UUID | str, dt.datetime]]) -> list[int]:
    """Defer one send job per ``(email_id, at)`` in the caller's transaction (async)."""
    if not items:
        return []
    deferred = await app.job_manager.batch_defer_jobs_async(jobs=[_job(e, at) for e, at in items], connection=conn)
    return [job.id for job in deferred if job.id is not None]


class _Moved(Exception):
    """The guarded statement found the email no longer waiting for this job."""


async def wait_again_async(
    conn: db.AsyncConn, query: str, *, email_id: uuid.UUID | str, at: dt.datetime, horizon: float, **params: Any
) -> bool:
    """In one transaction: the job of the email's next attempt at ``at`` (if within the
    horizon) and ``query``, the guarded statement that records the wait (given
    ``email_id``, ``at`` and ``new_job_id``). False, with nothing written (the new job
    undone with the rest), when the email had moved meanwhile (cancelled, recovered).
    """
    try:
        async with conn.transaction():
            new_job = None
            if within_horizon(at, horizon):
                [new_job] = await defer_sends_async(conn, [(email_id, at)])
            if await db.one_async(conn, query, email_id=email_id, at=at, new_job_id=new_job, **params) is None:
                raise _Moved
    except _Moved:
        return False
    return True


def defer_task(conn: db.Conn, task_name: str, queue: str, *, lock: str | None = None, **kwargs: str) -> int:
    """Defer one job of another task in the caller's transaction (a bulk action's, tasks/queue/bulk.py);
    jobs with the same ``lock`` never run at once."""
    job = procrastinate_jobs.Job(
        id=None, queue=queue, task_name=task_name, lock=lock, queueing_lock=None, task_kwargs=dict(kwargs)
    )
    [deferred] = app.job_manager.batch_defer_jobs(jobs=[job], connection=conn)
    assert deferred.id is not None
    return deferred.id


def cancel_job(conn: db.Conn, job_id: int | None) -> bool:
    """Cancel a job that has not started, in the caller's transaction."""
    if job_id is None:
        return False
    return app.job_manager.cancel_job_by_id(job_id, connection=conn)


def cancel_jobs(conn: db.Conn, job_ids: Sequence[int | None]) -> int:
    """Cancel the jobs that have not started among ``job_ids`` (None: no job), in one round trip; how many."""
    row = db.one(conn, "cancel_jobs", job_ids=[j for j in job_ids if j is not None])
    return int(row["n"]) if row else 0


def wake_held(conn: db.Conn, org_id: int, reason: str, after: float) -> int:
    """Make the mail an organization's suspension held (waiting with ``reason``) due in ``after``
    seconds (workers' cached view of the organization is that old at most); how many."""
    row = db.one(conn, "wake_held", org_id=org_id, reason=reason, lead=LEAD, after=dt.timedelta(seconds=after))
    return int(row["n"]) if row else 0
