"""Group commit: the same statement for several concurrent sends, in one round trip.

A worker runs several sends at once, and each reaches the same two writes:
``data_started_at`` just before DATA (durable) and the outcome after it. Sent one
by one, each is a round trip and a statement (parse, plan, commit) of its own;
on this machine the socket writes of those round trips were the largest single
cost of a send (bench/ANALYSIS.md). A ``Group`` sends the first request at once;
requests made while it is in flight wait and leave together in the next round
trip, as one statement over arrays (``unnest``). No request waits for a timer:
when the worker is idle, every write is as immediate as before; when it is
busy, writes share round trips, commits and, for ``data_started_at``, the WAL
flush.

Each request gets its own answer (did this row change?), so the guarded
statements keep their meaning: a row that moved meanwhile is reported as such,
exactly as the one-row statements did. A database restart is ridden out like
the one-row writes were (``db.with_reconnect``), for all requests of the round
trip together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import psycopg

from tasks.core import db

Request = TypeVar("Request")
Answer = TypeVar("Answer")

#: Most requests in one statement.
MAX_BATCH = 200


@dataclasses.dataclass
class Stats:
    """How the round trips went (``python -m bench.profile`` and the tests read them)."""

    round_trips: int = 0
    requests: int = 0


class Group(Generic[Request, Answer]):
    """Run ``write`` for many requests at once; each caller awaits its own answer.

    ``write(conn, requests)`` returns one answer per request, in order; it must be
    safe to repeat (it is, for guarded statements: a repeat finds the rows changed).
    """

    def __init__(
        self,
        pool: db.AsyncPool,
        write: Callable[[db.AsyncConn, Sequence[Request]], Awaitable[Sequence[Answer]]],
        *,
        within: float,
        name: str,
    ) -> None:
        self._pool = pool
        self._write = write
        self._within = within
        self._name = name
        #: Each request, its caller's future, and until when it may still be written (monotonic).
        self._waiting: list[tuple[Request, asyncio.Future[Answer], float]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.stats = Stats()

    async def submit(self, request: Request) -> Answer:
        """Write ``request`` with whatever else is waiting; its answer, or the write's error."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future, time.monotonic() + self._within))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"group commit: {self._name}")
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._send(batch)

    async def _send(self, batch: list[tuple[Request, asyncio.Future[Answer], float]]) -> None:
        requests = [request for request, _, _ in batch]
        # Each request has ``within`` seconds from when it was made, as a write of its own
        # would have had: time spent queued behind a round trip riding out an outage counts.
        within = min(deadline for _, _, deadline in batch) - time.monotonic()
        try:
            if within <= 0:
                raise psycopg.OperationalError(f"the database did not answer within {self._within:g} s")
            answers = await db.write_with_reconnect(self._pool, lambda c: self._write(c, requests), within=within)
        except (TimeoutError, psycopg.Error, OSError) as exc:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException as exc:  # cancelled (the worker stops): the callers must not hang
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise
        self.stats.round_trips += 1
        self.stats.requests += len(batch)
        for (_, future, _), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def close(self) -> None:
        """Stop the background task (requests still waiting get an error)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for _, future, _ in self._waiting:
            if not future.done():
                future.set_exception(RuntimeError("the worker stopped before this write"))
        self._waiting.clear()
