"""Emails go out at their time: the precision targets, checked loosely (bench/ measures them strictly)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails
from tasks.domain.models import User
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow


def lateness(conn: Conn, sink: Sink) -> list[float]:
    due = {r["message_id"]: r["send_at"].timestamp() for r in conn.execute("SELECT message_id, send_at FROM emails")}
    return sorted(m.at - due[m.message_id] for m in sink.messages if m.message_id in due)


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def test_emails_spread_over_seconds_each_arrive_just_after_their_time(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """60 emails over 3 s: never early, none anywhere near a 5 s poll (the strict 25 ms p99 is make bench's)."""
    workers()
    workers()
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    for i in range(60):
        at = start + dt.timedelta(seconds=3 * i / 60)
        emails.schedule(conn, owner=owner, draft=make_draft(send_at=at, subject=f"#{i}"), settings=settings)

    sink.wait_for(60, timeout=30)

    late = lateness(conn, sink)
    p50, p90 = quantile(late, 0.5), quantile(late, 0.9)
    print(f"spread: lateness p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms, max {late[-1] * 1000:.1f} ms")
    assert late[0] >= 0
    # Loose (a busy CI box): a 5 s poll would put the median near 2.5 s.
    assert p50 < 0.5 and p90 < 1.0 and late[-1] < 3.0


def test_a_burst_due_at_one_instant_is_delivered_within_moments(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """100 emails due at once with two workers: the last is out within 3 s (target: 300 within 0.5 s)."""
    workers()
    workers()
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    for i in range(100):
        emails.schedule(conn, owner=owner, draft=make_draft(send_at=due, subject=f"#{i}"), settings=settings)

    received = sink.wait_for(100, timeout=30)

    last = max(m.at for m in received) - due.timestamp()
    print(f"burst: 100 due at once, last received {last:.3f} s after")
    assert min(m.at for m in received) >= due.timestamp()
    assert last < 3.0


def test_a_far_future_backlog_does_not_make_near_emails_late(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """50,000 emails due next month hold no queue job; emails due now are as punctual as without them."""
    conn.execute(
        """INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                               message_id)
           SELECT (SELECT org_id FROM memberships WHERE user_id = %(o)s), %(o)s, 'a@example.com',
                  '{later@example.com}', 'later', 'b',
                  now() + interval '30 days' + n * interval '1 second',
                  now() + interval '30 days' + n * interval '1 second', '<later-' || n || '@x>'
             FROM generate_series(1, 50000) AS n""",
        {"o": owner.id},
    )
    conn.execute("ANALYZE emails")
    workers()
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    for i in range(30):
        at = start + dt.timedelta(seconds=2 * i / 30)
        emails.schedule(conn, owner=owner, draft=make_draft(send_at=at, subject=f"#{i}"), settings=settings)

    sink.wait_for(30, timeout=30)

    late = lateness(conn, sink)
    jobs = conn.execute("SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'send_email'").fetchone()
    assert jobs is not None and jobs["n"] <= 30  # the backlog is not in the queue
    assert late[0] >= 0 and quantile(late, 0.5) < 0.5 and quantile(late, 0.9) < 1.0 and late[-1] < 3.0


def test_a_due_job_no_worker_can_take_never_delays_the_wake_for_the_next_email(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """While a due job waits that no worker can fetch (here: its lock is held; a burst being
    drained is the same for the wake-up timer), the timer looks at it less and less often, up
    to the poll interval. Emails coming due meanwhile still go out at their time, not at the
    timer's next look: it sleeps until the next job not yet due whatever the overdue one."""
    # The lock's holder runs on a worker that looks alive (its heartbeat is fresh).
    conn.execute(
        """WITH w AS (INSERT INTO procrastinate_workers (last_heartbeat)
                      VALUES (now() + interval '1 minute') RETURNING id)
           INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status, scheduled_at, worker_id)
           SELECT 'elsewhere', 'held_elsewhere', 'held', '{}', s, at, CASE s WHEN 'doing' THEN w.id END
             FROM w, (VALUES ('doing'::procrastinate_job_status, NULL::timestamptz),
                             ('todo', now() - interval '1 second')) AS v(s, at)"""
    )
    workers(extra_env={"WORKER_POLL_INTERVAL": "2"})
    # The timer's look at the held job backs off from 20 ms to the 2 s poll within ~2.6 s.
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3.5)
    for i in range(20):
        at = start + dt.timedelta(seconds=2 * i / 20)
        emails.schedule(conn, owner=owner, draft=make_draft(send_at=at, subject=f"#{i}"), settings=settings)

    sink.wait_for(20, timeout=30)

    late = lateness(conn, sink)
    print(f"behind a held job: lateness p50 {quantile(late, 0.5) * 1000:.1f} ms, max {late[-1] * 1000:.1f} ms")
    # Waking at the timer's backed-off look would put these up to 2 s late (1 s on average).
    assert quantile(late, 0.5) < 0.3 and quantile(late, 0.9) < 0.6
    # The held job is still there, never fetched.
    held = conn.execute("SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo' AND lock = 'held'")
    assert held.fetchone()["n"] == 1
