"""Scenario 8: the web process dies between an API request's insert and its commit.

The request runs in a real gunicorn worker against the private PostgreSQL. To
stop it at the chosen instant, the test installs a trigger that waits for an
advisory lock the test holds: on the request's statement (its ``scheduled``
timeline entry: everything is inserted; the one statement is its own
transaction), or as a deferred constraint trigger (COMMIT under way). While it waits,
the test SIGKILLs the gunicorn worker, as a crash would, and the client retries
at once with the same Idempotency-Key. The trigger only pauses the product's
own transaction; what happens next is PostgreSQL's and the product's doing.
A third case makes COMMIT itself fail (a deferred trigger that raises once).
"""

from __future__ import annotations

import concurrent.futures
import pathlib
import time
from typing import Any

import pytest
import requests

from tasks.core import db
from tasks.core.db import Conn
from tasks.domain.models import User
from tests.faults import guarantees
from tests.faults.webapi import Api, kill_workers, running_web, token_for, wait_answering
from tests.support import invariants, procs
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow

LOCK = 8
HOLD = """
CREATE FUNCTION fault_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(8);
  RETURN NULL;
END $$;
"""
TRIGGERS = {
    # The request's last statement before COMMIT: the email, its job and its first event exist.
    "before_commit": "CREATE TRIGGER fault_hold AFTER INSERT ON email_events FOR EACH ROW"
    " WHEN (NEW.kind = 'scheduled') EXECUTE FUNCTION fault_hold()",
    # Inside COMMIT: deferred constraint triggers run when the client has asked to commit.
    "during_commit": "CREATE CONSTRAINT TRIGGER fault_hold AFTER INSERT ON emails"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fault_hold()",
}
FAIL_ONCE = """
CREATE SEQUENCE fault_commits;
CREATE FUNCTION fault_fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('fault_commits') = 1 THEN
    RAISE EXCEPTION 'injected failure at COMMIT';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER fault_fail_commit AFTER INSERT ON emails
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fault_fail_commit();
"""
BODY = {"to": ["bob@example.com"], "subject": "Exactly once", "body_text": "Hi", "send_now": True}


def waiting_backends(conn: Conn) -> list[int]:
    """Backends waiting for any lock (the paused request, then its retry)."""
    rows = conn.execute("SELECT DISTINCT pid FROM pg_locks WHERE NOT granted ORDER BY pid").fetchall()
    return [r["pid"] for r in rows]


def together(conn: Conn) -> dict[str, Any]:
    """Emails, send jobs, and how many of each lack the other."""
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM emails) AS emails,
               (SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'send_email') AS jobs,
               (SELECT count(*) FROM emails e WHERE NOT EXISTS (
                   SELECT 1 FROM procrastinate_jobs j
                    WHERE j.id = e.job_id AND (j.args->>'email_id')::uuid = e.id)) AS emails_without_job
        """
    ).fetchone()
    assert row is not None
    return dict(row) | {"jobs_without_email": len(invariants.jobs_without_email(conn))}


@pytest.mark.parametrize("moment", ["before_commit", "during_commit"])
def test_a_web_process_killed_mid_request_leaves_all_or_nothing_and_the_retry_gets_the_one_email(
    moment: str,
    fault_env: dict[str, str],
    fault_db: str,
    fault_conn: Conn,
    fault_owner: User,
    fault_workers: Any,
    sink: Sink,
    tmp_path: pathlib.Path,
) -> None:
    """Killed while the request's statement runs, or inside COMMIT: either way one email, with its job.

    Scheduling is one statement that is its own transaction (``tasks/domain/emails.py``), so
    "before COMMIT" is while that statement runs: the server finishes it and commits whether or
    not the client is still there. In both cases the email exists, the retry with the same key
    waits for it and answers that email (200), and nothing exists half-way."""
    started = time.time()
    fault_conn.execute(HOLD)
    fault_conn.execute(TRIGGERS[moment])
    key = {"Idempotency-Key": f"order-{moment}"}
    with running_web(fault_env, tmp_path) as server, db.connect(fault_db) as holder:
        api = Api(server, token_for(fault_conn, fault_owner))
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(api.post, "/emails", BODY, headers=key)
            [paused] = procs.wait_until(lambda: waiting_backends(fault_conn), timeout=20, what="the paused request")
            killed = guarantees.inject(fault_conn, lambda: kill_workers(server))
            with pytest.raises(requests.ConnectionError):
                first.result(timeout=20)
            wait_answering(server)
            retry = pool.submit(api.clone().post, "/emails", BODY, headers=key)
            # The retry waits on the first transaction's idempotency key until it ends.
            procs.wait_until(lambda: set(waiting_backends(fault_conn)) - {paused}, timeout=20, what="the retry to wait")
            holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
            answer = retry.result(timeout=30)
        again = api.post("/emails", BODY, headers=key)
        procs.wait_until(
            lambda: not fault_conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (paused,)).fetchone(),
            timeout=20,
            what="the dead request's backend to end",
        )
        state = together(fault_conn)
        keyed = fault_conn.execute("SELECT id FROM emails WHERE idempotency_key = %s", (key["Idempotency-Key"],))
        ids = [str(r["id"]) for r in keyed.fetchall()]

    assert answer.status_code == 200, answer.text
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert ids == [answer.json()["id"]] == [again.json()["id"]]
    assert state == {"emails": 1, "jobs": 1, "emails_without_job": 0, "jobs_without_email": 0}
    fault_workers()  # only now: a sent email's job is deleted at once
    guarantees.check(
        fault_conn,
        sink,
        scenario=f"8. web killed {moment.replace('_', ' ')}",
        promise="an email and its job exist together or not at all; the retry with the same key gets the one email",
        deadline_s=60,
        started_at=started,
        faults=[killed],
        expect=("sent",),
    )


def test_a_failed_commit_stores_nothing_and_the_retry_creates_the_email_once(
    fault_env: dict[str, str],
    fault_conn: Conn,
    fault_owner: User,
    fault_workers: Any,
    sink: Sink,
    tmp_path: pathlib.Path,
) -> None:
    """PostgreSQL refuses the COMMIT: the API says 500, nothing is left; retried, one email and its job."""
    started = time.time()
    fault_conn.execute(FAIL_ONCE)
    key = {"Idempotency-Key": "order-failed-commit"}
    with running_web(fault_env, tmp_path) as server:
        api = Api(server, token_for(fault_conn, fault_owner))
        failure = guarantees.Fault(at=time.time())
        failed = api.post("/emails", BODY, headers=key)
        after_failure = together(fault_conn)
        created = api.post("/emails", BODY, headers=key)
        again = api.post("/emails", BODY, headers=key)
        after_retry = together(fault_conn)

    assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal"
    assert after_failure == {"emails": 0, "jobs": 0, "emails_without_job": 0, "jobs_without_email": 0}
    assert (created.status_code, again.status_code) == (201, 200)
    assert created.json()["id"] == again.json()["id"]
    assert after_retry == {"emails": 1, "jobs": 1, "emails_without_job": 0, "jobs_without_email": 0}
    fault_workers()  # only now: a sent email's job is deleted at once
    guarantees.check(
        fault_conn,
        sink,
        scenario="8. commit fails",
        promise="a failed commit stores neither the email nor its job; the retry creates it once",
        deadline_s=60,
        started_at=started,
        faults=[failure],
        expect=("sent",),
    )
