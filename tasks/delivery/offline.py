"""Offline mode: replaying what the offline log holds.

When every real transport's circuit breaker is open and ``MAIL_TRANSPORTS`` ends
in ``jsonl:///path``, the worker appends the whole message there as one JSON line
(fsynced, by ``tasks.delivery.transports.JsonlTransport``) and the email becomes
``offline``: visible, not ``sent``. The log is a durable copy outside PostgreSQL;
the row stays the truth, so ``replay`` re-sends from the row (same Message-ID)
once the providers are back.

An email goes to the offline log at most once: a replayed email that meets
closed breakers again waits for a transport instead (``tasks.delivery.mailer``).
"""

from __future__ import annotations

import datetime as dt
import uuid

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain.models import Status
from tasks.queue import jobs

REPLAY_REASON = "replaying from the offline log"


def replay(conn: db.Conn, settings: Settings, *, limit: int | None = None) -> list[uuid.UUID]:
    """Hand offline emails back to the real transports; return the ids handed over.

    Each email moves in its own transaction (row lock, guarded UPDATE, new job), so
    an interrupted replay leaves every email either still ``offline`` or handed
    over exactly once, and running it again carries on with the rest.
    """
    ids = [row["id"] for row in db.all_rows(conn, "offline_emails", limit=limit)]
    replayed: list[uuid.UUID] = []
    for email_id in ids:
        with conn.transaction():
            if db.one(conn, "lock_offline_email", id=email_id) is None:
                continue  # replayed by a concurrent run, or cancelled, meanwhile
            now = dt.datetime.now(dt.UTC)
            [job_id] = jobs.defer_sends(conn, [(email_id, now)])
            row = db.one(conn, "replay_offline_email", id=email_id, job_id=job_id, at=now, reason=REPLAY_REASON)
            assert row is not None  # the row is locked and offline
        replayed.append(email_id)
    return replayed


def progress(conn: db.Conn, ids: list[uuid.UUID]) -> dict[Status, int]:
    """Count the given emails by status."""
    return {Status(row["status"]): row["n"] for row in db.all_rows(conn, "status_counts_of", ids=ids)}
