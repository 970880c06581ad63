"""Send to a list: store a plan's emails in one transaction, follow and cancel the batch.

``create`` stores the batch, every planned email, their events and the jobs of
those due within the horizon, all or nothing (``tasks.domain.batch_plan`` makes the plan).
The emails are rendered and inserted a chunk at a time, in the one transaction, so the
web worker holds a few MB of them however large the batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.domain import orgs
from tasks.domain.batch_plan import Plan
from tasks.domain.models import Scope, User, in_org
from tasks.queue import jobs
from tasks.webhooks import events as webhook_events

#: Emails rendered and sent to the database per statement: by size (the web worker's memory)
#: and by count (each statement's arrays).
INSERT_CHUNK_BYTES = 4 * 1024 * 1024
INSERT_CHUNK_EMAILS = 1000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Batch:
    id: uuid.UUID
    org_id: int
    owner_id: int
    name: str
    subject_template: str
    total: int
    start_at: dt.datetime
    send_tz: str
    min_delay_seconds: float
    hourly_cap: int | None
    created_at: dt.datetime
    #: Progress, from the batch's emails.
    sent: int = 0
    pending: int = 0
    failed: int = 0
    uncertain: int = 0
    cancelled: int = 0
    next_at: dt.datetime | None = None
    last_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], progress: dict[str, Any] | None = None) -> Batch:
        data = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}
        for name in ("sent", "pending", "failed", "uncertain", "cancelled", "next_at", "last_at"):
            if progress and progress.get(name) is not None:
                data[name] = progress[name]
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, dt.datetime) else value
        out["id"] = str(self.id)
        return out


def _existing(conn: db.Conn, org_id: int, owner: User, plan: Plan) -> Batch:
    row = db.one(
        conn, "batch_by_idempotency_key", org_id=org_id, owner_id=owner.id, idempotency_key=plan.idempotency_key
    )
    assert row is not None
    if row["request_hash"] != plan.request_hash:
        raise errors.Conflict("this idempotency key was already used for a different batch", field="idempotency_key")
    return get(conn, in_org(org_id, owner.id), row["id"])


def create(
    conn: db.Conn, *, owner: User, plan: Plan, settings: Settings, org_id: int | None = None
) -> tuple[Batch, bool]:
    """Store every planned email and the jobs of those due soon, in one transaction.

    The batch belongs to ``org_id`` (by default the owner's personal organization: the CLI).

    Returns the batch and whether it is new (a repeated idempotency key returns the first).
    """
    if not plan.recipients:
        raise errors.ValidationError(
            "recipients: no line of the list is a valid recipient",
            field="recipients",
            details=[{"field": f"line {r.line}", "message": r.reason} for r in plan.rejected[:50]],
        )
    if org_id is None:
        org_id = orgs.personal_org_id(conn, owner.id)
    batch_id = uuid.uuid4()
    with conn.transaction():
        if plan.idempotency_key and db.one(
            conn, "batch_by_idempotency_key", org_id=org_id, owner_id=owner.id, idempotency_key=plan.idempotency_key
        ):
            return _existing(conn, org_id, owner, plan), False
        row = db.one(
            conn,
            "insert_batch",
            id=batch_id,
            org_id=org_id,
            owner_id=owner.id,
            name=plan.name,
            subject_template=plan.subject_template,
            total=len(plan.recipients),
            start_at=plan.start_at,
            send_tz=plan.send_tz,
            min_delay_seconds=plan.min_delay_seconds,
            hourly_cap=plan.hourly_cap,
            idempotency_key=plan.idempotency_key,
            request_hash=plan.request_hash,
        )
        if row is None:  # a concurrent request with the same key won
            return _existing(conn, org_id, owner, plan), False
        ids = [uuid.uuid4() for _ in plan.recipients]
        horizon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.schedule_horizon)
        due = [(email_id, r.send_at) for email_id, r in zip(ids, plan.recipients, strict=True) if r.send_at <= horizon]
        job_of = dict(zip((e for e, _ in due), jobs.defer_sends(conn, due), strict=True))
        done = 0
        for chunk in plan.chunks(INSERT_CHUNK_BYTES, INSERT_CHUNK_EMAILS):
            chunk_ids = ids[done : done + len(chunk)]
            done += len(chunk)
            db.run(
                conn,
                "insert_batch_emails",
                org_id=org_id,
                owner_id=owner.id,
                batch_id=batch_id,
                from_addr=settings.mail_from,
                reply_to=owner.email,
                send_tz=plan.send_tz,
                mail_domain=settings.mail_domain,
                ids=chunk_ids,
                to_addrs=[p.to for p in chunk],
                subjects=[p.subject for p in chunk],
                bodies=[p.body_text for p in chunk],
                send_ats=[p.send_at for p in chunk],
                job_ids=[job_of.get(e) for e in chunk_ids],
            )
            del chunk  # before the next is rendered (the loop would hold this one until then)
        db.run(conn, "insert_batch_events", org_id=org_id, batch_id=batch_id)
    return get(conn, in_org(org_id, owner.id), batch_id), True


def get_many(conn: db.Conn, scope: Scope, ids: list[uuid.UUID]) -> list[Batch]:
    """Return these batches with their progress (the caller's only)."""
    if not ids:
        return []
    progress = {r["batch_id"]: r for r in db.all_rows(conn, "batch_progress", ids=ids, **scope.params())}
    out = []
    for batch_id in ids:
        row = db.one(conn, "get_batch", id=batch_id, **scope.params())
        if row is not None:
            out.append(Batch.from_row(row, progress.get(batch_id)))
    return out


def get(conn: db.Conn, scope: Scope, batch_id: Any) -> Batch:
    """Return the batch with its progress, or raise ``NotFound`` (also for another owner's)."""
    try:
        parsed = batch_id if isinstance(batch_id, uuid.UUID) else uuid.UUID(str(batch_id))
    except ValueError:
        raise errors.NotFound(f"no batch with id {str(batch_id)[:64]!r}") from None
    found = get_many(conn, scope, [parsed])
    if not found:
        raise errors.NotFound(f"no batch with id {parsed}")
    return found[0]


def cancel_rest(conn: db.Conn, scope: Scope, batch_id: Any) -> tuple[Batch, list[uuid.UUID]]:
    """Cancel every email of the batch not yet claimed by a worker; return the batch and their ids."""
    batch = get(conn, scope, batch_id)
    with conn.transaction():
        rows = db.all_rows(conn, "cancel_batch_rest", batch_id=batch.id, **scope.params())
        for row in rows:
            jobs.cancel_job(conn, row["job_id"])
        webhook_events.emails_changed(conn, [r["id"] for r in rows])
    return get(conn, scope, batch.id), [r["id"] for r in rows]
