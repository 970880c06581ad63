"""The job of a bulk action: apply a confirmed action to its snapshot (tasks/domain/bulk.py).

The domain's statements are synchronous (psycopg's sync connection, as the web's), so the
job runs them in a thread on a connection of its own, opened for the job and closed after:
one connection while a bulk action runs, none otherwise. A job that stops half-way (a
worker killed) is retried and goes on where it stopped: only the emails not done yet are read.
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


def _run(bulk_id: str, settings: Settings) -> None:
    with db.connect(settings.database_url) as conn:
        try:
            row = bulk.run(conn, bulk_id, settings)
        except Exception:
            log.exception("bulk action failed", bulk_action_id=bulk_id)
            db.run(conn, "bulk_fail", id=bulk_id)
            raise
    if row is not None:
        log.info("bulk action done", bulk_action_id=bulk_id, applied=row["applied"], skipped=row["skipped"])


@app.task(name=bulk.TASK, queue=bulk.QUEUE, pass_context=True, retry=RetryStrategy(max_attempts=3, wait=5))
async def bulk_action(context: JobContext, bulk_id: str) -> None:
    """Apply the bulk action ``bulk_id`` (confirmed in the web or the API)."""
    rt = runtime.of(context)
    await asyncio.to_thread(_run, bulk_id, rt.settings)
