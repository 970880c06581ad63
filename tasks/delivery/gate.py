"""The send task's rate-limit gate: may this attempt go now, and if not, until when does it wait.

The gate only decides (it writes nothing): ``reserve`` after the transport is
chosen, ``confirm`` just before DATA. An email over a limit is not polled and not
failed: the gate answers ``RateLimited`` with its reserved slot, and the send task
(``tasks/delivery/send.py``, ``record``) puts it back to ``scheduled`` with a NEW
job at that slot, in the transaction that records the slot and the reason; that
job then sends in the slot it holds. Redis unavailable: nothing is sent and
nothing fails; ``LimiterDown``, and the email is tried again after a jittered
backoff. Either way the claim's attempt is given back (``attempts`` counts only
attempts that reached the provider).

Before any limit, the email's organization (its state cached per process,
tasks/delivery/orgs.py: no statement per email) may hold it: suspended, it waits
ORG_HOLD_RECHECK and is looked at again, until the organization is resumed;
over its daily quota, it waits for the next UTC day. Either is a ``Held``
outcome, written like every wait by ``send.record``; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import psycopg
import structlog

from tasks.core import db
from tasks.delivery import ratelimit, runtime
from tasks.delivery.outcomes import Held, LimiterDown, RateLimited, Wait
from tasks.domain.models import Email
from tasks.queue import jobs

log = structlog.get_logger("tasks.delivery.gate")

RATE_REASON = "waiting for a rate-limit slot"
UNAVAILABLE_REASON = "rate limiter unavailable"
#: A slot this close is waited for inside the job rather than by a new job.
SLEEP_MAX = 0.25
#: How long a send may wait in place, at the gate for a provider's window to free up (its
#: turn has come) or just before DATA for the limits to allow it; longer waits are new jobs.
CONFIRM_WAIT_MAX = 2.0
#: The longest a suspended organization's email waits before it is looked at again.
HOLD_RECHECK_MAX = 900.0
#: How many of a user's other due emails one full lane queues at their turns at once.
SPREAD_BATCH = 500
#: Emails due within this many seconds count as part of the burst.
SPREAD_AHEAD = 1.0
#: Backoff while Redis is unreachable: from 1 s, doubling, at most 60 s (both
#: capped by RETRY_BACKOFF_BASE / RETRY_BACKOFF_MAX), half of it random.
UNAVAILABLE_BASE, UNAVAILABLE_MAX = 1.0, 60.0
#: Doublings past which every backoff is at its cap anyway.
MAX_DOUBLINGS = 60


def unavailable_backoff(failures: int, base: float, cap: float) -> float:
    """Return the wait after ``failures`` consecutive failures to reach Redis (equal jitter)."""
    base, cap = min(base, UNAVAILABLE_BASE), min(cap, UNAVAILABLE_MAX)
    # The count grows by one per attempt for as long as Redis is away (thousands in a
    # long outage): bound the exponent, or 2 ** n overflows a float and the send crashes.
    delay = min(cap, base * 2.0 ** min(max(failures - 1, 0), MAX_DOUBLINGS))
    return delay / 2 + random.uniform(0, delay / 2)


def member(email: Email) -> str:
    """The name of this attempt in the buckets (``<email id>:<attempt>``)."""
    return f"{email.id}:{email.attempts}"


def next_day(now: dt.datetime) -> dt.datetime:
    """The start of the UTC day after ``now``'s: when a spent daily quota is whole again."""
    return dt.datetime.combine(now.astimezone(dt.UTC).date() + dt.timedelta(days=1), dt.time(), dt.UTC)


def hold_recheck(age: float, base: float) -> float:
    """Seconds until a suspended organization's email is looked at again.

    ORG_HOLD_RECHECK at first; then a tenth of the suspension's age, up to
    HOLD_RECHECK_MAX: a long suspension costs each waiting email a few dozen
    looks a day (each one a line on its timeline), not one a minute, and a
    resumed organization's mail goes within a tenth of how long it waited.
    """
    return max(base, min(age / 10, HOLD_RECHECK_MAX))


def quota_reason(quota: int, until: dt.datetime) -> str:
    return f"daily quota of {quota} emails reached; waits for {until:%Y-%m-%d} 00:00 UTC"


async def hold(rt: runtime.Runtime, conn: db.AsyncConn, email: Email, label: str) -> Wait | None:
    """Whether the email's organization holds it now (suspended, quota spent); None: it may go.

    Counting it against the quota is the last step: an email held for another
    reason has not used its organization's day.
    """
    state = await rt.orgs.get(conn, email.org_id)
    if state is None:
        return None
    now = dt.datetime.now(dt.UTC)
    if state.suspended_reason is not None:
        # Looked at again after a while (with jitter, so a resumed organization's mail does not
        # all come back at once), and sent then if the organization was resumed meanwhile.
        age = (now - state.suspended_at).total_seconds() if state.suspended_at else 0.0
        recheck = hold_recheck(age, rt.settings.org_hold_recheck) * random.uniform(1.0, 1.2)
        at = now + dt.timedelta(seconds=recheck)
        return Held(transport=label, at=at, kind="org_suspended", reason=state.suspended_reason)
    if state.daily_quota is None:
        return None
    try:
        counted = await rt.limiter.count_quota(conn, state.org_id, str(email.id), state.daily_quota, now.date())
    except ratelimit.Unavailable as exc:
        settings = rt.settings
        delay = unavailable_backoff(rt.limiter.failures, settings.retry_backoff_base, settings.retry_backoff_max)
        return LimiterDown(transport=label, at=now + dt.timedelta(seconds=delay), error=exc.args[0])
    if counted:
        return None
    until = next_day(now)
    # Spread over the day's first minute: the limits pace them anyway, this spares the claims.
    at = until + dt.timedelta(seconds=random.uniform(0, 60))
    return Held(transport=label, at=at, kind="over_quota", reason=quota_reason(state.daily_quota, until))


async def reserve(rt: runtime.Runtime, conn: db.AsyncConn, email: Email, label: str) -> Wait | None:
    """The organization's word (``hold``), then this attempt's slot on ``label`` (and the
    owner's); None means send now.

    A slot a moment away is waited for here; a later one is the answer, for the
    email to wait as a new job (nothing is written here).
    """
    held = await hold(rt, conn, email, label)
    if held is not None:
        return held
    return await _slot(rt, conn, email, label)


async def _slot(rt: runtime.Runtime, conn: db.AsyncConn, email: Email, label: str) -> Wait | None:
    """Reserve this attempt's slot on ``label`` (and the owner's); None means send now."""
    limiter = rt.limiter
    if not limiter.enabled(label):
        return None
    waited = 0.0
    while True:
        try:
            decision = await limiter.acquire(conn, label, email.owner_id, member(email))
        except ratelimit.Unavailable as exc:
            settings = rt.settings
            delay = unavailable_backoff(limiter.failures, settings.retry_backoff_base, settings.retry_backoff_max)
            at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
            return LimiterDown(transport=label, at=at, error=exc.args[0])
        if decision.kind == ratelimit.GO:
            return None
        wait = max(decision.wait_seconds, 0)
        if decision.reserved and wait <= SLEEP_MAX:
            # Cheaper than a new job, and the slot is ours.
            await asyncio.sleep(wait)
            return None
        if decision.reserved or waited + wait > CONFIRM_WAIT_MAX:
            break
        # Its turn has come and the provider's window frees up in a moment: wait
        # here and ask again, rather than a new job for so short a wait.
        await asyncio.sleep(wait)
        waited += wait
    return RateLimited(
        transport=label,
        at=decision.slot,
        slot=decision.slot if decision.reserved else None,
        rate_transport=decision.transport,
        limit=decision.limit,
        # The owner's lane is full: the rest of the burst is to be queued at its turns
        # (``spread``), rather than each email claimed only to learn that it must wait.
        lane_full=decision.reserved and decision.transport is None,
    )


async def spread(rt: runtime.Runtime, conn: db.AsyncConn, owner_id: int, label: str, limit: str | None) -> int:
    """Queue up to SPREAD_BATCH of the owner's other due emails at their turns in the owner's lane.

    Each keeps its job, moved to its slot: it is claimed once, when its turn
    comes. Emails the lane has room for, or whose turn lies beyond the
    scheduling horizon, are left as they are. Returns how many were moved;
    any failure moves none (each email then goes through the gate by itself).
    """
    reserved: list[str] = []
    try:
        async with conn.transaction():
            rows = await db.all_async(
                conn, "spread_candidates", owner_id=owner_id, ahead=SPREAD_AHEAD, limit=SPREAD_BATCH
            )
            if not rows:
                return 0
            members = [f"{r['id']}:{r['attempts'] + 1}" for r in rows]
            slots = await rt.limiter.spread(label, owner_id, members)
            reserved = members[: len(slots)]
            keep = [s for s in slots if jobs.within_horizon(s, rt.settings.schedule_horizon)]
            if len(keep) < len(slots):
                await rt.limiter.give_back(owner_id, reserved[len(keep) :])
                reserved = reserved[: len(keep)]
            if not keep:
                return 0
            moved = rows[: len(keep)]
            await db.run_async(
                conn,
                "spread_move",
                ids=[r["id"] for r in moved],
                job_ids=[r["job_id"] for r in moved],
                slots=keep,
                lead=jobs.LEAD,
                transport=label,
                limit=limit,
                reason=RATE_REASON,
            )
    except ratelimit.Unavailable:
        return 0
    except psycopg.Error as exc:
        log.warning("could not queue a burst at its turns; each email will wait by itself", error=str(exc))
        if reserved:
            await rt.limiter.give_back(owner_id, reserved)
        return 0
    log.info("burst queued at its turns in the user's lane", owner_id=owner_id, emails=len(keep), transport=label)
    return len(keep)


async def confirm(rt: runtime.Runtime, conn: db.AsyncConn, email: Email, label: str) -> Wait | None:
    """Just before DATA, check that the limits still allow this send now; None means go.

    A worker may take a while from the gate to DATA (a busy machine, a slow
    provider), and an earlier email may have reached DATA late too: the check
    here is the one the provider's windows see. Over the limit, it waits in
    place (up to CONFIRM_WAIT_MAX in all); longer, it goes back to the gate,
    which gives it its next slot as a new job.
    """
    limiter = rt.limiter
    if not limiter.enabled(label):
        return None
    waited = 0.0
    while (wait := await limiter.confirm(label, email.owner_id, member(email))) > 0:
        if waited + wait > CONFIRM_WAIT_MAX:
            return await _slot(rt, conn, email, label)
        await asyncio.sleep(wait)
        waited += wait
    return None
