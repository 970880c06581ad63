"""The send task: one job, one attempt, read top to bottom.

``send_email`` → ``claim`` → ``attempt``: choose a transport (the chain, its
breakers) → rate-limit (``gate.reserve``) → MAIL, RCPT → ``gate.confirm`` and
``mark_data`` (commit data_started_at) → DATA → a typed outcome
(``tasks/delivery/outcomes.py``) → ``record``, the one writer of outcomes:
sent | failed | uncertain | offline, or back to scheduled with a NEW job
(backoff, reserved slot, breaker open). Then the limiter and the breaker learn
how it went, and the live status and the log say it.
Which status may follow which is enforced for every writer, psql included, by
the trigger ``emails_guard_update`` (its latest definition is in sql/migrations/).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, assert_never

import psycopg
import structlog
from procrastinate import JobContext
from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.core.config import Settings
from tasks.delivery import gate, groupcommit, mailer, message, runtime, transports
from tasks.delivery.outcomes import (
    MOVED,
    Aborted,
    BreakersOpen,
    Failed,
    Held,
    LimiterDown,
    Offline,
    Outcome,
    RateLimited,
    Recorded,
    Retry,
    Sent,
    Uncertain,
)
from tasks.domain.models import Email, Status
from tasks.queue import jobs
from tasks.queue.app import app

log = structlog.get_logger("tasks.delivery.send")

RETRY_REASON = "retrying after a temporary error"
SUPPRESSED_REASON = "not sent: on the suppression list: "
NO_TRANSPORT_REASON = "waiting for a mail transport: every circuit breaker is open"
#: Seconds an attempt keeps trying to record its outcome while the database is away
#: (under tasks.queue.worker.CRASH_GRACE, so a worker that lost its database waits for it).
OUTCOME_RETRY = 10.0
#: What putting an email back to wait did: its new status and, if waiting, until when;
#: or "moved" when the email was no longer this job's (nothing was written).
Waited = tuple[Literal[Status.SCHEDULED, Status.FAILED, "moved"], dt.datetime | None]


@app.task(name=jobs.SEND_TASK, queue=jobs.SEND_QUEUE, pass_context=True)
async def send_email(context: JobContext, email_id: str) -> str:
    """Make one attempt to send the email, if this job is still the one responsible for it."""
    rt = runtime.of(context)
    job_id = context.job.id
    assert job_id is not None
    # Claimed with its job when it was fetched due (tasks/queue/procrastinate_boundary.py).
    claimed = rt.claimed.pop(job_id, None)
    if claimed is None and context.job.scheduled_at is not None:
        # Jobs come due jobs.LEAD early: wait here for the exact instant.
        early = (context.job.scheduled_at + jobs.LEAD - dt.datetime.now(dt.UTC)).total_seconds()
        if early > 0:
            await asyncio.sleep(early)
    started = time.perf_counter()
    async with rt.pool.connection() as conn:
        email = _claimed(rt, claimed) if claimed is not None else await claim(rt, conn, email_id, job_id)
        if email is None:
            # Cancelled, rescheduled or already handled: this job is obsolete.
            log.debug("obsolete job", email_id=email_id, job_id=job_id)
            return "obsolete"
        outcome, recorded = await attempt(rt, conn, email, job_id)
    if recorded.ended_job:
        rt.ended_jobs.add(job_id)
    if recorded.status is not None:
        rt.live.changed(
            email.org_id,
            email.id,
            recorded.status,
            next_attempt_at=recorded.next_attempt_at,
            waiting_reason=recorded.waiting_reason,
        )
    log.info(
        "attempt",
        email_id=email_id,
        job_id=job_id,
        attempt=email.attempts,
        transport=outcome.transport,
        outcome=recorded.name,
        code=outcome.code,
        error=outcome.error,
        provider_message_id=outcome.provider_message_id if isinstance(outcome, Sent) else None,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return recorded.name


async def claim(rt: runtime.Runtime, conn: db.AsyncConn, email_id: str, job_id: int) -> Email | None:
    """Step 1: the guarded UPDATE into ``sending`` (one attempt more); None if the email is not this job's.

    Most emails are claimed earlier, in the statement that fetched their job (the
    same UPDATE for several rows); this is for a job fetched before its instant.
    """
    row = await db.one_async(conn, "claim_email", email_id=email_id, job_id=job_id, worker=rt.worker_name)
    return None if row is None else _claimed(rt, row)


def _claimed(rt: runtime.Runtime, row: db.Row) -> Email:
    email = Email.from_row(row)
    rt.live.changed(email.org_id, email.id, Status.SENDING, attempt=email.attempts)
    return email


async def attempt(rt: runtime.Runtime, conn: db.AsyncConn, email: Email, job_id: int) -> tuple[Outcome, Recorded]:
    """Steps 2 to 7 of a claimed email's attempt; its outcome is written once, by ``record``."""
    # 1b. Recipients suppressed since it was scheduled (read by the claim): not sent to them;
    # with none left, not sent at all, and it says why.
    if email.suppressed and not _unsuppressed(email):
        held_back = Failed(error=SUPPRESSED_REASON + ", ".join(email.suppressed), refused=_suppressed_refused(email))
        return held_back, await record(rt, conn, email, job_id, held_back)
    # 2. The transport: first in the chain whose breaker allows it; the offline log last.
    try:
        choice = await rt.mailer.pick(conn, offline_ok=email.offline_at is None, org_id=email.org_id)
    except mailer.NoTransport as exc:
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=exc.retry_in + random.uniform(0, 1))
        closed = BreakersOpen(at=at, error=str(exc))
        return closed, await record(rt, conn, email, job_id, closed)
    label = choice.transport.label

    # 3. The rate limits of the transport actually used (the offline log has none):
    # reserve this attempt's slot, or wait for it as a new job.
    wait = None if choice.offline else await gate.reserve(rt, conn, email, label)

    # 4-6. MAIL, RCPT; the last check and data_started_at; DATA.
    sending = Transmission(outcome=wait) if wait is not None else await transmit(rt, conn, email, job_id, choice)

    # 7. The outcome, written once.
    outcome = sending.outcome
    recorded = await record(rt, conn, email, job_id, outcome)
    if isinstance(outcome, RateLimited | LimiterDown | Held):
        # Not sent, and not an attempt at the provider.
        if isinstance(outcome, RateLimited) and outcome.lane_full and recorded.name == "rate_limited":
            await gate.spread(rt, conn, email.owner_id, label, outcome.limit)
        await rt.mailer.release(conn, choice)  # hand a breaker trial back unused
        return outcome, recorded
    if sending.data_started and not choice.offline and rt.limiter.enabled(label):
        # The provider counted it (or may have) when DATA ended: later checks count from then.
        await rt.limiter.sent(label, email.owner_id, gate.member(email))
    await learn(rt, conn, email, choice, sending.failure)
    return outcome, recorded


@dataclasses.dataclass
class Transmission:
    """How the SMTP transaction (or the local transport's write) went."""

    outcome: Outcome
    #: The transport's error, for its breaker (None: it took the message, or was never asked).
    failure: transports.SendError | None = None
    #: data_started_at was committed: from then on a crash makes the email uncertain.
    data_started: bool = False


async def transmit(
    rt: runtime.Runtime, conn: db.AsyncConn, email: Email, job_id: int, choice: mailer.Choice
) -> Transmission:
    """Steps 4 to 6: MAIL and RCPT, then (``before_data``) the limits' last word and
    data_started_at, then DATA; the transport's answer as an outcome."""
    label = choice.transport.label
    sending = Transmission(outcome=Aborted(transport=label))  # until the transport answers
    # From and Reply-To as the message carries them (the organization's identity, if it has one).
    as_sent = message.with_identity(email, choice.identity)

    async def before_data(refused: dict[str, str]) -> bool:
        # 5. MAIL and RCPT were accepted: may DATA begin?
        if not choice.offline:
            held = await gate.confirm(rt, conn, email, label)
            if held is not None:
                sending.outcome = held  # the limits did not allow DATA in time: it waits for its next slot
                return False
        sending.data_started = await mark_data(rt, as_sent, job_id, label, refused)
        return sending.data_started

    try:
        delivery = await choice.transport.send(
            sender=choice.sender or rt.settings.mail_from_address,
            recipients=_unsuppressed(email),
            message=message.build(as_sent, unsubscribe=rt.unsubscribe),
            before_data=before_data,
        )
    except transports.Transient as exc:
        sending.failure = exc
        sending.outcome = Retry(transport=label, code=exc.code, error=exc.message, retry_after=exc.retry_after)
    except transports.Permanent as exc:
        sending.failure = exc
        sending.outcome = Failed(transport=label, code=exc.code, error=exc.message, refused=exc.refused)
    except transports.Uncertain as exc:
        sending.failure, sending.outcome = exc, Uncertain(transport=label, error=exc.message, refused=exc.refused)
    except transports.Aborted as exc:
        if not isinstance(sending.outcome, RateLimited | LimiterDown):
            # Not held by the limits: the email changed before DATA (cancelled, recovered).
            sending.failure, sending.outcome = exc, Aborted(transport=label, error=exc.message)
    else:
        # The offline log is an outcome of its own: written down, not sent.
        refused = _suppressed_refused(email) | delivery.refused
        if choice.offline:
            sending.outcome = Offline(transport=label, reply=delivery.reply, refused=refused)
        else:
            sending.outcome = Sent(
                transport=label,
                reply=delivery.reply,
                refused=refused,
                provider_message_id=delivery.provider_message_id,
            )
    return sending


def _unsuppressed(email: Email) -> list[str]:
    """The envelope recipients it is sent to: all but those suppressed since it was scheduled."""
    if not email.suppressed:
        return email.recipients
    held_back = email.suppressed_addresses()
    return [r for r in email.recipients if r.lower() not in held_back]


def _suppressed_refused(email: Email) -> dict[str, str]:
    """The recipients it was not sent to for being suppressed, as refused recipients (with why)."""
    held_back = email.suppressed_addresses()
    why = {entry.split(" (", 1)[0]: entry for entry in email.suppressed or ()}
    return {
        r: f"not sent: {why[r.lower()]} is on the suppression list" for r in email.recipients if r.lower() in held_back
    }


async def mark_data(rt: runtime.Runtime, email: Email, job_id: int, label: str, refused: dict[str, str]) -> bool:
    """Commit data_started_at just before DATA (on disk: a crash from here on is ``uncertain``);
    False if the email is no longer this job's. Concurrent sends share the round trip and the flush.
    The row records the From and Reply-To the message carries (``email``'s, as sent)."""
    start = _Start(email.id, job_id, label, refused, email.from_addr, email.reply_to)
    started: bool = await _group(rt, "start_data", _start_data_many).submit(start)
    return started


@dataclasses.dataclass(frozen=True)
class _Start:
    email_id: uuid.UUID
    job_id: int
    transport: str
    refused: dict[str, str]
    from_addr: str
    reply_to: str | None


async def _start_data_many(conn: db.AsyncConn, starts: Sequence[_Start]) -> list[bool]:
    rows = await db.all_async(
        conn,
        "start_data_many",
        ids=[s.email_id for s in starts],
        job_ids=[s.job_id for s in starts],
        transports=[s.transport for s in starts],
        refused=[Jsonb(s.refused) for s in starts],
        from_addrs=[s.from_addr for s in starts],
        reply_tos=[s.reply_to for s in starts],
    )
    started = {row["id"] for row in rows}
    return [s.email_id in started for s in starts]


def _group(
    rt: runtime.Runtime, name: str, write: Callable[[db.AsyncConn, Sequence[Any]], Awaitable[Sequence[Any]]]
) -> groupcommit.Group[Any, Any]:
    """The worker's group commit ``name`` (tasks/delivery/groupcommit.py), made on first use."""
    group = rt.groups.get(name)
    if group is None:
        group = rt.groups[name] = groupcommit.Group(rt.pool, write, within=OUTCOME_RETRY, name=name)
    return group


async def learn(
    rt: runtime.Runtime,
    conn: db.AsyncConn,
    email: Email,
    choice: mailer.Choice,
    failure: transports.SendError | None,
) -> None:
    """The breaker learns how it went (a provider fault counts; anything else resets)."""
    try:
        await db.with_reconnect(rt.pool, conn, lambda c: rt.mailer.record(c, choice, failure), within=2.0)
    except psycopg.OperationalError as exc:  # the outcome is written; the breaker can miss one
        log.warning("breaker not updated: the database is away", email_id=str(email.id), error=str(exc))


async def record(rt: runtime.Runtime, conn: db.AsyncConn, email: Email, job_id: int, outcome: Outcome) -> Recorded:
    """Write an attempt's outcome: the one place that does (status, event, next job).

    Every statement that writes also ends the running job ``job_id``, unless it
    finds the email no longer this job's (cancelled, recovered): a wait then
    writes nothing (``MOVED``); a final outcome still goes on the timeline
    (``finish``), and the job is ended all the same.
    """
    settings = rt.settings
    match outcome:
        case Sent(transport=label, reply=reply, refused=refused, provider_message_id=provider_id):
            await _finish(
                rt, email, job_id, Status.SENT, reply=reply, transport=label, refused=refused, provider_id=provider_id
            )
            return Recorded(name=Status.SENT, status=Status.SENT, ended_job=True)
        case Offline(transport=label, reply=reply, refused=refused):
            await _finish(rt, email, job_id, Status.OFFLINE, reply=reply, transport=label, refused=refused)
            return Recorded(name=Status.OFFLINE, status=Status.OFFLINE, ended_job=True)
        case Failed(transport=label, error=error, refused=refused):
            await _finish(rt, email, job_id, Status.FAILED, error=error, transport=label, refused=refused)
            return Recorded(name=Status.FAILED, status=Status.FAILED, ended_job=True)
        case Uncertain(transport=label, error=error, refused=refused):
            await _finish(rt, email, job_id, Status.UNCERTAIN, error=error, transport=label, refused=refused)
            return Recorded(name=Status.UNCERTAIN, status=Status.UNCERTAIN, ended_job=True)
        case Retry(transport=label, error=error, retry_after=after):
            # The provider's Retry-After, when it gave one, is the least the next attempt waits.
            delay = None if after is None else max(after, backoff(email.attempts, settings))
            status, at = await requeue(
                conn, settings, email_id=email.id, job_id=job_id, attempts=email.attempts,
                error=error or "", transport=label, end_job=True, delay=delay,
            )  # fmt: skip
            # Attempts spent: ``finish`` ended the job even when the email had moved.
            spent = email.attempts >= settings.max_attempts
            if status == "moved":
                return dataclasses.replace(MOVED, ended_job=spent)
            reason = RETRY_REASON if status == Status.SCHEDULED else None
            return Recorded(name=status, status=status, next_attempt_at=at, waiting_reason=reason, ended_job=True)
        case BreakersOpen(at=at, error=error):
            return await _wait(
                conn, settings, email, job_id, name="no_transport", at=at, kind="transport_unavailable",
                reason=NO_TRANSPORT_REASON,
            )  # fmt: skip
        case RateLimited(transport=label, at=at, slot=slot, rate_transport=rate_transport, limit=limit):
            return await _wait(
                conn, settings, email, job_id, name="rate_limited", at=at, kind="rate_limited",
                reason=gate.RATE_REASON, slot=slot, rate_transport=rate_transport, transport=label, limit=limit,
            )  # fmt: skip
        case LimiterDown(transport=label, at=at, error=error):
            return await _wait(
                conn, settings, email, job_id, name="limiter_unavailable", at=at, kind="limiter_unavailable",
                reason=gate.UNAVAILABLE_REASON, transport=label, error=error,
            )  # fmt: skip
        case Held(transport=label, at=at, kind=kind, reason=reason):
            return await _wait(
                conn, settings, email, job_id, name=kind, at=at, kind=kind, reason=reason, transport=label
            )
        case Aborted():
            return Recorded(name="aborted")
        case _:
            assert_never(outcome)


async def _finish(
    rt: runtime.Runtime,
    email: Email,
    job_id: int,
    status: Status,
    **outcome: Any,
) -> bool:
    """``finish``, kept through a database restart: a send that happened must be recorded.

    Concurrent attempts share the statement (``finish_emails``, a group commit).
    Should the database stay away longer, the job ends with the email still
    ``sending`` and the reconciler marks it ``uncertain`` (DATA had begun): never a
    silent resend.
    """
    done: bool = await _group(rt, "finish", _finish_many).submit(_Finish(email.id, job_id, status, **outcome))
    return done


@dataclasses.dataclass(frozen=True)
class _Finish:
    email_id: uuid.UUID
    job_id: int
    status: Status
    reply: str | None = None
    error: str | None = None
    transport: str | None = None
    refused: dict[str, str] | None = None
    provider_id: str | None = None


async def _finish_many(conn: db.AsyncConn, outcomes: Sequence[_Finish], *, end_job: bool = True) -> list[bool]:
    """``finish`` for several attempts in one statement: which were still theirs (the others'
    outcomes go on the timeline as late)."""
    rows = await db.all_async(
        conn,
        "finish_emails",
        end_job=end_job,
        ids=[o.email_id for o in outcomes],
        job_ids=[o.job_id for o in outcomes],
        statuses=[str(o.status) for o in outcomes],
        replies=[o.reply for o in outcomes],
        errors=[o.error for o in outcomes],
        transports=[o.transport for o in outcomes],
        refused=[Jsonb(o.refused or {}) for o in outcomes],
        provider_ids=[o.provider_id for o in outcomes],
    )
    finished = {row["id"] for row in rows}
    for o in outcomes:
        if o.email_id not in finished:
            await _late_outcome(conn, o.email_id, o.job_id, o.status, o.reply, o.error, o.transport)
    return [o.email_id in finished for o in outcomes]


async def _wait(
    conn: db.AsyncConn,
    settings: Settings,
    email: Email,
    job_id: int,
    *,
    name: str,
    at: dt.datetime,
    kind: str,
    reason: str,
    slot: dt.datetime | None = None,
    rate_transport: str | None = None,
    transport: str | None = None,
    limit: str | None = None,
    error: str | None = None,
) -> Recorded:
    """Put a ``sending`` email back to wait until ``at`` without spending an attempt (nothing was
    tried at the provider), with the job of its next attempt; this job ends in the same statement."""
    waiting = await jobs.wait_again_async(
        conn, "wait_without_attempt", email_id=email.id, at=at, horizon=settings.schedule_horizon,
        job_id=job_id, slot=slot, rate_transport=rate_transport, transport=transport, kind=kind,
        reason=reason, limit=limit, error=error, end_job=True,
    )  # fmt: skip
    if not waiting:
        return MOVED
    return Recorded(name=name, status=Status.SCHEDULED, next_attempt_at=at, waiting_reason=reason, ended_job=True)


# --- The statements, shared with the reconciler (tasks/queue/reconcile.py).


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
    [done] = await _finish_many(
        conn,
        [_Finish(email_id, job_id, status, reply=reply, error=error, transport=transport, refused=refused)],
        end_job=end_job,
    )
    return done


async def _late_outcome(
    conn: db.AsyncConn,
    email_id: Any,
    job_id: int,
    status: Status,
    reply: str | None,
    error: str | None,
    transport: str | None,
) -> None:
    """An outcome for an email that had moved: on its timeline all the same, for the operator."""
    await db.run_async(
        conn,
        "insert_event",
        email_id=email_id,
        kind="late_outcome",
        job_id=job_id,
        detail=Jsonb({"outcome": status, "reply": reply, "error": error, "transport": transport}),
    )
