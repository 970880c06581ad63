"""Domain operations: the email row and its job change together, or not at all."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models, orgs
from tasks.domain.models import User
from tasks.queue import jobs
from tests.support import invariants


def job_of(conn: Conn, job_id: int | None) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM procrastinate_jobs WHERE id = %s", (job_id,)).fetchone()


def counts(url: str) -> tuple[int, int]:
    """(emails, jobs) as another connection sees them."""
    with db.connect(url) as other:
        row = other.execute(
            "SELECT (SELECT count(*) FROM emails) AS e, (SELECT count(*) FROM procrastinate_jobs) AS j"
        ).fetchone()
    assert row is not None
    return row["e"], row["j"]


def test_a_scheduled_email_and_its_job_commit_together(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    email, created = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)

    job = job_of(conn, email.job_id)
    assert created and email.status == "scheduled"
    assert job is not None and job["status"] == "todo"
    assert job["args"] == {"email_id": str(email.id)} and job["scheduled_at"] == email.send_at - jobs.LEAD
    assert email.message_id == f"<{email.id}@{settings.mail_domain}>"
    assert invariants.jobs_without_email(conn) == []


def test_an_error_before_commit_leaves_neither_row_nor_job(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings, database_url: str
) -> None:
    """The caller's transaction fails after the insert: both vanish."""

    class Boom(Exception):
        pass

    with pytest.raises(Boom), conn.transaction():
        email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)
        assert job_of(conn, email.job_id) is not None  # both exist inside the transaction...
        assert counts(database_url) == (0, 0)  # ...and nobody else sees either
        raise Boom

    assert counts(database_url) == (0, 0)


@pytest.mark.parametrize("table", ["procrastinate_jobs", "emails", "email_events"])
def test_a_failing_insert_leaves_neither_row_nor_job(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings, database_url: str, table: str
) -> None:
    """Whichever insert the database refuses (here by a trigger), nothing is stored."""
    conn.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'disk on fire'; END $$;"
        f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()"
    )

    with pytest.raises(Exception) as info:
        emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)

    assert "disk on fire" in str(info.value) + str(info.value.__cause__)
    assert counts(database_url) == (0, 0)


def test_a_far_future_email_waits_without_a_job(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    """Only emails within SCHEDULE_HORIZON hold a job: the fetch query never scans the rest."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)

    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(send_at=later), settings=settings)

    assert email.job_id is None
    assert conn.execute("SELECT count(*) AS n FROM procrastinate_jobs").fetchone() == {"n": 0}


def test_the_same_idempotency_key_returns_the_first_email(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    draft = make_draft(idempotency_key="req-1")

    first, created_first = emails.schedule(conn, owner=owner, draft=draft, settings=settings)
    second, created_second = emails.schedule(conn, owner=owner, draft=draft, settings=settings)

    assert (created_first, created_second) == (True, False)
    assert second.id == first.id
    assert invariants.counts(conn) == {"scheduled": 1}


def test_the_same_key_with_other_content_is_a_conflict(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    emails.schedule(conn, owner=owner, draft=make_draft(idempotency_key="req-1"), settings=settings)

    with pytest.raises(errors.Conflict) as info:
        emails.schedule(
            conn, owner=owner, draft=make_draft(idempotency_key="req-1", subject="Other"), settings=settings
        )

    assert info.value.field == "idempotency_key"
    assert invariants.counts(conn) == {"scheduled": 1}


def test_concurrent_requests_with_one_key_make_one_email(
    database_url: str, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    draft = make_draft(idempotency_key="double-click")

    def submit(_: int) -> str:
        with db.connect(database_url) as c:
            return str(emails.schedule(c, owner=owner, draft=draft, settings=settings)[0].id)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(submit, range(16)))

    assert len(ids) == 1
    assert counts(database_url) == (1, 1)


def test_scheduling_is_one_round_trip(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an autocommit connection (the API's, the CLI's) the row, its event and its job are one statement."""
    trips = 0
    wait = psycopg.Connection.wait

    def counted(self: Conn, *args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return wait(self, *args, **kwargs)

    org_id = orgs.personal_org_id(conn, owner.id)  # the API knows it already (the request's organization)
    monkeypatch.setattr(psycopg.Connection, "wait", counted)
    email, created = emails.schedule(
        conn, owner=owner, draft=make_draft(idempotency_key="once"), settings=settings, org_id=org_id
    )
    monkeypatch.undo()

    assert trips == 1
    assert created and job_of(conn, email.job_id) is not None
    assert [e.kind for e in emails.timeline(conn, orgs.personal_scope(conn, owner.id), email.id)] == ["scheduled"]


def test_a_key_taken_meanwhile_leaves_the_callers_transaction_usable(
    database_url: str, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    """The database refuses the second use of a key; inside a transaction that costs only a savepoint."""
    draft = make_draft(idempotency_key="taken-meanwhile")
    with db.connect(database_url) as first, db.connect(database_url) as second:
        waiter = second.info.backend_pid

        def schedule_in_a_transaction() -> tuple[str, bool, int]:
            with second.transaction():
                email, created = emails.schedule(second, owner=owner, draft=draft, settings=settings)
                still = second.execute("SELECT 1 AS one").fetchone()  # the transaction goes on
            assert still is not None
            return str(email.id), created, still["one"]

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            with first.transaction():
                winner, _ = emails.schedule(first, owner=owner, draft=draft, settings=settings)
                later = pool.submit(schedule_in_a_transaction)
                # The second request waits on the key until the first commits.
                for _ in range(500):
                    row = first.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (waiter,)
                    ).fetchone()
                    if row and row["wait_event_type"] == "Lock":
                        break
                    time.sleep(0.01)
                else:
                    pytest.fail("the second request never waited for the first")
            email_id, created, one = later.result(timeout=30)

    assert (email_id, created, one) == (str(winner.id), False, 1)
    assert counts(database_url) == (1, 1)


def test_a_replay_does_not_prepare_the_lookup_by_key(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    """Prepared, the lookup kept a plan made on a small table, which read every email of the owner."""
    drafts = [make_draft(idempotency_key=f"replayed-{i}") for i in range(8)]
    for draft in drafts + drafts:
        emails.schedule(conn, owner=owner, draft=draft, settings=settings)

    prepared = conn.execute(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE %s", ("%idempotency_key = $%",)
    ).fetchone()
    assert prepared == {"n": 0}
    assert invariants.counts(conn) == {"scheduled": 8}


def test_cancel_cancels_the_job_too_and_is_idempotent(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)

    cancelled = emails.cancel(conn, orgs.personal_scope(conn, owner.id), email.id)
    again = emails.cancel(conn, orgs.personal_scope(conn, owner.id), email.id)

    assert cancelled.status == again.status == "cancelled"
    assert job_of(conn, email.job_id)["status"] == "cancelled"
    kinds = [e.kind for e in emails.timeline(conn, models.OPERATOR, email.id)]
    assert kinds == ["scheduled", "cancelled"]


def test_cancel_after_sending_began_is_too_late(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", (email.id,))

    with pytest.raises(errors.TooLate, match="already sending"):
        emails.cancel(conn, models.OPERATOR, email.id)

    assert emails.get(conn, models.OPERATOR, email.id).status == "sending"


def test_reschedule_replaces_the_job(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)
    new_time = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)

    moved = emails.reschedule(conn, orgs.personal_scope(conn, owner.id), email.id, send_at=new_time, settings=settings)

    assert moved.send_at == new_time == moved.next_attempt_at
    assert moved.job_id != email.job_id
    assert job_of(conn, email.job_id)["status"] == "cancelled"
    assert job_of(conn, moved.job_id)["scheduled_at"] == new_time - jobs.LEAD
    far = emails.reschedule(
        conn, models.OPERATOR, email.id, send_at=new_time + dt.timedelta(days=40), settings=settings
    )
    assert far.job_id is None
    assert invariants.jobs_without_email(conn) == []


def test_send_now_moves_the_attempt_to_now(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)

    now = emails.send_now(conn, orgs.personal_scope(conn, owner.id), email.id, settings=settings)

    assert now.next_attempt_at < email.send_at
    assert job_of(conn, now.job_id)["scheduled_at"] <= dt.datetime.now(dt.UTC)


def test_another_owners_email_is_not_found_and_unchanged(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)
    mallory = orgs.personal_scope(conn, emails.ensure_user(conn, email="mallory@example.com").id)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)

    for attempt in (
        lambda: emails.get(conn, mallory, email.id),
        lambda: emails.timeline(conn, mallory, email.id),
        lambda: emails.cancel(conn, mallory, email.id),
        lambda: emails.reschedule(conn, mallory, email.id, send_at=later, settings=settings),
        lambda: emails.send_now(conn, mallory, email.id, settings=settings),
    ):
        with pytest.raises(errors.NotFound):
            attempt()

    assert emails.get(conn, models.OPERATOR, email.id) == email


def test_the_database_refuses_an_illegal_status_change(
    conn: Conn, owner: User, make_draft: Callable[..., Any], settings: Settings
) -> None:
    """Even psql cannot move a cancelled email back to sending."""
    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)
    emails.cancel(conn, models.OPERATOR, email.id)

    with pytest.raises(psycopg.errors.CheckViolation, match="cannot go from cancelled to sending"):
        conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", (email.id,))
    with pytest.raises(psycopg.errors.CheckViolation, match="append-only"):
        conn.execute("UPDATE email_events SET kind = 'sent'")
