"""Live status: every status change, published to Redis on its organization's channel.

The web app relays the channel of a user's current organization to their browser (Server-Sent Events).
Publishing never holds up or fails a send: the worker queues changes and a
background task pipelines them to Redis in order, gathering what arrives within
``LINGER`` into one round trip; if Redis is down they are dropped (the page falls
back to polling, and PostgreSQL remains the truth).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import redis
import redis.asyncio
import structlog

log = structlog.get_logger("tasks.core.live")

#: Changes kept while Redis is slow; beyond this the oldest are dropped.
QUEUE_LIMIT = 10_000
#: How long the publisher waits after a change for more to send with it. A busy worker
#: makes two changes per email; one round trip each was ~12 % of its CPU (socket writes,
#: bench/ANALYSIS.md). 10 ms is not seen on a page that shows seconds.
LINGER = 0.01
#: Most changes in one round trip.
BATCH = 500


def channel(prefix: str, org_id: int) -> str:
    """Name the pub/sub channel of one organization's emails (every member's pages follow it)."""
    return f"{prefix}live:org:{org_id}"


def message(email_id: Any, status: str, **extra: Any) -> str:
    """Encode one status change as the JSON the browser receives."""
    data = {"email_id": str(email_id), "status": status, "at": dt.datetime.now(dt.UTC).isoformat()}
    data.update({k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in extra.items() if v is not None})
    return json.dumps(data)


def publish(client: redis.Redis, prefix: str, org_id: int, email_id: Any, status: str, **extra: Any) -> bool:
    """Publish one change from a synchronous process (web, CLI); False if Redis is unavailable."""
    try:
        client.publish(channel(prefix, org_id), message(email_id, status, **extra))
    except (redis.RedisError, OSError) as exc:
        log.warning("live status not published", error=str(exc))
        return False
    return True


def publish_many(client: redis.Redis, prefix: str, changes: list[tuple[int, Any, str, dict[str, Any]]]) -> bool:
    """Publish many changes (organization, email, status, extra) from a synchronous process in
    round trips of ``BATCH`` (a bulk action's undo); False if Redis is unavailable."""
    try:
        for start in range(0, len(changes), BATCH):
            with client.pipeline(transaction=False) as pipe:
                for org_id, email_id, status, extra in changes[start : start + BATCH]:
                    pipe.publish(channel(prefix, org_id), message(email_id, status, **extra))
                pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("live status not published", error=str(exc))
        return False
    return True


class Publisher:
    """The worker's publisher: ordered, pipelined, never blocking a send."""

    def __init__(self, url: str, prefix: str):
        self.prefix = prefix
        self._client = redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def changed(self, org_id: int, email_id: Any, status: str, **extra: Any) -> None:
        """Queue a status change for publishing."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="live publisher")
        item = (channel(self.prefix, org_id), message(email_id, status, **extra))
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def _drain(self) -> None:
        failing = False
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < BATCH:
                await asyncio.sleep(LINGER)
            while not self._queue.empty() and len(batch) < BATCH:
                batch.append(self._queue.get_nowait())
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for chan, payload in batch:
                        pipe.publish(chan, payload)
                    await pipe.execute()
                if failing:
                    log.info("live status publishing resumed")
                failing = False
            except (redis.RedisError, OSError) as exc:
                self.dropped += len(batch)
                if not failing:
                    log.warning("live status not published; Redis unavailable", error=str(exc))
                failing = True
            for _ in batch:
                self._queue.task_done()

    async def close(self, timeout: float = 2.0) -> None:
        """Publish what is queued (briefly), then disconnect."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                pass
            self._task.cancel()
        await self._client.aclose()
