"""The send task: one job, one attempt.

claim (guarded UPDATE) -> pick a transport (the chain, its breakers) -> rate-limit
slot -> MAIL, RCPT -> commit data_started_at -> DATA -> sent | failed | uncertain |
offline | back to scheduled with a NEW job (backoff, reserved slot, breaker trial).
Which status may follow which is enforced for every writer, psql included, by
the trigger ``emails_guard_update`` (its latest definition is in sql/migrations/).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import time
from typing import Any, Literal

import psycopg
import structlog
from procrastinate import JobContext
from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.core.config import Settings
from tasks.delivery import gate, mailer, message, runtime, transports
from tasks.domain.models import Email, Status
from tasks.queue import jobs
from tasks.queue.app import app

log = structlog.get_logger("tasks.delivery.send")

RETRY_REASON = "retrying after a temporary error"
NO_TRANSPORT_REASON = "waiting for a mail transport: every circuit breaker is open"
#: Seconds an attempt keeps trying to record its outcome while the database is away
#: (under tasks.queue.worker.CRASH_GRACE, so a worker that lost its database waits for it).
OUTCOME_RETRY = 10.0
#: What putting an email back to wait did: its new status and, if waiting, until when;
#: or "moved" when the email was no longer this job's (nothing was written).
Waited = tuple[Literal[Status.SCHEDULED, Status.FAILED, "moved"], dt.datetime | None]


def backoff(attempts: int, settings: Settings) -> float:
    """Return the wait before the next attempt: exponential, capped, with jitter.

    Half the delay is fixed and half random ("equal jitter"), so retries spread
    out without ever coming back immediately.
    """
    delay = min(settings.retry_backoff_max, settings.retry_backoff_base * 2.0 ** max(attempts - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)


async def requeue(
    conn: db.AsyncConn,
    settings: Settings,
    *,
    email_id: Any,
    job_id: int,
    attempts: int,
    error: str,
    reason: str = RETRY_REASON,
    kind: str = "retry_scheduled",
    delay: float | None = None,
    transport: str | None = None,
    end_job: bool = False,
) -> Waited:
    """Put a ``sending`` email back to wait, with the job of its next attempt; or fail it
    when its attempts are spent. Returns the new status and, if waiting, until when.

    The wait is the backoff for ``attempts`` unless ``delay`` says otherwise.
    ``end_job`` also deletes the running job ``job_id`` in the same statement
    (not when the email had moved: then nothing is written).
    """
    if attempts >= settings.max_attempts:
        done = await finish(
            conn,
            email_id=email_id,
            job_id=job_id,
            status=Status.FAILED,
            error=f"gave up after {attempts} attempts; last error: {error}",
            transport=transport,
            end_job=end_job,
        )
        return (Status.FAILED if done else "moved"), None
    wait = backoff(attempts, settings) if delay is None else delay
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait)
    waiting = await jobs.wait_again_async(
        conn, "requeue_email", email_id=email_id, at=at, horizon=settings.schedule_horizon,
        job_id=job_id, reason=reason, error=error, kind=kind, transport=transport, end_job=end_job,
    )  # fmt: skip
    return (Status.SCHEDULED, at) if waiting else ("moved", None)


async def wait_uncounted(
    conn: db.AsyncConn,
    settings: Settings,
    *,
    email_id: Any,
    job_id: int,
    delay: float,
    reason: str,
    kind: str,
    end_job: bool = False,
) -> Waited:
    """Put a ``sending`` email back to wait without spending an attempt (nothing was tried)."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
    waiting = await jobs.wait_again_async(
        conn, "wait_without_attempt", email_id=email_id, at=at, horizon=settings.schedule_horizon,
        job_id=job_id, slot=None, rate_transport=None, transport=None, kind=kind, reason=reason,
        limit=None, error=None, end_job=end_job,
    )  # fmt: skip
    return (Status.SCHEDULED, at) if waiting else ("moved", None)


async def finish(
    conn: db.AsyncConn,
    *,
    email_id: Any,
    job_id: int,
    status: Status,
    reply: str | None = None,
    error: str | None = None,
    transport: str | None = None,
    refused: dict[str, str] | None = None,
    end_job: bool = False,
) -> bool:
    """End the attempt with a final status; False if the row was no longer ours.

    A result that arrives after the email was moved (its worker was presumed dead)
    is still written to the timeline, so the operator can resolve it.
    ``end_job`` also deletes the running job ``job_id`` in the same statement.
    """
    row = await db.one_async(
        conn,
        "finish_email",
        email_id=email_id,
        job_id=job_id,
        status=status,
        reply=reply,
        error=error,
        transport=transport,
        refused=Jsonb(refused or {}),
        end_job=end_job,
    )
    if row is None:
        await db.run_async(
            conn,
            "insert_event",
            email_id=email_id,
            kind="late_outcome",
            job_id=job_id,
            detail=Jsonb({"outcome": status, "reply": reply, "error": error, "transport": transport}),
        )
        return False
    return True


async def _finish(rt: runtime.Runtime, conn: db.AsyncConn, **outcome: Any) -> bool:
    """``finish``, kept through a database restart: a send that happened must be recorded.

    Should the database stay away longer, the job ends with the email still
    ``sending`` and the reconciler marks it ``uncertain`` (DATA had begun): never a
    silent resend.
    """
    return await db.with_reconnect(rt.pool, conn, lambda c: finish(c, **outcome), within=OUTCOME_RETRY)


@dataclasses.dataclass
class _Attempt:
    outcome: str = "obsolete"
    next_attempt_at: dt.datetime | None = None
    transport: str | None = None
    code: int | None = None
    error: str | None = None
    data_started: bool = False
    #: The outcome's statement also ended this job (see ``Runtime.ended_jobs``).
    ended: bool = False
    waiting_reason: str | None = None


async def _attempt(rt: runtime.Runtime, conn: db.AsyncConn, email: Email, job_id: int) -> _Attempt:
    result = _Attempt(ended=True)
    # --- the transport: first in the chain whose breaker allows it; the offline log last.
    try:
        choice = await rt.mailer.pick(conn, offline_ok=email.offline_at is None)
    except mailer.NoTransport as exc:
        status, result.next_attempt_at = await wait_uncounted(
            conn,
            rt.settings,
            email_id=email.id,
            job_id=job_id,
            delay=exc.retry_in + random.uniform(0, 1),
            reason=NO_TRANSPORT_REASON,
            kind="transport_unavailable",
            end_job=True,
        )
        result.error, result.waiting_reason, result.ended = str(exc), NO_TRANSPORT_REASON, status != "moved"
        result.outcome = "no_transport" if status == Status.SCHEDULED else status
        return result
    transport = choice.transport
    result.transport = transport.label

    # --- the rate limits of the transport actually used (the offline log has none):
    # reserve this attempt's slot, or wait for it as a new job.
    held = None if choice.offline else await gate.gate(rt, conn, email, job_id, transport.label)
    if held is not None:
        await rt.mailer.release(conn, choice)  # hand a breaker trial back unused
        result.outcome, result.next_attempt_at, result.error = held.outcome, held.next_attempt_at, held.error
        result.waiting_reason, result.ended = held.reason, False  # gate.gate records the ended job itself
        return result

    over_limit: list[gate.Held] = []

    async def before_data(refused: dict[str, str]) -> bool:
        if not choice.offline:
            held = await gate.confirm(rt, conn, email, job_id, transport.label)
            if held is not None:
                over_limit.append(held)
                return False
        row = await db.one_async(
            conn, "start_data", email_id=email.id, job_id=job_id, transport=transport.label, refused=Jsonb(refused)
        )
        result.data_started = row is not None
        return result.data_started

    failure: transports.SendError | None = None
    try:
        delivery = await transport.send(
            sender=rt.settings.mail_from_address,
            recipients=email.recipients,
            message=message.build(email),
            before_data=before_data,
        )
    except transports.Transient as exc:
        failure = exc
        result.code, result.error, result.waiting_reason = exc.code, exc.message, RETRY_REASON
        result.outcome, result.next_attempt_at = await requeue(
            conn,
            rt.settings,
            email_id=email.id,
            job_id=job_id,
            attempts=email.attempts,
            error=exc.message,
            transport=transport.label,
            end_job=True,
        )
        # A "moved" from the requeue transaction wrote (and deleted) nothing.
        result.ended = result.outcome != "moved" or email.attempts >= rt.settings.max_attempts
    except transports.Permanent as exc:
        failure = exc
        result.code, result.error, result.outcome = exc.code, exc.message, Status.FAILED
        await _finish(
            rt,
            conn,
            email_id=email.id,
            job_id=job_id,
            status=Status.FAILED,
            error=exc.message,
            transport=transport.label,
            refused=exc.refused,
            end_job=True,
        )
    except transports.Uncertain as exc:
        failure = exc
        result.error, result.outcome = exc.message, Status.UNCERTAIN
        await _finish(
            rt,
            conn,
            email_id=email.id,
            job_id=job_id,
            status=Status.UNCERTAIN,
            error=exc.message,
            transport=transport.label,
            refused=exc.refused,
            end_job=True,
        )
    except transports.Aborted as exc:
        if over_limit:
            # The limits did not allow DATA in time: it waits for its next slot (not an attempt).
            [held] = over_limit
            await rt.mailer.release(conn, choice)
            result.outcome, result.next_attempt_at, result.error = held.outcome, held.next_attempt_at, held.error
            result.waiting_reason, result.ended = held.reason, False
            return result
        failure = exc
        result.error, result.outcome, result.ended = exc.message, "aborted", False
    else:
        # The offline log is an outcome of its own: written down, not sent.
        done = Status.OFFLINE if choice.offline else Status.SENT
        result.outcome = done
        await _finish(
            rt,
            conn,
            email_id=email.id,
            job_id=job_id,
            status=done,
            reply=delivery.reply,
            transport=transport.label,
            refused=delivery.refused,
            end_job=True,
        )
    if result.data_started and not choice.offline and rt.limiter.enabled(transport.label):
        # The provider counted it (or may have) when DATA ended: later checks count from then.
        await rt.limiter.sent(transport.label, email.owner_id, f"{email.id}:{email.attempts}")
    # --- the breaker learns how it went (a provider fault counts; anything else resets).
    try:
        await db.with_reconnect(rt.pool, conn, lambda c: rt.mailer.record(c, choice, failure), within=2.0)
    except psycopg.OperationalError as exc:  # the outcome is written; the breaker can miss one
        log.warning("breaker not updated: the database is away", email_id=str(email.id), error=str(exc))
    return result


@app.task(name=jobs.SEND_TASK, queue=jobs.SEND_QUEUE, pass_context=True)
async def send_email(context: JobContext, email_id: str) -> str:
    """Make one attempt to send the email, if this job is still the one responsible for it."""
    rt = runtime.of(context)
    job_id = context.job.id
    assert job_id is not None
    if context.job.scheduled_at is not None:
        # Jobs come due jobs.LEAD early: wait here for the exact instant.
        early = (context.job.scheduled_at + jobs.LEAD - dt.datetime.now(dt.UTC)).total_seconds()
        if early > 0:
            await asyncio.sleep(early)
    started = time.perf_counter()
    async with rt.pool.connection() as conn:
        row = await db.one_async(conn, "claim_email", email_id=email_id, job_id=job_id, worker=rt.worker_name)
        if row is None:
            # Cancelled, rescheduled or already handled: this job is obsolete.
            log.debug("obsolete job", email_id=email_id, job_id=job_id)
            return "obsolete"
        email = Email.from_row(row)
        rt.live.changed(email.owner_id, email.id, Status.SENDING, attempt=email.attempts)
        result = await _attempt(rt, conn, email, job_id)
    if result.ended:
        rt.ended_jobs.add(job_id)
    final = (Status.SENT, Status.FAILED, Status.UNCERTAIN, Status.OFFLINE)
    if result.outcome in (*final, Status.SCHEDULED, "no_transport", "rate_limited", "limiter_unavailable"):
        waiting = result.outcome not in final
        rt.live.changed(
            email.owner_id,
            email.id,
            Status.SCHEDULED if waiting else result.outcome,
            next_attempt_at=result.next_attempt_at,
            waiting_reason=result.waiting_reason if waiting else None,
        )
    log.info(
        "attempt",
        email_id=email_id,
        job_id=job_id,
        attempt=email.attempts,
        transport=result.transport,
        outcome=result.outcome,
        code=result.code,
        error=result.error,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return result.outcome
