"""The job of a bulk action: apply a confirmed action to its snapshot (tasks/domain/bulk.py).

The domain's statements are synchronous (psycopg's sync connection, as the web's), so the
job runs them in a thread on a connection of its own, opened for the job and closed after:
one connection while a bulk action runs, none otherwise. A job that fails (an error) is
retried, up to ``ATTEMPTS`` in all, and goes on where it stopped: only the emails not done
yet are read; after the last, the bulk action is marked failed. A worker killed during the job leaves
it ``doing``: the reconciler fails it once the worker's heartbeat stops and gives the
bulk action a new job (tasks/queue/reconcile.py), which goes on the same way. Every job
of one bulk action holds the lock ``bulk:<id>``, so two never run at once. Each chunk's
emails are published to the live status once it has committed, as a send's are.
"""

from __future__ import annotations

import asyncio

import structlog
from procrastinate import JobContext, RetryStrategy

from tasks.core import db
from tasks.core.config import Settings
from tasks.delivery import runtime
from tasks.domain import bulk
from tasks.queue.app import app

log = structlog.get_logger("tasks.queue.bulk")
#: Attempts of a bulk action's job, in all.
ATTEMPTS = 3


def _run(bulk_id: str, settings: Settings, last: bool, changed: bulk.Changed) -> None:
    with db.connect(settings.database_url) as conn:
        try:
            row = bulk.run(conn, bulk_id, settings, changed=changed)
        except Exception:
            log.exception("bulk action failed", bulk_action_id=bulk_id, retried=not last)
            if last:
                db.run(conn, "bulk_fail", id=bulk_id)
            raise
    if row is not None:
        log.info("bulk action done", bulk_action_id=bulk_id, applied=row["applied"], skipped=row["skipped"])


@app.task(name=bulk.TASK, queue=bulk.QUEUE, pass_context=True, retry=RetryStrategy(max_attempts=ATTEMPTS - 1, wait=5))
async def bulk_action(context: JobContext, bulk_id: str) -> None:
    """Apply the bulk action ``bulk_id`` (confirmed in the web or the API)."""
    rt = runtime.of(context)
    last = context.job.attempts >= ATTEMPTS - 1
    loop = asyncio.get_running_loop()

    def publish(rows: list[db.Row]) -> None:
        for r in rows:
            rt.live.changed(r["org_id"], r["id"], r["status"], next_attempt_at=r["next_attempt_at"])

    def changed(rows: list[db.Row]) -> None:
        # From the job's thread: the worker's publisher lives on its event loop.
        loop.call_soon_threadsafe(publish, rows)

    await asyncio.to_thread(_run, bulk_id, rt.settings, last, changed)
