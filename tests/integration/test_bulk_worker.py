"""A bulk action run by real worker processes: its changes and its undo's reach the pages live,
and a worker killed in the middle of the job loses nothing. The reconciler fails the job the dead
worker left running, gives the bulk action a new one, and another worker goes on where the first
stopped: what was applied stays applied (not reported as skipped), the rest is applied once."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from tasks.core import db, live
from tasks.core.config import Settings
from tasks.domain import bulk, emails, orgs
from tasks.domain.models import Scope, User
from tests.support import procs
from tests.support.procs import wait_until
from tests.support.web import csrf_token

pytestmark = pytest.mark.slow

WORKER_ENV = {"WORKER_HEARTBEAT": "0.5", "WORKER_STALLED_AFTER": "2"}
#: More than a chunk: the first chunk commits before the job is stopped in the second.
N = bulk.CHUNK + 100


def test_a_worker_killed_during_a_bulk_action_loses_nothing_and_another_finishes_it(
    conn: db.Conn, database_url: str, owner: User, workers: procs.Workers
) -> None:
    scope: Scope = orgs.personal_scope(conn, owner.id)
    conn.execute(
        """INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                               message_id)
           SELECT %(org)s, %(owner)s, 'ada@example.com', ARRAY['reader' || i || '@example.com'], 'Spring sale', 'b',
                  now() + interval '2 hours', now() + interval '2 hours', '<killed-' || i || '@t>'
             FROM generate_series(1, %(n)s) i""",
        {"org": scope.org_id, "owner": owner.id, "n": N},
    )
    ids = [r["id"] for r in conn.execute("SELECT id FROM emails ORDER BY id")]
    # The job reads its chunks in the emails' order: the first of the second chunk is held by
    # this transaction's lock, so the first worker stops there, the first chunk committed.
    bulk_id = bulk.confirm(conn, scope, bulk.Selection(q="sale", view="all"), "cancel", {}, confirm_count=N)
    holder = db.connect(database_url)
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM emails WHERE id = %s FOR UPDATE", (ids[bulk.CHUNK],))

        first = workers(extra_env=WORKER_ENV)
        wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM bulk_action_emails WHERE bulk_id = %s AND outcome = 'applied' LIMIT 1", (bulk_id,)
            ).fetchone(),
            timeout=30,
            what="the first chunk to commit",
        )
        wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ("%bulk_action_emails%",),
            ).fetchone(),
            timeout=30,
            what="the job to wait on the held email",
        )
        first.kill()
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    second = workers(extra_env=WORKER_ENV)
    row = wait_until(
        lambda: (
            (r := db.one(conn, "bulk_get", id=bulk_id, org_id=scope.org_id, any_org=False))
            and r["state"] == "done"
            and r
        ),
        timeout=40,
        what="the bulk action to be done by the second worker",
    )
    assert (row["applied"], row["skipped"]) == (N, 0)
    outcomes = conn.execute(
        "SELECT outcome, count(*) AS n FROM bulk_action_emails WHERE bulk_id = %s GROUP BY 1", (bulk_id,)
    ).fetchall()
    assert outcomes == [{"outcome": "applied", "n": N}]
    statuses = conn.execute("SELECT status, count(*) AS n FROM emails GROUP BY 1").fetchall()
    assert statuses == [{"status": "cancelled", "n": N}]
    # One cancelled event per email: nothing applied twice.
    events = conn.execute("SELECT count(*) AS n FROM email_events WHERE kind = 'cancelled'").fetchone()
    assert events == {"n": N}
    jobs = conn.execute(
        "SELECT status::text, lock FROM procrastinate_jobs WHERE task_name = 'bulk_action' ORDER BY id"
    ).fetchall()
    # The killed worker's job was failed by the reconciler (the new one, succeeded, is deleted as
    # every succeeded job is), and the new one was deferred by the reconciler's look for lost jobs.
    assert jobs == [{"status": "failed", "lock": bulk.job_lock(bulk_id)}]
    assert "bulk action's job lost, deferred again" in second.output()


def _messages(pubsub: Any, n: int, status: str) -> list[dict[str, Any]]:
    """The next ``n`` live changes to ``status`` on the subscribed channel (at most 15 s)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while len(seen) < n and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=1)
        if msg and msg["type"] == "message" and (data := json.loads(msg["data"]))["status"] == status:
            seen.append(data)
    return seen


def test_a_bulk_cancel_and_its_undo_reach_the_pages_live(
    client: FlaskClient,
    sign_in: Callable[..., Any],
    conn: db.Conn,
    settings: Settings,
    make_draft: Callable[..., Any],
    workers: procs.Workers,
) -> None:
    alice = sign_in(client, "alice@example.com", name="Alice")
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    made = [
        emails.schedule(conn, owner=alice, draft=make_draft(subject="Webinar", send_at=at), settings=settings)[0]
        for _ in range(3)
    ]
    pubsub = redis.Redis.from_url(settings.redis_url).pubsub()
    pubsub.subscribe(live.channel(settings.redis_prefix, orgs.personal_org_id(conn, alice.id)))
    pubsub.get_message(timeout=5)  # the subscribe confirmation
    try:
        form = {"csrf_token": csrf_token(client), "action": "cancel", "q": "webinar", "view": "all", "all": "1"}
        response = client.post("/bulk", data=form | {"expected": "3"})
        bulk_id = response.headers["Location"].rsplit("/", 1)[-1]
        workers()

        cancelled = _messages(pubsub, 3, "cancelled")
        assert sorted(m["email_id"] for m in cancelled) == sorted(str(e.id) for e in made)
        wait_until(lambda: client.get(f"/bulk/{bulk_id}.json").get_json()["state"] == "done", timeout=10, what="done")

        assert client.post(f"/bulk/{bulk_id}/undo", data={"csrf_token": csrf_token(client)}).status_code == 302
        restored = _messages(pubsub, 3, "scheduled")
        assert sorted(m["email_id"] for m in restored) == sorted(str(e.id) for e in made)
        assert {m["next_attempt_at"] for m in restored} == {at.isoformat()}
    finally:
        pubsub.close()
