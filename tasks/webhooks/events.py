"""The event types, and writing the deliveries of events in the caller's transaction.

The send path's events (``email.sent``, ``failed``, ``uncertain``, ``offline``) are
written by ``finish_emails`` itself; the other writers of a status call these,
in the transaction of their change (a cancel, a batch's completion, a
recurrence's pause). An organization without an endpoint subscribed gets no row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg.types.json import Jsonb

from tasks.core import db

#: The delivery task's name and queue (the outbox's statements name them too).
TASK = "deliver_webhook"
QUEUE = "webhooks"

EMAIL_TYPES = ("email.sent", "email.failed", "email.uncertain", "email.offline", "email.cancelled")
#: What the provider reported after it took the message (tasks/domain/feedback.py).
FEEDBACK_TYPES = ("email.bounced", "email.complained")
#: Every event type an endpoint may subscribe to, in the order they are shown.
TYPES = (*EMAIL_TYPES, *FEEDBACK_TYPES, "batch.completed", "recurrence.paused")
#: An event: its organization, its type and its data.
Event = tuple[int, str, dict[str, Any]]

#: What "send a test event" sends (to the one endpoint, whatever it subscribed to).
TEST = "webhook.test"


def emails_changed(conn: db.Conn, ids: Iterable[uuid.UUID | str]) -> int:
    """Write the deliveries of the emails ``ids`` whose status just changed (``email.<status>``)."""
    ids = list(ids)
    if not ids:
        return 0
    row = db.one(conn, "webhook_email_events", ids=ids)
    return int(row["n"]) if row else 0


async def emails_changed_async(conn: db.AsyncConn, ids: Iterable[uuid.UUID | str]) -> int:
    """``emails_changed`` on an async connection."""
    ids = list(ids)
    if not ids:
        return 0
    row = await db.one_async(conn, "webhook_email_events", ids=ids)
    return int(row["n"]) if row else 0


def _arrays(events: Sequence[Event], endpoint_id: Any = None) -> dict[str, Any]:
    return {
        "org_ids": [org_id for org_id, _, _ in events],
        "endpoint_ids": [endpoint_id for _ in events],
        "types": [kind for _, kind, _ in events],
        "datas": [Jsonb(data) for _, _, data in events],
    }


def emit(conn: db.Conn, events: Sequence[Event]) -> list[db.Row]:
    """Write the deliveries of ``(org_id, type, data)`` events to the endpoints subscribed."""
    if not events:
        return []
    return db.all_rows(conn, "webhook_events", **_arrays(events))


async def emit_async(conn: db.AsyncConn, events: Sequence[Event]) -> list[db.Row]:
    """``emit`` on an async connection."""
    if not events:
        return []
    return await db.all_async(conn, "webhook_events", **_arrays(events))


def emit_to(conn: db.Conn, org_id: int, endpoint_id: Any, kind: str, data: dict[str, Any]) -> list[db.Row]:
    """Write one event's delivery to one endpoint, subscribed or not (a test event)."""
    return db.all_rows(conn, "webhook_events", **_arrays([(org_id, kind, data)], endpoint_id))


def recurrence_paused(org_id: int, recurrence_id: Any, owner_id: int, reason: str | None, cancelled: int) -> Event:
    """A ``recurrence.paused`` event: by a member, or by itself after failures in a row."""
    return (
        org_id,
        "recurrence.paused",
        {"recurrence_id": str(recurrence_id), "owner_id": owner_id, "reason": reason, "cancelled": cancelled},
    )


def batch_completed(row: db.Row) -> Event:
    """A ``batch.completed`` event: none of the batch's emails waits or is being sent any more."""
    counts = {k: int(v) for k, v in (row["counts"] or {}).items()}
    return (
        row["org_id"],
        "batch.completed",
        {
            "batch_id": str(row["id"]),
            "owner_id": row["owner_id"],
            "name": row["name"],
            "total": row["total"],
            "counts": counts,
            "completed_at": row["completed_at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    )
