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

import dataclasses
import datetime as dt
import uuid

from tasks.core import db
from tasks.core.config import Settings
from tasks.delivery import mailer
from tasks.domain.models import Status
from tasks.queue import jobs

REPLAY_REASON = "replaying from the offline log"


@dataclasses.dataclass(frozen=True)
class Replayed:
    """What one replay did."""

    #: The emails handed back to the real transports, oldest first.
    ids: list[uuid.UUID]
    #: Transports whose open breaker was made due for its trial at once.
    trials: list[str]


def replay(conn: db.Conn, settings: Settings, *, limit: int | None = None) -> Replayed:
    """Hand offline emails back to the real transports.

    Each email moves in its own transaction (row lock, guarded UPDATE, new job), so
    an interrupted replay leaves every email either still ``offline`` or handed
    over exactly once, and running it again carries on with the rest.

    An operator replays once the providers are back: rather than let the emails
    wait out what is left of an open breaker's cool-down, its trial send is made
    due first (before any email is handed over, so none is picked against the old
    cool-down). The trial decides as always: it closes the breaker, or opens it
    for another cool-down.
    """
    ids = [row["id"] for row in db.all_rows(conn, "offline_emails", limit=limit)]
    real = [spec.label for spec in settings.mail_transports if not spec.offline]
    trials = mailer.trial_now(conn, real) if ids else []
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
    return Replayed(ids=replayed, trials=trials)


def progress(conn: db.Conn, ids: list[uuid.UUID]) -> dict[Status, int]:
    """Count the given emails by status."""
    return {Status(row["status"]): row["n"] for row in db.all_rows(conn, "status_counts_of", ids=ids)}
