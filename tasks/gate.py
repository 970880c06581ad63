"""The send task's rate-limit gate, between the claim and the transport.

An email over a limit is not polled and not failed: it goes back to
``scheduled`` with a NEW job at its reserved slot, in the same transaction that
records the slot and the reason; that job then sends in the slot it holds.
Redis unavailable: nothing is sent and nothing fails; the email waits with the
reason "rate limiter unavailable" and is tried again after a jittered backoff.
Either way the claim's attempt is given back (``attempts`` counts only
attempts that reached the provider).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
from typing import Any

import psycopg

from tasks import db, jobs, ratelimit, runtime
from tasks.models import Email

RATE_REASON = "waiting for a rate-limit slot"
UNAVAILABLE_REASON = "rate limiter unavailable"
#: A slot this close is waited for inside the job rather than by a new job.
SLEEP_MAX = 0.25
#: Backoff while Redis is unreachable: from 1 s, doubling, at most 60 s (both
#: capped by RETRY_BACKOFF_BASE / RETRY_BACKOFF_MAX), half of it random.
UNAVAILABLE_BASE, UNAVAILABLE_MAX = 1.0, 60.0
#: Doublings past which every backoff is at its cap anyway.
MAX_DOUBLINGS = 60


@dataclasses.dataclass(frozen=True)
class Held:
    """The email was not sent now: it waits again (or is no longer this job's)."""

    outcome: str
    next_attempt_at: dt.datetime | None
    reason: str
    error: str | None = None


def unavailable_backoff(failures: int, base: float, cap: float) -> float:
    """Return the wait after ``failures`` consecutive failures to reach Redis (equal jitter)."""
    base, cap = min(base, UNAVAILABLE_BASE), min(cap, UNAVAILABLE_MAX)
    # The count grows by one per attempt for as long as Redis is away (thousands in a
    # long outage): bound the exponent, or 2 ** n overflows a float and the send crashes.
    delay = min(cap, base * 2 ** min(max(failures - 1, 0), MAX_DOUBLINGS))
    return delay / 2 + random.uniform(0, delay / 2)


async def gate(
    rt: runtime.Runtime, conn: psycopg.AsyncConnection[Any], email: Email, job_id: int, label: str
) -> Held | None:
    """Reserve this attempt's slot on ``label`` (and the owner's); None means send now."""
    limiter = rt.limiter
    if not limiter.enabled(label):
        return None
    try:
        decision = await limiter.acquire(conn, label, email.owner_id, f"{email.id}:{email.attempts}")
    except ratelimit.Unavailable as exc:
        settings = rt.settings
        delay = unavailable_backoff(limiter.failures, settings.retry_backoff_base, settings.retry_backoff_max)
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        return await _wait(
            rt, conn, email, job_id, at=at, slot=None, rate_transport=None, transport=label,
            kind="limiter_unavailable", reason=UNAVAILABLE_REASON, limit=None, error=exc.args[0],
        )  # fmt: skip
    if decision.kind == ratelimit.GO:
        return None
    if decision.wait_seconds <= SLEEP_MAX:
        # Cheaper than a new job, and the slot is ours.
        await asyncio.sleep(max(decision.wait_seconds, 0))
        return None
    return await _wait(
        rt, conn, email, job_id, at=decision.slot, slot=decision.slot, rate_transport=decision.transport,
        transport=label, kind="rate_limited", reason=RATE_REASON, limit=decision.limit, error=None,
    )  # fmt: skip


async def _wait(
    rt: runtime.Runtime,
    conn: psycopg.AsyncConnection[Any],
    email: Email,
    job_id: int,
    *,
    at: dt.datetime,
    slot: dt.datetime | None,
    rate_transport: str | None,
    transport: str,
    kind: str,
    reason: str,
    limit: str | None,
    error: str | None,
) -> Held:
    try:
        async with conn.transaction():
            new_job = None
            if jobs.within_horizon(at, rt.settings.schedule_horizon):
                [new_job] = await jobs.defer_sends_async(conn, [(email.id, at)])
            row = await db.one_async(
                conn,
                "wait_without_attempt",
                email_id=email.id,
                job_id=job_id,
                new_job_id=new_job,
                at=at,
                slot=slot,
                rate_transport=rate_transport,
                transport=transport,
                kind=kind,
                reason=reason,
                limit=limit,
                error=error,
                end_job=True,
            )
            if row is None:
                # Cancelled or recovered meanwhile: undo the new job with the rest.
                raise _Moved
    except _Moved:
        return Held("moved", None, reason, error)
    rt.ended_jobs.add(job_id)
    return Held(kind, at, reason, error)


class _Moved(Exception):
    """The email is no longer this job's."""
