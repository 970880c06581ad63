"""Nothing lost: killed workers, lost jobs and far-future emails are all carried on."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models
from tasks.domain.models import User
from tests.support import invariants
from tests.support.procs import wait_until
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow


def schedule_many(conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], n: int) -> list[Any]:
    now = dt.datetime.now(dt.UTC)
    return [
        emails.schedule(conn, owner=owner, draft=make_draft(send_at=now, subject=f"#{i}"), settings=settings)[0]
        for i in range(n)
    ]


def all_terminal(conn: Conn, statuses: set[str]) -> bool:
    return set(invariants.counts(conn)) <= statuses


def test_kill_9_mid_burst_loses_nothing_and_duplicates_nothing(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """200 emails, the worker SIGKILLed mid-send, a new one started: all end sent or uncertain."""
    sink.data_delay = 0.02  # keep emails in flight long enough to be caught by the kill
    first = workers()
    batch = schedule_many(conn, owner, settings, make_draft, 200)

    sink.wait_for(30, timeout=30)
    first.kill()
    killed_at = time.time()
    workers()
    wait_until(lambda: all_terminal(conn, {"sent", "uncertain"}), timeout=60, what="every email to finish")

    rows = {r["id"]: r for r in conn.execute("SELECT id, status, message_id FROM emails")}
    received = sink.by_message_id()
    sent = [r for r in rows.values() if r["status"] == "sent"]
    uncertain = [r for r in rows.values() if r["status"] == "uncertain"]
    lost = [r for r in sent if received[r["message_id"]] == 0]
    duplicated = [r for r in rows.values() if received[r["message_id"]] > 1]
    first_recovery = conn.execute(
        "SELECT min(at) AS at FROM email_events WHERE kind IN ('recovered', 'uncertain')"
    ).fetchone()
    resumed_after = first_recovery["at"].timestamp() - killed_at if first_recovery["at"] else None
    print(
        f"kill -9 test: {len(batch)} emails, sent {len(sent)}, uncertain {len(uncertain)}, "
        f"lost {len(lost)}, duplicated {len(duplicated)}, recovery began {resumed_after:.1f}s after the kill"
    )
    assert len(sent) + len(uncertain) == 200
    assert lost == [] and duplicated == []
    assert uncertain, "the kill landed mid-DATA: some emails must be uncertain"
    assert all(received[r["message_id"]] <= 1 for r in uncertain)
    assert resumed_after is not None and resumed_after < 45
    assert invariants.jobs_without_email(conn) == []


def test_a_scheduled_email_whose_job_was_lost_is_deferred_again(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    email = emails.schedule(
        conn,
        owner=owner,
        draft=make_draft(send_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)),
        settings=settings,
    )[0]
    conn.execute("DELETE FROM procrastinate_jobs WHERE id = %s", (email.job_id,))
    workers()

    [received] = sink.wait_for(1, timeout=20)

    assert received.message_id == email.message_id
    sent = wait_until(
        lambda: (e := emails.get(conn, models.OPERATOR, email.id)).status == "sent" and e, timeout=10, what="sent"
    )
    assert sent.job_id != email.job_id
    assert "queued" in [e.kind for e in emails.timeline(conn, models.OPERATOR, email.id)]


def test_a_far_future_email_is_promoted_as_it_comes_near_and_sent_on_time(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    email = emails.schedule(
        conn,
        owner=owner,
        draft=make_draft(send_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=20)),
        settings=settings,
    )[0]
    assert email.job_id is None
    # Time passes: the email is now 8 s away, inside the horizon, still without a job.
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=8)
    conn.execute("UPDATE emails SET send_at = %s, next_attempt_at = %s WHERE id = %s", (due, due, email.id))
    workers()

    [received] = sink.wait_for(1, timeout=20)

    assert 0 <= received.at - due.timestamp() < 1.0
    wait_until(lambda: emails.get(conn, models.OPERATOR, email.id).status == "sent", timeout=10, what="sent")
    events = [e.kind for e in emails.timeline(conn, models.OPERATOR, email.id)]
    assert events == ["scheduled", "queued", "claimed", "sent"]


def test_sigterm_finishes_in_flight_sends_and_leaves_the_rest_waiting(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """A rolling deploy: the stopping worker completes what it started; the next one sends the rest."""
    sink.data_delay = 0.3
    worker = workers()
    schedule_many(conn, owner, settings, make_draft, 30)
    sink.data_started.wait(10)

    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0

    statuses = invariants.counts(conn)
    assert set(statuses) <= {"sent", "scheduled"}, statuses  # nothing left half-done
    assert statuses.get("sent", 0) == len(sink.messages) > 0
    assert invariants.waiting_without_job(conn, settings.schedule_horizon) == []
    workers()
    wait_until(lambda: all_terminal(conn, {"sent"}), timeout=30, what="the rest to be sent")
    assert len(sink.messages) == 30 and set(sink.by_message_id().values()) == {1}
