"""Take emails through the worker's own queries without a worker, to set up states quickly."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.core.db import Conn
from tasks.domain.models import Email


def attempt(
    conn: Conn,
    email: Email,
    status: str,
    transport: str = "primary",
    error: str | None = None,
    provider_message_id: str | None = None,
) -> None:
    """Take the email through one attempt with the worker's own queries (``provider_message_id``:
    the id an HTTP API gave)."""
    assert db.one(conn, "claim_email", email_id=email.id, job_id=email.job_id, worker="test") is not None
    db.one(
        conn,
        "start_data_many",
        ids=[email.id],
        job_ids=[email.job_id],
        transports=[transport],
        refused=[Jsonb({})],
        from_addrs=[email.from_addr],
        reply_tos=[email.reply_to],
    )
    reply = "250 OK" if status == "sent" else None
    db.one(
        conn,
        "finish_emails",
        ids=[email.id],
        job_ids=[email.job_id],
        statuses=[status],
        replies=[reply],
        errors=[error],
        transports=[transport],
        refused=[Jsonb({})],
        provider_ids=[provider_message_id],
        end_job=False,
    )
