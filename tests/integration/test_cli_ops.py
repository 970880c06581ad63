"""The operator's commands: status, prune, replay-offline, cancel of an offline email; real processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import procrastinate
from procrastinate import JobContext
from procrastinate import jobs as procrastinate_jobs

from tasks.core import db
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.delivery.runtime import Runtime
from tasks.domain import emails, models
from tasks.domain.models import User
from tasks.queue import retention
from tasks.queue.app import app
from tests.support.flow import attempt
from tests.support.procs import run_cli


def test_status_shows_counts_next_due_breakers_and_workers(
    conn: Conn, env: dict[str, str], owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)
    conn.execute(
        "INSERT INTO transport_breakers (label, state, failures, retry_at, opened_count, last_error) "
        "VALUES ('primary', 'open', 5, now() + interval '40 s', 1, 'cannot connect to smtp://mx:25')"
    )
    [worker] = conn.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id").fetchall()

    result = run_cli(env | {"MAIL_TRANSPORTS": "primary=smtp://127.0.0.1:1 backup=smtp://127.0.0.1:2"}, "status")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["scheduled", "1"] and lines[6].split() == ["offline", "0"]
    assert lines[7].startswith("next due   20")
    primary = next(line for line in lines if line.strip().startswith("primary"))
    assert "open" in primary and "failures in a row: 5" in primary and "cannot connect to smtp://mx:25" in primary
    assert "trial in 3" in primary  # ~40 s from now
    backup = next(line for line in lines if line.strip().startswith("backup"))
    assert backup.split()[:2] == ["backup", "closed"]
    assert lines[-1] == f"workers    1 alive (ids {worker['id']})"


def test_prune_deletes_old_finished_jobs_and_events_and_keeps_every_email(
    conn: Conn, env: dict[str, str], owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    old = emails.schedule(conn, owner=owner, draft=make_draft(subject="old"), settings=settings)[0]
    recent = emails.schedule(conn, owner=owner, draft=make_draft(subject="recent"), settings=settings)[0]
    waiting = emails.schedule(conn, owner=owner, draft=make_draft(subject="waiting"), settings=settings)[0]
    emails.cancel(conn, models.OPERATOR, old.id)
    emails.cancel(conn, models.OPERATOR, recent.id)
    # Forty days pass for the old email: its cancelled job and one old event on each email.
    conn.execute("UPDATE procrastinate_events SET at = now() - interval '40 days' WHERE job_id = %s", (old.job_id,))
    for email in (old, waiting):
        conn.execute(
            "INSERT INTO email_events (org_id, email_id, kind, at)"
            " SELECT org_id, id, 'note', now() - interval '40 days' FROM emails WHERE id = %s",
            (email.id,),
        )

    result = run_cli(env, "prune", "--older-than", "30d")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "deleted 1 finished job(s) and 1 event(s) older than 30d"
    jobs = {r["id"] for r in conn.execute("SELECT id FROM procrastinate_jobs")}
    assert old.job_id not in jobs and recent.job_id in jobs and waiting.job_id in jobs
    assert conn.execute("SELECT count(*) AS n FROM emails").fetchone() == {"n": 3}
    notes = conn.execute("SELECT email_id FROM email_events WHERE kind = 'note'").fetchall()
    assert notes == [{"email_id": waiting.id}]  # a waiting email's timeline is never cut
    assert conn.execute("SELECT kind, n FROM email_event_totals").fetchall() == [{"kind": "note", "n": 1}]

    conn.execute(
        "INSERT INTO alerts (key, kind, summary, since, resolved_at) VALUES"
        " ('offline', 'offline', 'old', now() - interval '41 days', now() - interval '40 days'),"
        " ('queue_lag', 'queue_lag', 'open', now() - interval '41 days', NULL)"
    )
    again = run_cli(env, "prune", "--older-than", "30d")
    assert again.stdout.splitlines()[-1] == "deleted 1 alert(s) resolved more than 30d ago"
    assert [r["key"] for r in conn.execute("SELECT key FROM alerts")] == ["queue_lag"]  # open: kept


def test_the_hourly_retention_task_deletes_finished_jobs_past_job_retention(
    conn: Conn, database_url: str, env: dict[str, str], owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    """Runs the periodic task's own body against the database, as a worker would."""
    old = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)[0]
    fresh = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)[0]
    for email in (old, fresh):
        emails.cancel(conn, models.OPERATOR, email.id)
    conn.execute("UPDATE procrastinate_events SET at = now() - interval '25 hours' WHERE job_id = %s", (old.job_id,))

    async def run_task() -> None:
        pool = db.async_pool(database_url, size=2)
        await pool.open(wait=True)
        rt = Runtime.create(settings, pool, worker_name="test")
        # Its own App, as a worker process has; the test process's shared one stays synchronous.
        worker_app = procrastinate.App(connector=procrastinate.PsycopgConnector())
        try:
            async with worker_app.open_async(pool):
                context = JobContext(
                    app=worker_app,
                    job=procrastinate_jobs.Job(id=1, queue="maintenance", lock=None, queueing_lock=None, task_name="x"),
                    start_timestamp=time.time(),
                    additional_context={"runtime": rt},
                    abort_reason=lambda: None,
                )
                await retention.prune_jobs(context, timestamp=int(time.time()))
        finally:
            await rt.close()
            await pool.close()

    asyncio.run(run_task())

    jobs = {r["id"] for r in conn.execute("SELECT id FROM procrastinate_jobs")}
    assert settings.job_retention_hours == 24
    assert old.job_id not in jobs and fresh.job_id in jobs
    assert retention.prune_jobs.name in {p.task.name for p in app.periodic_registry.periodic_tasks.values()}


def test_an_offline_email_can_be_cancelled_and_is_then_not_replayed(
    conn: Conn, env: dict[str, str], owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    email = emails.schedule(conn, owner=owner, draft=make_draft(send_at=dt.datetime.now(dt.UTC)), settings=settings)[0]
    attempt(conn, email, "offline", transport="jsonl")

    cancelled = run_cli(env, "cancel", str(email.id))
    replay = run_cli(env, "replay-offline")

    assert cancelled.stdout.split() == [str(email.id), "cancelled"]
    assert replay.returncode == 0 and replay.stdout.strip() == "handed 0 offline email(s) back to the real transports"


def test_bad_arguments_of_the_operator_commands_exit_2(env: dict[str, str], conn: Conn) -> None:
    cases = {
        "prune under an hour": (env, ["prune", "--older-than", "10m"]),
        "prune not a duration": (env, ["prune", "--older-than", "soon"]),
        "replay limit 0": (env, ["replay-offline", "--limit", "0"]),
        "replay bad timeout": (env, ["replay-offline", "--timeout", "forever"]),
        "replay with only the offline log": (
            env | {"MAIL_TRANSPORTS": "jsonl:///tmp/offline.jsonl"},
            ["replay-offline"],
        ),
        "status unknown flag": (env, ["status", "--verbose"]),
        "bad breaker setting": (env | {"BREAKER_THRESHOLD": "0"}, ["status"]),
    }

    results = {name: run_cli(e, *args) for name, (e, args) in cases.items()}

    for name, result in results.items():
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert result.stderr.strip(), name
    assert "at least 1h" in results["prune under an hour"].stderr
    assert "no transport but the offline log" in results["replay with only the offline log"].stderr
    assert "BREAKER_THRESHOLD" in results["bad breaker setting"].stderr


def test_replay_with_no_worker_running_says_so_at_once_and_still_hands_the_emails_over(
    conn: Conn, env: dict[str, str], owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    """Waiting could not end well: no need to sit out the timeout to hear why."""
    email = emails.schedule(conn, owner=owner, draft=make_draft(send_at=dt.datetime.now(dt.UTC)), settings=settings)[0]
    attempt(conn, email, "offline", transport="jsonl")

    began = time.monotonic()
    replay = run_cli(env, "replay-offline", "--timeout", "40s")
    took = time.monotonic() - began

    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert "handed 1 offline email(s) back" in replay.stdout
    assert "no worker is running" in replay.stdout and "python -m tasks worker" in replay.stdout
    assert took < 20, f"waited {took:.0f}s"
    assert emails.get(conn, models.OPERATOR, email.id).status == "scheduled"
