"""The periodic task that keeps the charts' rollups current (``tasks.ops.charts``).

Every minute, on one worker at a time (a queueing lock), on the maintenance
queue: count the events since the last run into the per-minute rollups and
sample the queue's depth. A worker that was stopped catches up on its next run.
"""

from __future__ import annotations

from typing import Any

import structlog
from procrastinate import JobContext

from tasks.delivery import runtime
from tasks.ops import charts
from tasks.queue.app import app

log = structlog.get_logger("tasks.queue.charts")


@app.periodic(cron="* * * * *", periodic_id="chart_rollup")
@app.task(name="chart_rollup", queue="maintenance", queueing_lock="chart_rollup", priority=50, pass_context=True)
async def chart_rollup(context: JobContext, timestamp: int) -> dict[str, Any]:
    """Roll the last minute's events up and sample the queue's depth (every minute)."""
    async with runtime.of(context).pool.connection() as conn:
        done = await charts.rollup(conn)
    log.debug("charts rolled up", **done)
    return done
