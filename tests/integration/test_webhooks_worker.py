"""Webhooks delivered by real worker processes: a worker killed in the middle of a delivery
loses nothing (another one delivers it, with the same webhook-id), and the secret is in no
worker's log."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import emails, orgs
from tasks.domain.models import User
from tasks.webhooks import endpoints
from tests.support import procs
from tests.support.hooks import Answer, Receiver, verified
from tests.support.procs import wait_until

WORKER_ENV = {
    "WEBHOOK_ALLOW_HTTP": "1",
    "WEBHOOK_ALLOW_PRIVATE": "1",
    "WEBHOOK_RETRY_BASE": "0.05",
    "WORKER_HEARTBEAT": "0.5",
    "WORKER_STALLED_AFTER": "2",
}


def test_a_worker_killed_during_a_delivery_loses_nothing_and_another_delivers_it_with_the_same_id(
    conn: db.Conn, settings: Settings, owner: User, make_draft: Callable[..., Any], workers: procs.Workers
) -> None:
    receiver = Receiver().start()
    try:
        # The first request is held: the worker is killed while it waits for the answer.
        receiver.answers = [Answer(200, b"too late", delay=30)]
        allowed = dataclasses.replace(settings, webhook_allow_http=True, webhook_allow_private=True)
        org_id = orgs.personal_org_id(conn, owner.id)
        made = endpoints.create(conn, allowed, org_id, owner.id, url=receiver.url, event_types=["email.failed"])
        assert made.secret is not None
        email = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)[0]
        # The status change commits, with its delivery, before any worker runs.
        conn.execute("UPDATE emails SET status = 'sending', attempts = 1 WHERE id = %s", (email.id,))
        db.all_rows(
            conn, "finish_emails", end_job=True, ids=[email.id], job_ids=[email.job_id], statuses=["failed"],
            replies=["550 5.1.1 no such user"], errors=["refused"], transports=["primary"], refused=[Jsonb({})],
            provider_ids=[None],
        )  # fmt: skip

        first = workers(extra_env=WORKER_ENV)
        receiver.wait_for(1)
        first.kill()
        second = workers(extra_env=WORKER_ENV)
        receiver.wait_for(2, timeout=30)
        row = wait_until(
            lambda: (
                (r := conn.execute("SELECT * FROM webhook_deliveries").fetchone()) and r["status"] == "delivered" and r
            ),
            timeout=20,
            what="the delivery to be recorded",
        )
    finally:
        receiver.stop()

    held, delivered = receiver.received[:2]
    assert held.headers["webhook-id"] == delivered.headers["webhook-id"] == endpoints.message_id(row["id"])
    payload = verified(delivered, made.secret)
    assert payload["type"] == "email.failed" and payload["data"]["error"] == "refused"
    attempts = conn.execute("SELECT status_code FROM webhook_attempts").fetchall()
    assert attempts == [{"status_code": 200}]  # the killed attempt wrote nothing
    logs = first.output() + second.output()
    assert made.secret not in logs and made.secret.removeprefix("whsec_") not in logs
