"""Recurrences' occurrences, created ahead of time by the reconciler (docs/recurring.md).

Each reconciler tick, in one transaction per chunk of recurrences (locked with SKIP
LOCKED, so two reconcilers never work on the same one): every occurrence of an active
recurrence that falls within ``RECURRENCE_LOOKAHEAD`` (at most the schedule horizon)
becomes an ordinary emails row, with
its send job deferred in the same transaction, as the promotion gives far-future emails
theirs; then the recurrence's cursor (``next_at``) moves past them. A crash anywhere
rolls all of it back, and the unique key on (recurrence, occurrence instant) refuses a
second row for an occurrence whatever happens.

Occurrences whose time has passed (the system was down) are not all sent: only the
latest, if it is less than ``RECURRENCE_CATCH_UP`` old; the others are recorded in
``recurrence_skips`` with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from procrastinate import jobs as procrastinate_jobs
from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import recurrence_rules
from tasks.queue import jobs
from tasks.queue.app import app
from tasks.webhooks import events as webhook_events

BATCH = 500
#: Missed occurrences counted one by one before the rest of an outage is skipped in one jump.
MISSED_COUNTED = 10_000
SUPERSEDED = "missed while the system was down; only the latest missed occurrence is sent"
TOO_OLD = "missed while the system was down, more than RECURRENCE_CATCH_UP ago"


@dataclasses.dataclass
class Plan:
    """What one recurrence does this tick: occurrences to create, runs to skip, its new cursor."""

    create: list[dt.datetime] = dataclasses.field(default_factory=list)
    skips: list[tuple[dt.datetime, dt.datetime, int | None, str]] = dataclasses.field(default_factory=list)
    next_at: dt.datetime | None = None
    #: Why occurrences were missed (the system was down), if any were: the reason for the
    #: ones created before the outage that never went out, too (cancelled_missed).
    missed_reason: str | None = None


def lookahead(settings: Settings) -> float:
    """How far ahead occurrences are created: ``RECURRENCE_LOOKAHEAD``, within the horizon.

    Every email within the horizon holds a queue job, and Procrastinate's fetch walks past
    the future ones; a short lookahead keeps those few, however many recurrences there are.
    """
    return min(settings.recurrence_lookahead, settings.schedule_horizon)


def rule_of(row: dict[str, Any]) -> recurrence_rules.Rule:
    return recurrence_rules.Rule(
        cron=row["cron"],
        preset=row["preset"],
        time_zone=row["time_zone"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        count=row["max_count"],
    )


def _latest_before(cron: str, time_zone: str, now: dt.datetime) -> dt.datetime | None:
    return recurrence_rules.latest_before(cron, time_zone, now)


def plan(row: dict[str, Any], *, now: dt.datetime, until: dt.datetime, catch_up: float) -> Plan:
    """Decide, for a recurrence whose cursor is ``row["next_at"]``, what happens up to ``until``."""
    rule = rule_of(row)
    out = Plan()
    # The count bounds the emails made, not the occurrences passed over: counted here.
    unbounded = dataclasses.replace(rule, count=None)
    left = None if rule.count is None else rule.count - row["made"]
    missed: list[dt.datetime] = []  # the first, the one before the latest, and the latest missed
    n_missed = 0
    start = row["next_at"]
    while True:
        jumped = False
        for at in unbounded.upcoming(start):
            if left is not None and left - len(out.create) <= 0:
                out.next_at = None
                break
            if at > until:
                out.next_at = at
                break
            if at < now:
                n_missed += 1
                missed = [missed[0], missed[2], at] if missed else [at, at, at]
                if n_missed >= MISSED_COUNTED:
                    # A long outage of a frequent rule: jump to the latest missed, uncounted.
                    latest = _latest_before(rule.cron, rule.time_zone, now)
                    if latest is not None and latest > at:
                        missed, n_missed = [missed[0], _previous(rule, missed[0], latest), latest], -1
                        start = latest + dt.timedelta(seconds=1)
                        jumped = True
                        break
                continue
            out.create.append(at)
        else:
            out.next_at = None
        if not jumped:
            break
    if missed:
        first, before_latest, latest = missed
        if catch_up > 0 and (now - latest).total_seconds() < catch_up and (left is None or left > 0):
            if left is not None and len(out.create) >= left:
                out.create.pop()  # the catch-up comes first, and uses the last of the count
            out.create.insert(0, latest)
            if left is not None and len(out.create) >= left:
                out.next_at = None
            if n_missed != 1:
                out.skips.append((first, before_latest, n_missed - 1 if n_missed > 0 else None, SUPERSEDED))
            out.missed_reason = SUPERSEDED
        else:
            out.skips.append((first, latest, n_missed if n_missed > 0 else None, TOO_OLD))
            out.missed_reason = TOO_OLD
    return out


def _previous(rule: recurrence_rules.Rule, first: dt.datetime, latest: dt.datetime) -> dt.datetime:
    """The occurrence just before ``latest`` (at least ``first``)."""
    found = _latest_before(rule.cron, rule.time_zone, latest - dt.timedelta(seconds=1))
    return max(first, found) if found is not None else first


#: The priority of an occurrence's first send job, below one-off mail's (Procrastinate's
#: default, 0): every rule fires at second 0 of a minute, so thousands of occurrences can be
#: due at one instant, and an email someone scheduled for that instant goes first rather than
#: after them. Retries are deferred by the send task as any email's.
OCCURRENCE_PRIORITY = -1


async def _defer_occurrences(conn: db.AsyncConn, rows: list[dict[str, Any]]) -> list[int]:
    """Defer each occurrence's send job as tasks.queue.jobs defers every send (same queue, task,
    arguments and lead), at ``OCCURRENCE_PRIORITY``, in the caller's transaction."""
    deferred = await app.job_manager.batch_defer_jobs_async(
        jobs=[
            procrastinate_jobs.Job(
                id=None,
                queue=jobs.SEND_QUEUE,
                task_name=jobs.SEND_TASK,
                lock=None,
                queueing_lock=None,
                task_kwargs={"email_id": str(r["id"])},
                scheduled_at=r["next_attempt_at"] - jobs.LEAD,
                priority=OCCURRENCE_PRIORITY,
            )
            for r in rows
        ],
        connection=conn,
    )
    return [job.id for job in deferred if job.id is not None]


async def create_due(
    conn: db.AsyncConn, settings: Settings, created: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, int]:
    """Create every occurrence within the horizon, a chunk of recurrences per transaction.

    ``created`` is told of each new email (its id, org_id, owner_id and next_attempt_at) once committed.
    """
    counts = {"occurrences": 0, "skipped_runs": 0}
    ahead = lookahead(settings)
    while True:
        async with conn.transaction():
            rows = await db.all_async(conn, "recurrences_due", horizon=ahead, limit=BATCH)
            if not rows:
                return counts
            now = rows[0]["db_now"]
            until = now + dt.timedelta(seconds=ahead)
            ids, recs, ats, subjects, bodies, htmls = [], [], [], [], [], []
            adv_ids, adv_next, adv_made = [], [], []
            skip_ids, firsts, lasts, ns, reasons = [], [], [], [], []
            missed_ids, missed_befores, missed_reasons = [], [], []
            for row in rows:
                p = plan(row, now=now, until=until, catch_up=settings.recurrence_catch_up)
                missed_ids.append(row["id"])
                missed_befores.append(None if p.missed_reason is None else row["next_at"])
                missed_reasons.append(p.missed_reason or SUPERSEDED)
                for at in p.create:
                    ids.append(uuid.uuid4())
                    recs.append(row["id"])
                    ats.append(at)
                    subjects.append(recurrence_rules.render(row["subject"], at, row["time_zone"]))
                    bodies.append(recurrence_rules.render(row["body_text"], at, row["time_zone"]))
                    html = row["body_html"]
                    htmls.append(None if html is None else recurrence_rules.render(html, at, row["time_zone"]))
                for first, last, n, reason in p.skips:
                    skip_ids.append(row["id"])
                    firsts.append(first)
                    lasts.append(last)
                    ns.append(n)
                    reasons.append(reason)
                adv_ids.append(row["id"])
                adv_next.append(p.next_at)
                adv_made.append(len(p.create))
            inserted = []
            if ids:
                inserted = await db.all_async(
                    conn,
                    "insert_occurrences",
                    ids=ids,
                    recurrence_ids=recs,
                    ats=ats,
                    subjects=subjects,
                    bodies=bodies,
                    htmls=htmls,
                    from_addr=settings.mail_from,
                    mail_domain=settings.mail_domain,
                )
            if inserted:
                # Their jobs, in this transaction: the promotion's own steps.
                job_ids = await _defer_occurrences(conn, inserted)
                await db.run_async(conn, "attach_jobs", ids=[r["id"] for r in inserted], job_ids=job_ids)
            # Made counts what exists now: a row that was there already counted when it was made.
            made_by = {rid: 0 for rid in adv_ids}
            for r in inserted:
                made_by[r["recurrence_id"]] += 1
            if missed_ids:
                for r in await cancel_missed(conn, missed_ids, missed_befores, missed_reasons):
                    made_by[r["recurrence_id"]] -= r["n"]
                    skip_ids.append(r["recurrence_id"])
                    firsts.append(r["first_at"])
                    lasts.append(r["last_at"])
                    ns.append(r["n"])
                    reasons.append(r["reason"])
            await db.run_async(
                conn,
                "advance_recurrences",
                ids=adv_ids,
                next_ats=adv_next,
                made=[made_by[rid] for rid in adv_ids],
            )
            if skip_ids:
                await db.run_async(
                    conn, "insert_recurrence_skips", ids=skip_ids, firsts=firsts, lasts=lasts, ns=ns, reasons=reasons
                )
            counts["occurrences"] += len(inserted)
            counts["skipped_runs"] += len(skip_ids)
        if created is not None:
            for r in inserted:
                created(r)
        if len(rows) < BATCH:
            return counts


async def cancel_missed(
    conn: db.AsyncConn, ids: list[uuid.UUID], befores: list[dt.datetime | None], reasons: list[str]
) -> list[dict[str, Any]]:
    """Cancel the occurrences created ahead of an outage whose instant passed during it, never
    attempted: after downtime a recurrence sends at most one occurrence late. Where the
    recurrence's cursor was passed too (``befores``: that cursor), all of them, its catch-up
    being later; elsewhere (None) all but the latest past one. One a worker is claiming at this
    moment is left to go (it was not missed). Returns, per recurrence, how many were cancelled,
    the first and last instants and why (``reasons``)."""
    cancelled = await db.all_async(conn, "cancel_missed_occurrences", ids=ids, befores=befores, reasons=reasons)
    for c in cancelled:
        if c["job_id"] is not None:
            await app.job_manager.cancel_job_by_id_async(c["job_id"], connection=conn)
    per: dict[uuid.UUID, dict[str, Any]] = {}
    for c in cancelled:
        agg = per.setdefault(
            c["recurrence_id"],
            {"recurrence_id": c["recurrence_id"], "first_at": c["occurrence_at"], "last_at": c["occurrence_at"],
             "n": 0, "reason": c["reason"]},
        )  # fmt: skip
        agg["first_at"] = min(agg["first_at"], c["occurrence_at"])
        agg["last_at"] = max(agg["last_at"], c["occurrence_at"])
        agg["n"] += 1
    return list(per.values())


async def pause_failing(conn: db.AsyncConn, settings: Settings) -> list[dict[str, Any]]:
    """Pause the recurrences that failed too often in a row, cancelling what they have waiting."""
    paused = []
    async with conn.transaction():
        rows = await db.all_async(conn, "pause_failing_recurrences", limit=settings.recurrence_pause_after_failures)
        for row in rows:
            cancelled = await db.all_async(
                conn, "cancel_recurrence_pending", id=row["id"], reason="the recurrence paused itself"
            )
            for c in cancelled:
                if c["job_id"] is not None:
                    await app.job_manager.cancel_job_by_id_async(c["job_id"], connection=conn)
            await webhook_events.emails_changed_async(conn, [c["id"] for c in cancelled])
            await webhook_events.emit_async(
                conn,
                [
                    webhook_events.recurrence_paused(
                        row["org_id"], row["id"], row["owner_id"], row["paused_reason"], len(cancelled)
                    )
                ],
            )
            await db.run_async(conn, "give_back_occurrences", id=row["id"], n=len(cancelled))
            # The organization's audit log: paused by no one (the failures did it).
            await db.run_async(
                conn,
                "audit_insert",
                org_id=row["org_id"],
                actor_id=None,
                action="recurrence.pause",
                target=str(row["id"]),
                detail=Jsonb({"reason": row["paused_reason"], "cancelled": len(cancelled)}),
            )
            paused.extend(cancelled)
    return paused
