"""The reconciler: the periodic task that keeps "nothing lost" true.

Every few seconds, on one worker at a time (a queueing lock, never a lock):

1. ``sending`` emails whose job is no longer running, or whose worker stopped
   heart-beating, are recovered: back to ``scheduled`` with a new job if DATA had
   not begun, ``uncertain`` if it had (never re-sent silently).
2. Jobs left ``doing`` by dead workers are finished, and dead workers pruned.
3. The occurrences of active recurrences that fall within the horizon become
   emails, with their jobs, in the same transaction; recurrences pause themselves
   after too many permanent failures in a row (tasks/queue/occurrences.py).
4. ``scheduled`` emails due within the horizon that hold no live job get one:
   far-future emails being promoted, and any whose job was lost.
5. Batches none of whose emails waits any more are completed (``batch.completed``),
   and webhook deliveries whose job was lost get a new one (tasks/webhooks/).
6. Bulk actions not finished whose job was lost get a new one, which goes on where
   the lost one stopped (tasks/domain/bulk.py).
"""

from __future__ import annotations

from typing import Any

import structlog
from procrastinate import JobContext, exceptions
from procrastinate import jobs as procrastinate_jobs

from tasks.core import db
from tasks.delivery import runtime, send
from tasks.domain import recurrence_rules
from tasks.domain.models import Status
from tasks.queue import jobs, occurrences
from tasks.queue.app import app
from tasks.webhooks import events as webhook_events

log = structlog.get_logger("tasks.queue.reconcile")

BATCH = 1000
RECOVERED_REASON = "recovered after its worker stopped"


async def recover_sending(rt: runtime.Runtime) -> dict[str, int]:
    """Move emails stuck in ``sending`` on from where their attempt stopped."""
    counts = {"recovered": 0, "uncertain": 0}
    async with rt.pool.connection() as conn:
        rows = await db.all_async(conn, "stalled_sending", stalled_after=rt.settings.worker_stalled_after, limit=BATCH)
        for row in rows:
            if row["data_started_at"] is not None:
                moved = await send.finish(
                    conn,
                    email_id=row["id"],
                    job_id=row["job_id"],
                    status=Status.UNCERTAIN,
                    error="the attempt stopped after DATA began: the provider may or may not have the email",
                )
                counts["uncertain"] += moved
                if moved:
                    rt.live.changed(row["org_id"], row["id"], Status.UNCERTAIN)
            else:
                status, at = await send.requeue(
                    conn,
                    rt.settings,
                    email_id=row["id"],
                    job_id=row["job_id"],
                    attempts=row["attempts"],
                    error="the attempt stopped before DATA: nothing was sent",
                    reason=RECOVERED_REASON,
                    kind="recovered",
                    delay=0.0,
                )
                if status != "moved":
                    counts["recovered"] += status == Status.SCHEDULED
                    rt.live.changed(row["org_id"], row["id"], status, next_attempt_at=at)
    return counts


async def finish_stalled_jobs(rt: runtime.Runtime) -> int:
    """Finish the jobs dead workers left ``doing``; their emails were recovered above."""
    manager = app.job_manager
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=rt.settings.worker_stalled_after))
    for job in stalled:
        try:
            await manager.finish_job(job, status=procrastinate_jobs.Status.FAILED, delete_job=False)
        except exceptions.ConnectorException:
            # Finished meanwhile (the worker was only slow): nothing to do.
            continue
    await manager.prune_stalled_workers(rt.settings.worker_stalled_after)
    return len(stalled)


async def promote(rt: runtime.Runtime) -> int:
    """Give a job to every scheduled email due within the horizon that has no live one."""
    promoted = 0
    async with rt.pool.connection() as conn:
        while True:
            async with conn.transaction():
                locked = await db.all_async(conn, "due_without_job", horizon=rt.settings.schedule_horizon, limit=BATCH)
                # Re-read under the row locks: a job may have started meanwhile.
                rows = await db.all_async(conn, "recheck_due_without_job", ids=[r["id"] for r in locked])
                if rows:
                    job_ids = await jobs.defer_sends_async(conn, [(r["id"], r["next_attempt_at"]) for r in rows])
                    await db.run_async(conn, "attach_jobs", ids=[r["id"] for r in rows], job_ids=job_ids)
                    promoted += len(rows)
            if len(locked) < BATCH:
                return promoted


async def recurrences(rt: runtime.Runtime) -> dict[str, int]:
    """Create the occurrences now within the horizon, then pause the recurrences that keep failing
    (cancelling what they have waiting, just created included)."""
    recurrence_rules.set_time_scale(rt.settings.recurrence_time_scale)
    async with rt.pool.connection() as conn:
        counts = await occurrences.create_due(
            conn,
            rt.settings,
            lambda row: rt.live.changed(
                row["org_id"], row["id"], Status.SCHEDULED, next_attempt_at=row["next_attempt_at"]
            ),
        )
        cancelled = await occurrences.pause_failing(conn, rt.settings)
        for row in cancelled:
            rt.live.changed(row["org_id"], row["id"], Status.CANCELLED)
        return counts


async def webhooks(rt: runtime.Runtime) -> dict[str, int]:
    """Batches that completed (their ``batch.completed`` events), and webhook deliveries whose
    job was lost (a worker killed during the attempt: its job failed above) given a new one."""
    async with rt.pool.connection() as conn:
        async with conn.transaction():
            done = await db.all_async(conn, "batches_completed")
            await webhook_events.emit_async(conn, [webhook_events.batch_completed(r) for r in done])
        lost = await db.all_async(conn, "webhook_lost_jobs", limit=BATCH)
    return {"batches_completed": len(done), "webhooks_requeued": len(lost)}


async def bulk_actions(rt: runtime.Runtime) -> int:
    """Give a new job to every unfinished bulk action whose job was lost (a worker killed during
    it: its job failed above); the new one goes on where the lost one stopped."""
    async with rt.pool.connection() as conn:
        lost = await db.all_async(conn, "bulk_lost_jobs", limit=BATCH)
    for row in lost:
        log.warning("bulk action's job lost, deferred again", bulk_action_id=str(row["id"]), job_id=row["job_id"])
    return len(lost)


async def run(rt: runtime.Runtime) -> dict[str, int]:
    """Run every repair once and return what each did."""
    stats: dict[str, Any] = await recover_sending(rt)
    stats["stalled_jobs"] = await finish_stalled_jobs(rt)
    stats.update(await recurrences(rt))
    stats["promoted"] = await promote(rt)
    stats.update(await webhooks(rt))
    stats["bulk_requeued"] = await bulk_actions(rt)
    if any(stats.values()):
        log.info("reconciled", **stats)
    return stats


@app.periodic(cron="* * * * * */5", periodic_id="reconcile")
@app.task(name="reconcile", queue="maintenance", queueing_lock="reconcile", priority=100, pass_context=True)
async def reconcile(context: JobContext, timestamp: int) -> dict[str, int]:
    """Recover stalled attempts and promote due emails (every 5 seconds)."""
    return await run(runtime.of(context))
