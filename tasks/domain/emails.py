"""Domain operations on emails, shared by every interface (CLI, web, API).

Each one changes the email row and its Procrastinate job in one transaction on
the caller's connection: ``with conn.transaction()`` makes it a savepoint when
the caller already holds a transaction, so callers can compose them. ``schedule``,
the one called per request at volume, is a single statement instead (atomic on
its own), wrapped in a savepoint only inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.domain import audit, orgs, suppression, validation
from tasks.domain.models import Email, Event, Scope, Status, User
from tasks.queue import jobs
from tasks.webhooks import events as webhook_events


def parse_id(raw: str | uuid.UUID) -> uuid.UUID:
    """Return the email id, or raise ``NotFound`` for anything that is not one."""
    if isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise errors.NotFound(f"no email with id {str(raw)[:64]!r}") from None


def ensure_user(conn: db.Conn, *, email: str, name: str = "") -> User:
    """Create the user with this address, or refresh their name."""
    row = db.one(conn, "upsert_user", email=email, name=name)
    assert row is not None
    return User.from_row(row)


def add_event(conn: db.Conn, email_id: uuid.UUID, kind: str, job_id: int | None = None, **detail: Any) -> None:
    """Append one entry to the email's timeline."""
    db.run(conn, "insert_event", email_id=email_id, kind=kind, job_id=job_id, detail=Jsonb(detail))


def _job_for(conn: db.Conn, email_id: uuid.UUID, at: dt.datetime, settings: Settings) -> int | None:
    if not jobs.within_horizon(at, settings.schedule_horizon):
        return None
    return jobs.defer_sends(conn, [(email_id, at)])[0]


def _existing(conn: db.Conn, org_id: int, owner: User, draft: validation.Draft, request_hash: str) -> Email:
    """The email that first used ``draft``'s idempotency key, if it was for the same request."""
    # Unprepared, so planned with these values: a plan cached while the table was
    # small read every email of the owner (emails_owner_status_idx) instead of
    # the one row emails_idempotency_key holds.
    row = conn.execute(
        db.queries["email_by_idempotency_key"],
        {"org_id": org_id, "owner_id": owner.id, "idempotency_key": draft.idempotency_key},
        prepare=False,
    ).fetchone()
    if row is None:  # (only a key the database refused leads here)
        raise errors.Conflict("this idempotency key is being used by another request", field="idempotency_key")
    if row["request_hash"] != request_hash:
        raise errors.Conflict("this idempotency key was already used for a different email", field="idempotency_key")
    return Email.from_row(row)


def schedule(
    conn: db.Conn, *, owner: User, draft: validation.Draft, settings: Settings, org_id: int | None = None
) -> tuple[Email, bool]:
    """Store the email and defer its job atomically; return it and whether it is new.

    It belongs to ``org_id`` (by default the owner's personal organization: the CLI).

    A repeated idempotency key returns the first email (``False``); the same key
    with different content raises ``Conflict``.

    One statement does it all (``schedule_email``, in tasks/queue/procrastinate_boundary.py): on an
    autocommit connection outside a transaction, the usual case of the API and
    the CLI, it is its own transaction and costs one round trip. Inside the
    caller's transaction it runs in a savepoint, so a repeated key, which the
    database refuses, leaves that transaction usable.
    """
    if org_id is None:
        org_id = orgs.personal_org_id(conn, owner.id)
    email_id = uuid.uuid4()
    request_hash = draft.request_hash()
    at = draft.send_at
    params: dict[str, Any] = {
        "id": email_id,
        "org_id": org_id,
        "owner_id": owner.id,
        "from_addr": settings.mail_from,
        "reply_to": owner.email,
        "to_addrs": list(draft.to),
        "cc_addrs": list(draft.cc),
        "bcc_addrs": list(draft.bcc),
        "subject": draft.subject,
        "body_text": draft.body_text,
        "body_html": draft.body_html,
        "send_at": at,
        "send_tz": draft.send_tz,
        "message_id": f"<{email_id}@{settings.mail_domain}>",
        "idempotency_key": draft.idempotency_key,
        "request_hash": request_hash,
        "list_unsubscribe": draft.list_unsubscribe,
        # A suppressed recipient: nothing is written, and the refusal names it (the same statement).
        "recipients": sorted({a.lower() for a in (*draft.to, *draft.cc, *draft.bcc)}),
        # The send job, as tasks.queue.jobs defers every one: only within the horizon.
        "job_queue": jobs.SEND_QUEUE,
        "job_task": jobs.SEND_TASK,
        "job_at": at - jobs.LEAD if jobs.within_horizon(at, settings.schedule_horizon) else None,
        "detail": Jsonb(
            {
                "send_at": at.isoformat(),
                "time_zone": draft.send_tz,
                "recipients": len(draft.to) + len(draft.cc) + len(draft.bcc),
            }
        ),
    }
    try:
        if conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
            row = db.one(conn, "schedule_email", **params)
        else:
            with conn.transaction():
                row = db.one(conn, "schedule_email", **params)
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name != "emails_idempotency_key":
            raise
        # The key was used first (by an earlier request or a concurrent one): nothing was written.
        return _existing(conn, org_id, owner, draft, request_hash), False
    assert row is not None
    if row["blocked"]:
        raise suppression.refusal((("to", draft.to), ("cc", draft.cc), ("bcc", draft.bcc)), row["blocked"])
    return Email.from_row(row), True


def get(conn: db.Conn, scope: Scope, email_id: str | uuid.UUID) -> Email:
    """Return the email, or raise ``NotFound`` (also for another owner's email)."""
    row = db.one(conn, "get_email", id=parse_id(email_id), **scope.params())
    if row is None:
        raise errors.NotFound(f"no email with id {email_id}")
    return Email.from_row(row)


def timeline(conn: db.Conn, scope: Scope, email_id: str | uuid.UUID) -> list[Event]:
    """Return the email's events, oldest first (scoped like ``get``)."""
    email = get(conn, scope, email_id)
    return [Event.from_row(r) for r in db.all_rows(conn, "email_events", id=email.id, org_id=email.org_id)]


def _lock(conn: db.Conn, scope: Scope, email_id: str | uuid.UUID) -> Email:
    row = db.one(conn, "lock_email", id=parse_id(email_id), **scope.params())
    if row is None:
        raise errors.NotFound(f"no email with id {email_id}")
    return Email.from_row(row)


def _too_late(email: Email, action: str) -> errors.TooLate:
    return errors.TooLate(f"cannot {action}: the email is already {email.status}")


def cancel(conn: db.Conn, scope: Scope, email_id: str | uuid.UUID) -> Email:
    """Cancel a scheduled (or offline-logged) email; cancelling a cancelled one is a no-op.

    Raises ``TooLate`` once a worker has claimed it.
    """
    with conn.transaction():
        email = _lock(conn, scope, email_id)
        if email.status == Status.CANCELLED:
            return email
        if email.status not in (Status.SCHEDULED, Status.OFFLINE):
            raise _too_late(email, "cancel")
        row = db.one(conn, "set_cancelled", id=email.id)
        assert row is not None
        jobs.cancel_job(conn, email.job_id)
        add_event(conn, email.id, "cancelled", email.job_id)
        audit.record(conn, email.org_id, scope.user_id, "email.cancel", str(email.id))
        webhook_events.emails_changed(conn, [email.id])
    return Email.from_row(row)


def _wait_again(
    conn: db.Conn,
    email: Email,
    *,
    at: dt.datetime,
    settings: Settings,
    kind: str,
    send_tz: str | None = None,
    move_send_at: bool = True,
) -> Email:
    job_id = _job_for(conn, email.id, at, settings)
    if email.status == Status.SCHEDULED:
        jobs.cancel_job(conn, email.job_id)
    row = db.one(
        conn,
        "set_next_attempt",
        id=email.id,
        send_at=at if move_send_at else None,
        send_tz=send_tz,
        next_attempt_at=at,
        job_id=job_id,
    )
    assert row is not None
    add_event(conn, email.id, kind, job_id, send_at=at.isoformat(), previous=email.next_attempt_at.isoformat())
    return Email.from_row(row)


def reschedule(
    conn: db.Conn,
    scope: Scope,
    email_id: str | uuid.UUID,
    *,
    send_at: Any,
    settings: Settings,
    send_tz: str | None = None,
) -> Email:
    """Move a scheduled email to a new time (its old job is cancelled)."""
    # The zone first: a form reads its time in that zone, so a bad zone makes a bad time.
    if send_tz is not None and not validation.valid_time_zone(send_tz):
        raise errors.ValidationError("time_zone: must be an IANA time zone such as Europe/Paris", field="time_zone")
    when = validation.parse_send_at(send_at)
    now = dt.datetime.now(dt.UTC)
    if when < now - validation.PAST_TOLERANCE:
        past = validation.in_the_past(when, send_tz or "UTC")
        raise errors.ValidationError(f"send_at: {past}", field="send_at")
    with conn.transaction():
        email = _lock(conn, scope, email_id)
        if email.status != Status.SCHEDULED:
            raise _too_late(email, "reschedule")
        if problem := validation.local_time_problem(when, send_tz or email.send_tz):
            raise errors.ValidationError(f"send_at: {problem}", field="send_at")
        detail = {"from": email.send_at.isoformat(), "to": when.isoformat()}
        audit.record(conn, email.org_id, scope.user_id, "email.reschedule", str(email.id), detail)
        return _wait_again(conn, email, at=when, settings=settings, kind="rescheduled", send_tz=send_tz)


def send_now(conn: db.Conn, scope: Scope, email_id: str | uuid.UUID, *, settings: Settings) -> Email:
    """Send a scheduled email at once instead of at its time."""
    with conn.transaction():
        email = _lock(conn, scope, email_id)
        if email.status != Status.SCHEDULED:
            raise _too_late(email, "send now")
        return _wait_again(conn, email, at=dt.datetime.now(dt.UTC), settings=settings, kind="send_now")


def retry(conn: db.Conn, scope: Scope, email_id: str | uuid.UUID, *, settings: Settings) -> Email:
    """Send a failed or uncertain email again, as a new attempt (the user's explicit choice)."""
    with conn.transaction():
        email = _lock(conn, scope, email_id)
        if email.status not in (Status.FAILED, Status.UNCERTAIN):
            raise errors.Conflict(f"only a failed or uncertain email can be sent again; this one is {email.status}")
        return _wait_again(conn, email, at=dt.datetime.now(dt.UTC), settings=settings, kind="retry", move_send_at=False)


#: What ``edit`` may change while an email is still scheduled.
EDITABLE = frozenset({"to", "cc", "bcc", "subject", "body_text", "body_html", "send_at", "time_zone"})


def edit(
    conn: db.Conn, scope: Scope, email_id: str | uuid.UUID, *, changes: dict[str, Any], settings: Settings
) -> Email:
    """Change a scheduled email's recipients, content or time, validated like a new one.

    A new ``send_at`` moves it (a new job, like ``reschedule``); the rest keeps its job.
    Raises ``TooLate`` once a worker has claimed it.
    """
    for name in changes:
        if name not in EDITABLE:
            raise errors.ValidationError(f"{name}: cannot be changed", field=name)
    with conn.transaction():
        email = _lock(conn, scope, email_id)
        if email.status != Status.SCHEDULED:
            raise _too_late(email, "edit")
        moving = changes.get("send_at") is not None
        draft = validation.validate(
            to=changes.get("to", list(email.to_addrs)),
            cc=changes.get("cc", list(email.cc_addrs)),
            bcc=changes.get("bcc", list(email.bcc_addrs)),
            subject=changes.get("subject", email.subject),
            body_text=changes.get("body_text", email.body_text),
            body_html=changes.get("body_html", email.body_html),
            send_at=changes["send_at"] if moving else None,
            send_now=not moving,
            send_tz=changes.get("time_zone", email.send_tz),
        )
        if not moving and (problem := validation.local_time_problem(email.send_at, draft.send_tz)):
            # The send time stays; it must still be one a date can hold in the new zone.
            raise errors.ValidationError(f"time_zone: the send time {problem}", field="time_zone")
        changed = sorted(
            name
            for name, old, new in (
                ("to", email.to_addrs, list(draft.to)),
                ("cc", email.cc_addrs, list(draft.cc)),
                ("bcc", email.bcc_addrs, list(draft.bcc)),
                ("subject", email.subject, draft.subject),
                ("body_text", email.body_text, draft.body_text),
                ("body_html", email.body_html, draft.body_html),
                ("time_zone", email.send_tz, draft.send_tz),
            )
            if old != new
        )
        if {"to", "cc", "bcc"} & set(changed):
            suppression.refuse_suppressed(conn, email.org_id, (("to", draft.to), ("cc", draft.cc), ("bcc", draft.bcc)))
        if changed:
            row = db.one(
                conn,
                "edit_email",
                id=email.id,
                to_addrs=list(draft.to),
                cc_addrs=list(draft.cc),
                bcc_addrs=list(draft.bcc),
                subject=draft.subject,
                body_text=draft.body_text,
                body_html=draft.body_html,
                send_tz=draft.send_tz,
            )
            assert row is not None
            email = Email.from_row(row)
            add_event(conn, email.id, "edited", email.job_id, fields=changed)
        if moving:
            email = _wait_again(conn, email, at=draft.send_at, settings=settings, kind="rescheduled")
    return email


def status_counts(conn: db.Conn) -> dict[Status, int]:
    """Count every email by status (operators)."""
    return {Status(row["status"]): row["n"] for row in db.all_rows(conn, "status_counts")}


def next_due(conn: db.Conn) -> dt.datetime | None:
    """Return when the next scheduled email is due (operators)."""
    row = db.one(conn, "next_due")
    return row["next_due"] if row else None
