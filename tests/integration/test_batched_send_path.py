"""The send path's round trips: jobs fetched and emails claimed together, writes grouped.

``BatchingJobManager`` (tasks/queue/procrastinate_boundary.py) answers the worker's
fetch loop: one statement takes a job for each free slot and
claims the due emails among them; jobs kept when the worker stops are given back.
``groupcommit.Group`` (tasks/delivery/groupcommit.py) writes the requests made while
a round trip is in flight in the next one, each with its own answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest
from procrastinate import manager
from psycopg.rows import dict_row

from tasks.core import db
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.delivery import groupcommit, send
from tasks.domain import emails
from tasks.domain.models import Email, Status, User
from tasks.queue import jobs
from tasks.queue import procrastinate_boundary as boundary
from tasks.queue.app import app


def _schedule(conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], n: int) -> list[Email]:
    made = [emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)[0] for _ in range(n)]
    # Due now: the email, and its job LEAD before it (as jobs.py defers them).
    conn.execute(
        "UPDATE emails SET send_at = now() - interval '1 second', next_attempt_at = now() - interval '1 second'"
        " WHERE id = ANY(%s)",
        ([e.id for e in made],),
    )
    conn.execute(
        "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '1 second' - %s WHERE id = ANY(%s)",
        (jobs.LEAD, [e.job_id for e in made]),
    )
    return made


def _worker_id(conn: Conn) -> int:
    row = conn.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id").fetchone()
    assert row is not None
    return int(row["id"])


async def _fetching(database_url: str, run: Callable[[boundary.BatchingJobManager, dict[int, db.Row]], Any]) -> Any:
    pool = db.async_pool(database_url, size=2)
    await pool.open(wait=True)
    claimed: dict[int, db.Row] = {}
    fetcher = boundary.BatchingJobManager(
        app.connector,
        pool=pool,
        worker_name="test",
        send_task=jobs.SEND_TASK,
        lead=jobs.LEAD,
        free_slots=lambda: 5,
        on_claimed=claimed.__setitem__,
    )
    try:
        return await run(fetcher, claimed)
    finally:
        await pool.close()


def test_one_round_trip_takes_a_job_per_free_slot_and_claims_their_emails(
    conn: Conn, database_url: str, owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    made = _schedule(conn, owner, settings, make_draft, 8)
    worker = _worker_id(conn)

    async def run(fetcher: boundary.BatchingJobManager, claimed: dict[int, db.Row]) -> list[Any]:
        first = await fetcher.fetch_job(queues=None, worker_id=worker)
        # The next asks are answered from what the first one kept: no round trip.
        rest = [await fetcher.fetch_job(queues=None, worker_id=worker) for _ in range(4)]
        return [first, *rest, fetcher.fetches, dict(claimed)]

    *fetched, fetches, claimed = asyncio.run(_fetching(database_url, run))

    assert fetches == 1
    assert [j.id for j in fetched] == [e.job_id for e in made[:5]]  # 5 free slots, oldest first
    assert set(claimed) == {e.job_id for e in made[:5]}
    assert all(row["status"] == "sending" and row["attempts"] == 1 for row in claimed.values())
    rows = conn.execute(
        "SELECT e.status, e.attempts, j.status AS job_status, j.worker_id,"
        " (SELECT count(*) FROM email_events v WHERE v.email_id = e.id AND v.kind = 'claimed') AS claims"
        " FROM emails e JOIN procrastinate_jobs j ON j.id = e.job_id WHERE e.id = ANY(%s) ORDER BY e.created_at, e.id",
        ([e.id for e in made],),
    ).fetchall()
    taken = [r for r in rows if r["job_status"] == "doing"]
    assert len(taken) == 5 and {r["worker_id"] for r in taken} == {worker}
    assert all(r["status"] == "sending" and r["claims"] == 1 for r in taken)
    assert (
        sorted((r["status"], r["job_status"], r["claims"]) for r in rows if r not in taken)
        == [("scheduled", "todo", 0)] * 3
    )


def test_a_job_fetched_before_its_instant_is_not_claimed(
    conn: Conn, database_url: str, owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    """Jobs come due LEAD early; the task claims at the instant, so a cancel still works until then."""
    [email] = _schedule(conn, owner, settings, make_draft, 1)
    conn.execute(
        "UPDATE emails SET next_attempt_at = now() + interval '1 hour' WHERE id = %s", (email.id,)
    )  # the job is due; the email (and the job's lead) not yet
    conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now() - interval '10 ms' WHERE id = %s", (email.job_id,))
    worker = _worker_id(conn)

    async def run(fetcher: boundary.BatchingJobManager, claimed: dict[int, db.Row]) -> Any:
        return await fetcher.fetch_job(queues=None, worker_id=worker), dict(claimed)

    job, claimed = asyncio.run(_fetching(database_url, run))

    assert job is not None and job.id == email.job_id
    assert claimed == {}
    row = conn.execute("SELECT status, attempts FROM emails WHERE id = %s", (email.id,)).fetchone()
    assert row == {"status": "scheduled", "attempts": 0}


def test_jobs_kept_when_the_worker_stops_are_given_back_with_their_attempts(
    conn: Conn, database_url: str, owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    made = _schedule(conn, owner, settings, make_draft, 5)
    worker = _worker_id(conn)

    async def run(fetcher: boundary.BatchingJobManager, claimed: dict[int, db.Row]) -> Any:
        started = await fetcher.fetch_job(queues=None, worker_id=worker)  # runs; the other 4 are kept
        return started, fetcher.kept(), await fetcher.release_kept(), fetcher.kept()

    started, kept, released, after = asyncio.run(_fetching(database_url, run))

    assert started.id == made[0].job_id
    assert kept == [e.job_id for e in made[1:]] and released == 4 and after == []
    rows = conn.execute(
        "SELECT e.id, e.status, e.attempts, j.status AS job_status, j.worker_id FROM emails e"
        " JOIN procrastinate_jobs j ON j.id = e.job_id WHERE e.id = ANY(%s)",
        ([e.id for e in made[1:]],),
    ).fetchall()
    assert [(r["status"], r["attempts"], r["job_status"], r["worker_id"]) for r in rows] == [
        ("scheduled", 0, "todo", None)
    ] * 4
    kinds = conn.execute("SELECT kind FROM email_events WHERE email_id = %s ORDER BY id", (made[1].id,)).fetchall()
    assert [k["kind"] for k in kinds] == ["scheduled", "claimed", "released"]


def test_the_manager_is_procrastinates_for_everything_but_the_fetch() -> None:
    """Only fetch_job is ours: heartbeats, finishes, listening stay Procrastinate's."""
    overridden = {
        name
        for name, value in vars(boundary.BatchingJobManager).items()
        if callable(value) and hasattr(manager.JobManager, name)
    }
    assert overridden == {"__init__", "fetch_job"}


# --- group commit -----------------------------------------------------------------


async def _echo_group(
    database_url: str, requests: Sequence[int], *, fail_first: bool = False, later: Sequence[int] = ()
) -> tuple[list[Any], groupcommit.Stats, list[list[int]]]:
    """Submit ``requests`` at once, then ``later`` while the first round trip is in flight."""
    pool = db.async_pool(database_url, size=2)
    await pool.open(wait=True)
    calls: list[list[int]] = []
    in_flight, go_on = asyncio.Event(), asyncio.Event()

    async def write(conn: db.AsyncConn, batch: Sequence[int]) -> list[int]:
        calls.append(list(batch))
        if len(calls) == 1 and later:
            in_flight.set()
            await go_on.wait()
        if fail_first and len(calls) == 1:
            raise psycopg.errors.UniqueViolation("refused")
        cursor = await conn.execute("SELECT x * 10 AS y FROM unnest(%s::int[]) AS x", (list(batch),))
        return [row["y"] for row in await cursor.fetchall()]

    group: groupcommit.Group[int, int] = groupcommit.Group(pool, write, within=1.0, name="test")
    try:
        first = [asyncio.ensure_future(group.submit(r)) for r in requests]
        second = []
        if later:
            await in_flight.wait()
            second = [asyncio.ensure_future(group.submit(r)) for r in later]
            await asyncio.sleep(0)  # they are queued behind the round trip in flight
            go_on.set()
        answers = await asyncio.gather(*first, *second, return_exceptions=True)
        return list(answers), group.stats, calls
    finally:
        await group.close()
        await pool.close()


def test_requests_made_together_share_a_round_trip_and_get_their_own_answers(database_url: str) -> None:
    answers, stats, calls = asyncio.run(_echo_group(database_url, list(range(1, 21))))

    assert answers == [r * 10 for r in range(1, 21)]
    assert (stats.requests, stats.round_trips) == (20, 1) and calls == [list(range(1, 21))]


def test_requests_made_while_a_round_trip_is_in_flight_go_together_in_the_next(database_url: str) -> None:
    answers, stats, calls = asyncio.run(_echo_group(database_url, [1], later=list(range(2, 12))))

    assert answers == [r * 10 for r in range(1, 12)]
    assert calls == [[1], list(range(2, 12))] and stats.round_trips == 2


def test_a_failed_round_trip_fails_only_its_own_requests(database_url: str) -> None:
    answers, stats, calls = asyncio.run(_echo_group(database_url, [1], fail_first=True, later=[2, 3]))

    assert isinstance(answers[0], psycopg.errors.UniqueViolation)
    assert answers[1:] == [20, 30]
    assert calls == [[1], [2, 3]] and stats.round_trips == 1  # the failed one is not counted


@pytest.mark.parametrize("moved", [False, True])
def test_grouped_outcomes_end_their_jobs_and_say_which_emails_had_moved(
    conn: Conn, database_url: str, owner: User, settings: Settings, make_draft: Callable[..., Any], moved: bool
) -> None:
    """finish_emails: the outcome of each attempt, one statement; a moved email is reported, its job ended."""
    made = _schedule(conn, owner, settings, make_draft, 3)
    for e in made:
        assert db.one(conn, "claim_email", email_id=e.id, job_id=e.job_id, worker="test") is not None
    conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = ANY(%s)", ([e.job_id for e in made],))
    if moved:  # the reconciler took the second one meanwhile
        conn.execute("UPDATE emails SET status = 'uncertain', data_started_at = now() WHERE id = %s", (made[1].id,))

    async def run() -> list[bool]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as c:
            return await send._finish_many(
                c, [send._Finish(e.id, e.job_id, Status.SENT, reply="250 OK", transport="t") for e in made]
            )

    done = asyncio.run(run())

    assert done == [True, not moved, True]
    rows = conn.execute("SELECT id, status FROM emails WHERE id = ANY(%s)", ([e.id for e in made],)).fetchall()
    statuses = {r["id"]: r["status"] for r in rows}
    assert [statuses[e.id] for e in made] == ["sent", "uncertain" if moved else "sent", "sent"]
    left = conn.execute("SELECT count(*) AS n FROM procrastinate_jobs WHERE id = ANY(%s)", ([e.job_id for e in made],))
    assert left.fetchone() == {"n": 0}
    late = conn.execute("SELECT count(*) AS n FROM email_events WHERE kind = 'late_outcome'").fetchone()
    assert late == {"n": 1 if moved else 0}


def test_an_email_locked_by_a_cancel_is_left_to_its_task_not_waited_for(
    conn: Conn, database_url: str, owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    """A cancel locks the email, then its job; the fetch holds jobs, so it must not wait for emails (deadlock)."""
    made = _schedule(conn, owner, settings, make_draft, 2)
    worker = _worker_id(conn)

    async def run(fetcher: boundary.BatchingJobManager, claimed: dict[int, db.Row]) -> Any:
        fetched = [await fetcher.fetch_job(queues=None, worker_id=worker) for _ in range(2)]
        return fetched, dict(claimed)

    with db.connect(database_url) as canceller, canceller.transaction():
        canceller.execute("SELECT 1 FROM emails WHERE id = %s FOR UPDATE", (made[0].id,))
        fetched, claimed = asyncio.run(asyncio.wait_for(_fetching(database_url, run), timeout=10))

    assert [j.id for j in fetched] == [made[0].job_id, made[1].job_id]
    assert set(claimed) == {made[1].job_id}  # the locked one: its task will claim it


def test_a_request_queued_behind_a_slow_round_trip_keeps_its_own_deadline(database_url: str) -> None:
    """Each request may be written for ``within`` seconds from when it was made, queued time included:
    the outcome of a send waits OUTCOME_RETRY for the database, not that plus the round trip before it."""

    async def run() -> list[Any]:
        pool = db.async_pool(database_url, size=2)
        await pool.open(wait=True)
        in_flight, go_on = asyncio.Event(), asyncio.Event()

        async def write(conn: db.AsyncConn, batch: Sequence[int]) -> list[int]:
            if batch == [1]:
                in_flight.set()
                await go_on.wait()  # the first round trip rides out an outage
            return list(batch)

        group: groupcommit.Group[int, int] = groupcommit.Group(pool, write, within=0.2, name="test")
        try:
            first = asyncio.ensure_future(group.submit(1))
            await in_flight.wait()
            second = asyncio.ensure_future(group.submit(2))
            # The second request gives up at its own deadline while the first still waits.
            await asyncio.wait({second}, timeout=10)
            go_on.set()
            return list(await asyncio.gather(first, second, return_exceptions=True))
        finally:
            await group.close()
            await pool.close()

    first, second = asyncio.run(run())

    assert first == 1
    assert isinstance(second, psycopg.OperationalError) and "within 0.2 s" in str(second)
