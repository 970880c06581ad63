"""Offline mode: the JSONL offline log, and replaying what it holds.

When every real transport's circuit breaker is open and ``MAIL_TRANSPORTS`` ends
in ``jsonl:///path``, the worker appends the whole message there as one JSON line
(fsynced) and the email becomes ``offline``: visible, not ``sent``. The log is a
durable copy outside PostgreSQL; the row stays the truth, so ``replay`` re-sends
from the row (same Message-ID) once the providers are back.

An email goes to the offline log at most once: a replayed email that meets
closed breakers again waits for a transport instead (``tasks.delivery.mailer``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.parser
import email.policy
import json
import os
import uuid
from typing import Any

import psycopg

from tasks.core import db
from tasks.core.config import Settings
from tasks.delivery.transports import Aborted, BeforeData, Delivery, Transient
from tasks.queue import jobs

REPLAY_REASON = "replaying from the offline log"

_headers = email.parser.BytesHeaderParser(policy=email.policy.default)


def _append(path: str, line: bytes) -> None:
    # O_APPEND makes each single write() land whole at the end, even with several
    # worker processes on one host writing the same file. 0600: it holds bodies.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path} ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlTransport:
    """Append each message to a JSON Lines file, fsynced; the email is then "logged offline"."""

    offline = True

    def __init__(self, *, path: str, name: str, label: str):
        self.path = path
        self.name = name
        self.label = label
        self._lock = asyncio.Lock()

    async def send(self, *, sender: str, recipients: list[str], message: bytes, before_data: BeforeData) -> Delivery:
        if not os.access(os.path.dirname(self.path) or ".", os.W_OK):
            # Nothing written and nothing committed: retry later like any transient error.
            raise Transient(f"cannot write the offline log {self.path}: its directory is missing or read-only")
        if not await before_data({}):
            raise Aborted("the email changed before it was logged; nothing was written")
        record: dict[str, Any] = {
            "logged_at": dt.datetime.now(dt.UTC).isoformat(),
            "message_id": _headers.parsebytes(message).get("Message-ID"),
            "sender": sender,
            "recipients": recipients,
        }
        try:
            record["message"] = message.decode("utf-8")
        except UnicodeDecodeError:
            record["message_base64"] = base64.b64encode(message).decode("ascii")
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        async with self._lock:
            try:
                await asyncio.to_thread(_append, self.path, line)
            except OSError as exc:
                # Nobody received anything: a retry can at worst repeat a line of the log.
                raise Transient(f"cannot write the offline log {self.path}: {exc.strerror or exc}") from exc
        return Delivery(reply=f"logged offline to {self.path}", refused={})

    async def close(self) -> None:
        """Nothing to release: each message opens, writes and closes the file."""


def replay(
    conn: psycopg.Connection[dict[str, Any]], settings: Settings, *, limit: int | None = None
) -> list[uuid.UUID]:
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


def progress(conn: psycopg.Connection[dict[str, Any]], ids: list[uuid.UUID]) -> dict[str, int]:
    """Count the given emails by status."""
    return {row["status"]: row["n"] for row in db.all_rows(conn, "status_counts_of", ids=ids)}
