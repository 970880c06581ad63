"""Recurring emails against real PostgreSQL (and real workers where an email goes out):
occurrences created once each, racing reconcilers, a worker killed mid-creation,
catch-up after downtime, pause/resume/edit/delete, and the pause after failures in a row."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tasks.core import config, errors
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import audit, emails, orgs, recurrence_rules, recurrences
from tasks.domain.models import User, in_org
from tasks.domain.orgs import personal_scope
from tasks.queue import occurrences
from tests.support.procs import wait_until
from tests.support.smtp_sink import Sink


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """Occurrences created as far ahead as the horizon (10 minutes), so a tick makes several."""
    return env | {"RECURRENCE_LOOKAHEAD": "600"}


def spec(settings: Settings, **data: Any) -> recurrences.Spec:
    fields = {
        "to": ["bob@example.com"],
        "subject": "Report {{occurrence_date}} {{occurrence_time}}",
        "body_text": "For {{occurrence_date}}",
        "cron": "* * * * *",
        "time_zone": "Europe/Paris",
    }
    return recurrences.validate(fields | data, settings=settings)


def create(conn: Conn, owner: User, settings: Settings, **data: Any) -> recurrences.Recurrence:
    return recurrences.create(conn, owner=owner, spec=spec(settings, **data), settings=settings)[0]


async def _tick(database_url: str, settings: Settings) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as aconn:
        return await occurrences.create_due(aconn, settings)


def tick(database_url: str, settings: Settings) -> dict[str, int]:
    return asyncio.run(_tick(database_url, settings))


def occurrence_rows(conn: Conn, rec_id: Any) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT id, status, occurrence_at, send_at, subject, body_text, job_id FROM emails"
        " WHERE recurrence_id = %s ORDER BY occurrence_at, status",
        [rec_id],
    ).fetchall()


def test_occurrences_become_emails_with_jobs_once_within_the_horizon(
    conn: Conn, owner: User, settings: Settings, database_url: str
) -> None:
    rec = create(conn, owner, settings)
    assert tick(database_url, settings)["occurrences"] == settings.schedule_horizon // 60
    rows = occurrence_rows(conn, rec.id)
    assert all(r["job_id"] is not None and r["status"] == "scheduled" for r in rows)
    assert [r["occurrence_at"] for r in rows] == recurrences.upcoming(
        conn, recurrences.get(conn, personal_scope(conn, owner.id), rec.id), len(rows)
    )
    first = rows[0]
    local = first["occurrence_at"].astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert first["subject"] == f"Report {local:%Y-%m-%d} {local:%H:%M}"
    assert first["send_at"] == first["occurrence_at"]
    # A second tick creates nothing new; the cursor is past the horizon.
    assert tick(database_url, settings)["occurrences"] == 0
    after = recurrences.get(conn, personal_scope(conn, owner.id), rec.id)
    assert after.made == len(rows) and after.next_at > rows[-1]["occurrence_at"]
    assert conn.execute("SELECT count(*) AS n FROM email_events WHERE kind = 'queued'").fetchone()["n"] == len(rows)
    # Their jobs come after one-off mail due at the same instant (every rule fires at second 0).
    priorities = conn.execute(
        "SELECT DISTINCT j.priority FROM procrastinate_jobs j JOIN emails e ON e.job_id = j.id"
        " WHERE e.recurrence_id = %s",
        [rec.id],
    ).fetchall()
    assert [p["priority"] for p in priorities] == [occurrences.OCCURRENCE_PRIORITY]


def test_by_default_occurrences_are_created_a_minute_ahead(
    conn: Conn, owner: User, env: dict[str, str], database_url: str
) -> None:
    settings = config.load(env | {"RECURRENCE_LOOKAHEAD": "60"})
    rec = create(conn, owner, settings, cron="*/5 * * * *")
    tick(database_url, settings)
    rows = occurrence_rows(conn, rec.id)
    now = dt.datetime.now(dt.UTC)
    assert all(r["occurrence_at"] <= now + dt.timedelta(seconds=61) for r in rows)
    assert recurrences.get(conn, personal_scope(conn, owner.id), rec.id).next_at > now + dt.timedelta(seconds=59)


def test_the_unique_key_refuses_a_second_row_for_an_occurrence(
    conn: Conn, owner: User, settings: Settings, database_url: str
) -> None:
    rec = create(conn, owner, settings)
    tick(database_url, settings)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,"
            " message_id, recurrence_id, occurrence_at)"
            " SELECT org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at, 'dup@x',"
            " recurrence_id, occurrence_at FROM emails WHERE recurrence_id = %s LIMIT 1",
            [rec.id],
        )


def test_racing_promotions_create_each_occurrence_once(
    conn: Conn, owner: User, settings: Settings, database_url: str
) -> None:
    """Four reconcilers at once over 300 recurrences: every occurrence is one row, every cursor right."""
    recs = [create(conn, owner, settings, cron=f"{i % 60} * * * *") for i in range(300)]
    # The cursors moved back: as if the reconcilers had been racing since before each occurrence.
    conn.execute("UPDATE recurrences SET starts_at = now() - interval '1 hour', next_at = now() - interval '1 second'")

    async def race() -> list[dict[str, int]]:
        return await asyncio.gather(*(_tick(database_url, settings) for _ in range(4)))

    results = asyncio.run(race())
    # And a fifth with nothing left to do.
    assert tick(database_url, settings)["occurrences"] == 0
    dup = conn.execute(
        "SELECT recurrence_id, occurrence_at, count(*) FROM emails WHERE recurrence_id IS NOT NULL"
        " GROUP BY 1, 2 HAVING count(*) > 1"
    ).fetchall()
    assert dup == []
    total = conn.execute("SELECT count(*) AS n FROM emails WHERE recurrence_id IS NOT NULL").fetchone()["n"]
    assert sum(r["occurrences"] for r in results) == total
    made = conn.execute("SELECT sum(made) AS n FROM recurrences").fetchone()["n"]
    assert made == total
    assert (
        conn.execute("SELECT count(*) AS n FROM emails WHERE recurrence_id IS NOT NULL AND job_id IS NULL").fetchone()[
            "n"
        ]
        == 0
    )
    assert len(recs) == 300


def test_downtime_sends_one_catch_up_through_a_worker_and_records_the_rest(
    conn: Conn, owner: User, settings: Settings, sink: Sink, workers: Any
) -> None:
    """Down for 10 minutes of an every-minute recurrence: one email goes out, 9 are recorded skipped."""
    rec = create(conn, owner, settings)
    conn.execute(
        "UPDATE recurrences SET starts_at = now() - interval '1 day',"
        " next_at = date_trunc('minute', now()) - interval '9 minutes' WHERE id = %s",
        [rec.id],
    )
    workers()
    sink.wait_for(1, timeout=30)

    def sent_one() -> list[dict[str, Any]] | None:
        history = recurrences.history_json(recurrences.history(conn, personal_scope(conn, owner.id), rec.id))
        return history if any(h["status"] == "sent" for h in history) else None

    history = wait_until(sent_one, timeout=10, what="the occurrence to be recorded sent")
    skipped = [h for h in history if h["kind"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["n"] == 9 and "only the latest" in skipped[0]["reason"]
    sent = [h for h in history if h["kind"] == "email" and h["status"] == "sent"]
    assert len(sent) == 1
    latest_missed = dt.datetime.fromisoformat(skipped[0]["last_at"]) + dt.timedelta(minutes=1)
    assert dt.datetime.fromisoformat(sent[0]["at"]) == latest_missed
    # Nothing else in the past was created, and nothing is received twice.
    past = conn.execute(
        "SELECT count(*) AS n FROM emails WHERE recurrence_id = %s AND occurrence_at < date_trunc('minute', now())"
        " - interval '1 minute'",
        [rec.id],
    ).fetchone()["n"]
    assert past == 0
    assert all(n == 1 for n in sink.by_message_id().values())


@pytest.mark.parametrize("down", ["10 minutes", "30 minutes"])
def test_occurrences_created_before_an_outage_are_not_sent_beside_the_catch_up(
    conn: Conn, owner: User, settings: Settings, database_url: str, down: str
) -> None:
    """Occurrences are created ahead (the lookahead, here ten minutes): those whose time passed
    while the system was down were missed too. Only one goes out late, the latest (created
    then, or past the cursor when the outage outlasted the lookahead); the rest are cancelled
    and recorded as skipped."""
    rec = create(conn, owner, settings)
    tick(database_url, settings)
    ahead = occurrence_rows(conn, rec.id)
    assert ahead and all(r["status"] == "scheduled" for r in ahead)
    # Time passes with nothing running: the created occurrences and the cursor move into the past.
    conn.execute(
        "UPDATE emails SET occurrence_at = occurrence_at - %(down)s::interval,"
        " send_at = send_at - %(down)s::interval, next_attempt_at = next_attempt_at - %(down)s::interval"
        " WHERE recurrence_id = %(id)s",
        {"down": down, "id": rec.id},
    )
    conn.execute(
        "UPDATE recurrences SET starts_at = starts_at - interval '1 day', next_at = next_at - %(down)s::interval"
        " WHERE id = %(id)s",
        {"down": down, "id": rec.id},
    )
    made_before = conn.execute("SELECT made FROM recurrences WHERE id = %s", [rec.id]).fetchone()["made"]

    tick(database_url, settings)

    rows = occurrence_rows(conn, rec.id)
    now = conn.execute("SELECT now() AS now").fetchone()["now"]
    past = [r for r in rows if r["occurrence_at"] <= now]
    going = [r for r in past if r["status"] == "scheduled"]
    # One catch-up, the latest missed instant; every other past occurrence is cancelled, its job too.
    assert len(going) == 1 and going[0]["occurrence_at"] == max(r["occurrence_at"] for r in past)
    cancelled = [r for r in past if r["status"] == "cancelled"]
    assert {r["id"] for r in cancelled} == {r["id"] for r in ahead} - {going[0]["id"]}
    jobs_waiting = conn.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'todo'",
        [[r["job_id"] for r in cancelled]],
    ).fetchone()["n"]
    assert jobs_waiting == 0
    events = conn.execute(
        "SELECT detail->>'reason' AS reason FROM email_events WHERE kind = 'cancelled' AND email_id = ANY(%s)",
        [[r["id"] for r in cancelled]],
    ).fetchall()
    assert len(events) == len(cancelled) and all("only the latest" in e["reason"] for e in events)
    # The history says so: every missed instant but the catch-up is counted skipped.
    history = recurrences.history_json(recurrences.history(conn, personal_scope(conn, owner.id), rec.id))
    skipped = sum(h["n"] for h in history if h["kind"] == "skipped")
    first_missed = min(r["occurrence_at"] for r in past)
    assert skipped == round((going[0]["occurrence_at"] - first_missed).total_seconds() / 60)
    # They no longer count as made (a count would still allow as many as it says).
    made = conn.execute("SELECT made FROM recurrences WHERE id = %s", [rec.id]).fetchone()["made"]
    assert made == made_before - len(cancelled) + len([r for r in rows if r["id"] not in {a["id"] for a in ahead}])


def test_downtime_longer_than_catch_up_sends_nothing(
    conn: Conn, owner: User, env: dict[str, str], database_url: str
) -> None:
    settings = config.load(env | {"RECURRENCE_CATCH_UP": "30"})
    rec = create(conn, owner, settings, cron="0 9 * * *")
    conn.execute(
        "UPDATE recurrences SET starts_at = now() - interval '5 days', next_at = now() - interval '3 days'"
        " WHERE id = %s",
        [rec.id],
    )
    tick(database_url, settings)
    history = recurrences.history_json(recurrences.history(conn, personal_scope(conn, owner.id), rec.id))
    assert [h["kind"] for h in history] == ["skipped"] and history[0]["n"] == 3
    assert occurrence_rows(conn, rec.id) == []


def test_pause_cancels_what_waits_and_resume_starts_after_now(
    conn: Conn, owner: User, settings: Settings, database_url: str
) -> None:
    scope = personal_scope(conn, owner.id)
    rec = create(conn, owner, settings)
    tick(database_url, settings)
    waiting = len(occurrence_rows(conn, rec.id))
    changed = recurrences.pause(conn, scope, rec.id)
    assert changed.recurrence.status == "paused" and len(changed.cancelled) == waiting
    assert {r["status"] for r in occurrence_rows(conn, rec.id)} == {"cancelled"}
    jobs_left = conn.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs j JOIN emails e ON e.job_id = j.id"
        " WHERE e.recurrence_id = %s AND j.status = 'todo'",
        [rec.id],
    ).fetchone()["n"]
    assert jobs_left == 0
    assert tick(database_url, settings)["occurrences"] == 0
    assert recurrences.pause(conn, scope, rec.id).cancelled == []  # again: a no-op
    resumed = recurrences.resume(conn, scope, rec.id).recurrence
    assert resumed.status == "active" and resumed.next_at >= dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    # The cancelled occurrences still ahead are created again (a new row each).
    assert tick(database_url, settings)["occurrences"] >= waiting - 1
    statuses = [r["status"] for r in occurrence_rows(conn, rec.id)]
    assert statuses.count("scheduled") >= waiting - 1


def test_edit_rewrites_waiting_occurrences_and_a_new_rule_replaces_them(
    conn: Conn, owner: User, settings: Settings, database_url: str
) -> None:
    scope = personal_scope(conn, owner.id)
    rec = create(conn, owner, settings)
    tick(database_url, settings)
    recurrences.edit(conn, scope, rec.id, changes={"subject": "New {{occurrence_time}}"}, settings=settings)
    rows = occurrence_rows(conn, rec.id)
    assert all(r["subject"].startswith("New ") and r["status"] == "scheduled" for r in rows)
    changed = recurrences.edit(
        conn, scope, rec.id, changes={"preset": {"kind": "daily", "time": "03:00"}}, settings=settings
    )
    assert changed.recurrence.cron == "0 3 * * *" and len(changed.cancelled) == len(rows)
    assert changed.recurrence.summary == "Every day at 03:00, Europe/Paris"
    assert {r["status"] for r in occurrence_rows(conn, rec.id)} == {"cancelled"}
    with pytest.raises(Exception) as caught:
        recurrences.edit(conn, scope, rec.id, changes={"time_zone": "Mars/Olympus"}, settings=settings)
    assert getattr(caught.value, "field", None) == "time_zone"


def _offline(conn: Conn, email_id: Any) -> None:
    """The occurrence went to the offline log (every transport was down): not sent, replayed later."""
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", [email_id])
    conn.execute("UPDATE emails SET status = 'offline', offline_at = now() WHERE id = %s", [email_id])


def test_an_occurrence_in_the_offline_log_is_edited_and_cancelled_as_one_waiting(
    conn: Conn, owner: User, settings: Settings, database_url: str
) -> None:
    """Not sent yet, it would go out when the log is replayed: an edit rewrites it, a pause or a
    delete cancels it (nothing more goes out), as a one-off email's cancel does."""
    scope = personal_scope(conn, owner.id)
    rec = create(conn, owner, settings)
    tick(database_url, settings)
    first = occurrence_rows(conn, rec.id)[0]
    _offline(conn, first["id"])
    recurrences.edit(conn, scope, rec.id, changes={"subject": "New {{occurrence_date}}"}, settings=settings)
    row = conn.execute("SELECT status, subject FROM emails WHERE id = %s", [first["id"]]).fetchone()
    assert row["status"] == "offline" and row["subject"].startswith("New 20")
    changed = recurrences.pause(conn, scope, rec.id)
    assert first["id"] in {c["id"] for c in changed.cancelled}
    assert conn.execute("SELECT count(*) AS n FROM emails WHERE status = 'offline'").fetchone()["n"] == 0

    recurrences.resume(conn, scope, rec.id)
    tick(database_url, settings)
    waiting = [r for r in occurrence_rows(conn, rec.id) if r["status"] == "scheduled"]
    _offline(conn, waiting[0]["id"])
    assert waiting[0]["id"] in {c["id"] for c in recurrences.delete(conn, scope, rec.id).cancelled}
    assert conn.execute("SELECT count(*) AS n FROM emails WHERE status = 'offline'").fetchone()["n"] == 0


def test_a_retry_a_moment_later_with_the_same_idempotency_key_returns_the_first(
    conn: Conn, owner: User, settings: Settings
) -> None:
    """With no starts_at the rule starts now: the retry's "now" is later, and it is still the same request."""
    data = {"to": ["bob@example.com"], "subject": "S", "body_text": "B", "cron": "0 9 * * *"}
    now = dt.datetime.now(dt.UTC)

    def attempt(at: dt.datetime, **changes: Any) -> tuple[recurrences.Recurrence, bool]:
        spec = recurrences.validate(data | changes, settings=settings, now=at, idempotency_key="weekly-1")
        return recurrences.create(conn, owner=owner, spec=spec, settings=settings)

    first, created = attempt(now)
    retried, again = attempt(now + dt.timedelta(seconds=3))
    assert created and not again and retried.id == first.id
    with pytest.raises(errors.Conflict):
        attempt(now + dt.timedelta(seconds=3), subject="Other")
    # A start given is part of the request.
    with pytest.raises(errors.Conflict):
        attempt(now, starts_at=(now + dt.timedelta(days=1)).isoformat())


def test_delete_cancels_and_hides_it_but_keeps_its_emails(
    conn: Conn, owner: User, settings: Settings, database_url: str
) -> None:
    scope = personal_scope(conn, owner.id)
    rec = create(conn, owner, settings)
    tick(database_url, settings)
    recurrences.delete(conn, scope, rec.id)
    assert recurrences.list_for(conn, scope) == []
    with pytest.raises(Exception, match="no recurrence"):
        recurrences.get(conn, scope, rec.id)
    assert {r["status"] for r in occurrence_rows(conn, rec.id)} == {"cancelled"}


def test_another_organization_cannot_see_or_touch_it(conn: Conn, owner: User, settings: Settings) -> None:
    rec = create(conn, owner, settings)
    stranger = emails.ensure_user(conn, email="stranger@example.com")
    other = personal_scope(conn, stranger.id)
    assert other.org_id != rec.org_id
    for action in (recurrences.get, recurrences.pause, recurrences.resume, recurrences.delete):
        with pytest.raises(Exception, match="no recurrence"):
            action(conn, other, rec.id)


def test_members_of_its_organization_share_it_and_each_change_is_audited(
    conn: Conn, owner: User, settings: Settings, database_url: str
) -> None:
    rec = create(conn, owner, settings)
    colleague = emails.ensure_user(conn, email="colleague@example.com")
    orgs.add_member(conn, rec.org_id, colleague, orgs.Role.MEMBER)
    theirs = in_org(rec.org_id, colleague.id)
    assert [r.id for r in recurrences.list_for(conn, theirs)] == [rec.id]
    assert recurrences.list_for(conn, in_org(rec.org_id, colleague.id, mine=True)) == []
    tick(database_url, settings)
    assert {
        r["org_id"] for r in conn.execute("SELECT org_id FROM emails WHERE recurrence_id = %s", [rec.id]).fetchall()
    } == {rec.org_id}
    recurrences.pause(conn, theirs, rec.id)
    recurrences.resume(conn, theirs, rec.id)
    recurrences.edit(conn, theirs, rec.id, changes={"subject": "New subject"}, settings=settings)
    recurrences.delete(conn, theirs, rec.id)
    lines = [
        (e.action, e.target, e.actor_id) for e in audit.entries(conn, rec.org_id) if e.action.startswith("recurrence.")
    ]
    assert lines == [
        ("recurrence.delete", str(rec.id), colleague.id),
        ("recurrence.edit", str(rec.id), colleague.id),
        ("recurrence.resume", str(rec.id), colleague.id),
        ("recurrence.pause", str(rec.id), colleague.id),
        ("recurrence.create", str(rec.id), owner.id),
    ]
    assert set(audit.entries(conn, rec.org_id)[-1].detail) == {"subject", "rule", "status"}  # never the body


def _fail(conn: Conn, email_id: Any, status: str = "failed") -> None:
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", [email_id])
    conn.execute(
        "UPDATE emails SET status = %s, sent_at = CASE WHEN %s = 'sent' THEN now() END WHERE id = %s",
        [status, status, email_id],
    )


def test_permanent_failures_in_a_row_pause_it_and_say_why(
    conn: Conn, owner: User, env: dict[str, str], database_url: str
) -> None:
    settings = config.load(env | {"RECURRENCE_PAUSE_AFTER_FAILURES": "3"})
    rec = create(conn, owner, settings)
    tick(database_url, settings)
    rows = occurrence_rows(conn, rec.id)
    _fail(conn, rows[0]["id"])
    _fail(conn, rows[1]["id"])
    _fail(conn, rows[2]["id"], "sent")  # a success resets the count
    _fail(conn, rows[3]["id"])
    _fail(conn, rows[4]["id"])
    assert recurrences.get(conn, personal_scope(conn, owner.id), rec.id).failures_in_row == 2

    async def pause() -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as a:
            return await occurrences.pause_failing(a, settings)

    assert asyncio.run(pause()) == []
    _fail(conn, rows[5]["id"])
    cancelled = asyncio.run(pause())
    after = recurrences.get(conn, personal_scope(conn, owner.id), rec.id)
    assert after.status == "paused" and "3 occurrences in a row failed permanently" in after.paused_reason
    assert len(cancelled) == len(rows) - 6
    assert tick(database_url, settings)["occurrences"] == 0
    line = audit.entries(conn, rec.org_id)[0]
    assert (line.action, line.target, line.actor_id) == ("recurrence.pause", str(rec.id), None)


def test_a_worker_killed_mid_creation_leaves_no_half_and_no_double(
    conn: Conn, owner: User, settings: Settings, database_url: str, workers: Any
) -> None:
    """The reconciler is stopped after inserting the occurrences and their jobs, before moving the
    cursor (a lock holds it there), and SIGKILLed: nothing of it stays; the next worker creates each once."""
    rec = create(conn, owner, settings)
    blocker = psycopg.connect(database_url, autocommit=False)
    blocker.execute("LOCK TABLE recurrences IN SHARE MODE")  # lets FOR UPDATE and the inserts by, not the UPDATE
    first = workers()

    def stuck() -> bool:
        row = conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE %s AND datname = current_database()",
            ["%UPDATE recurrences r%SET next_at%"],
        ).fetchone()
        return row["n"] > 0

    wait_until(stuck, timeout=30, what="the reconciler to wait mid-creation")
    first.signal(signal.SIGKILL)
    first.wait(10)
    blocker.rollback()
    blocker.close()
    wait_until(lambda: not stuck(), timeout=30, what="the killed transaction to end")
    assert occurrence_rows(conn, rec.id) == []  # rolled back: no half-made occurrence
    workers()
    wait_until(lambda: len(occurrence_rows(conn, rec.id)) >= 10, timeout=30, what="the next worker to create them")
    rows = occurrence_rows(conn, rec.id)
    assert len({r["occurrence_at"] for r in rows}) == len(rows)
    assert all(r["job_id"] is not None for r in rows)
    assert recurrences.get(conn, personal_scope(conn, owner.id), rec.id).made == len(rows)


def test_occurrences_go_through_retries_and_rate_limits_as_one_off_mail(
    conn: Conn, owner: User, env: dict[str, str], sink: Sink, workers: Any
) -> None:
    """An occurrence is an ordinary email to the send path: a temporary refusal is retried, and
    the owner's rate limit (every attempt takes a slot, as at a provider) holds what exceeds it;
    both on the timeline."""
    fast = {"RECURRENCE_TIME_SCALE": "20", "USER_RATE_LIMIT": "2/hour"}
    settings = config.load(env | fast)
    # Created on the workers' clock (a rule minute is 3 s), not at the next real minute.
    recurrence_rules.set_time_scale(20)
    try:
        create(conn, owner, settings, count=1, subject="first")
        create(conn, owner, settings, count=1, subject="second")
    finally:
        recurrence_rules.set_time_scale(1)
    sink.data_replies.append("451 4.3.0 Try again later")
    workers(extra_env=fast)

    def settled() -> list[dict[str, Any]] | None:
        rows = conn.execute(
            "SELECT id, status, waiting_reason FROM emails WHERE recurrence_id IS NOT NULL ORDER BY status"
        ).fetchall()
        shape = [(r["status"], r["waiting_reason"]) for r in rows]
        return rows if shape == [("scheduled", "waiting for a rate-limit slot"), ("sent", None)] else None

    wait_until(settled, timeout=30, what="one occurrence sent and the other held by the rate limit")
    events = conn.execute("SELECT kind, detail FROM email_events ORDER BY at, id").fetchall()
    retried = [e["detail"] for e in events if e["kind"] == "retry_scheduled"]
    limited = [e["detail"] for e in events if e["kind"] == "rate_limited"]
    assert len(retried) == 1 and "451 4.3.0" in retried[0]["error"]
    assert limited and all(d["limit"] == "user: 2/hour" for d in limited)
    assert len(sink.messages) == 1
