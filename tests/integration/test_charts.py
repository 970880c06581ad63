"""The charts' data: per-minute counts, lateness percentiles, queue depth and rate-limit
waits for operators; each user's own sent and failed per day. Seeded events at known
times, read back through the JSON endpoints, before and after the rollup runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from procrastinate import JobContext
from procrastinate import jobs as procrastinate_jobs
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.core.config import Settings
from tasks.delivery.runtime import Runtime
from tasks.domain import models, orgs
from tasks.ops import charts
from tasks.queue.app import app
from tasks.queue.charts import chart_rollup
from tests.support.web import make_app


@pytest.fixture
def operator_app(web_env: dict[str, str]) -> Iterator[Flask]:
    app = make_app(web_env | {"OPERATOR_EMAILS": "ops@example.com"})
    yield app
    app.extensions["reachdbox"].close()


@pytest.fixture
def ops_client(operator_app: Flask, sign_in: Callable[..., Any]) -> FlaskClient:
    client = operator_app.test_client()
    sign_in(client, "ops@example.com")
    return client


def rollup(database_url: str, **kwargs: Any) -> dict[str, Any]:
    """Run the periodic task's body once, as a worker would."""

    async def go() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as c:
            return await charts.rollup(c, **kwargs)

    return asyncio.run(go())


def now_minute(conn: db.Conn) -> dt.datetime:
    row = conn.execute("SELECT date_trunc('minute', now()) AS m").fetchone()
    assert row is not None
    minute: dt.datetime = row["m"]
    return minute


def user(conn: db.Conn, email: str) -> int:
    row = conn.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", [email]).fetchone()
    assert row is not None
    return int(row["id"])


def email(conn: db.Conn, owner_id: int, **columns: Any) -> uuid.UUID:
    """Insert one email row (scheduled far ahead unless told otherwise)."""
    email_id = uuid.uuid4()
    values: dict[str, Any] = {
        "id": email_id,
        "owner_id": owner_id,
        "from_addr": "noreply@example.com",
        "to_addrs": ["bob@example.com"],
        "subject": "s",
        "body_text": "b",
        "send_at": dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        "next_attempt_at": dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        "message_id": f"<{uuid.uuid4()}@test>",
    } | columns
    if "org_id" not in values:
        org = conn.execute("SELECT org_id FROM memberships WHERE user_id = %s", [values["owner_id"]]).fetchone()
        assert org is not None
        values["org_id"] = org["org_id"]
    names = ", ".join(values)
    marks = ", ".join(f"%({k})s" for k in values)
    conn.execute(f"INSERT INTO emails ({names}) VALUES ({marks})", values)  # our column names, never input
    return email_id


def event(conn: db.Conn, email_id: uuid.UUID, kind: str, at: dt.datetime, **detail: Any) -> None:
    conn.execute(
        "INSERT INTO email_events (org_id, email_id, kind, at, detail)"
        " SELECT org_id, id, %s, %s, %s FROM emails WHERE id = %s",
        [kind, at, Jsonb(detail), email_id],
    )


def at_minute(data: dict[str, Any], minute: dt.datetime) -> int:
    """The index of ``minute`` on the chart's time axis."""
    index: int = data["t"].index(int(minute.timestamp()))
    return index


@pytest.fixture
def seeded(conn: db.Conn) -> dict[str, Any]:
    """Events in a minute five minutes ago, in the current minute, and three hours ago."""
    m = now_minute(conn)
    owner = user(conn, "alice@example.com")
    e = email(conn, owner)
    old = m - dt.timedelta(minutes=5)
    for i in range(3):
        event(conn, e, "sent", old + dt.timedelta(seconds=i), transport="primary")
    event(conn, e, "failed", old + dt.timedelta(seconds=5), transport="primary")
    event(conn, e, "retry_scheduled", old + dt.timedelta(seconds=6), transport="primary")
    event(conn, e, "recovered", old + dt.timedelta(seconds=7))
    # 100 claims late by 1..100 ms: p50 = 50.5, p99 = 99.01 (percentile_cont).
    for late in range(1, 101):
        event(conn, e, "claimed", old + dt.timedelta(milliseconds=10 * late), attempt=1, late_ms=late)
    for _ in range(4):
        event(conn, e, "rate_limited", old + dt.timedelta(seconds=20), transport="primary")
    event(conn, e, "rate_limited", old + dt.timedelta(seconds=21), transport="backup")
    event(conn, e, "scheduled", old + dt.timedelta(seconds=30))  # not charted
    event(conn, e, "sent", m + dt.timedelta(seconds=1), transport="primary")  # the current minute
    event(conn, e, "sent", m - dt.timedelta(hours=3), transport="primary")  # in 24h only
    return {"minute": m, "old": old}


def check_seeded(data: dict[str, Any], seeded: dict[str, Any]) -> None:
    i, s = at_minute(data, seeded["old"]), data["series"]
    assert (s["sent"][i], s["failed"][i], s["retried"][i]) == (3, 1, 2)
    assert (s["late_p50_ms"][i], s["late_p99_ms"][i]) == (50.5, 99.0)
    assert data["rate_limited"]["primary"][i] == 4 and data["rate_limited"]["backup"][i] == 1
    now = at_minute(data, seeded["minute"])
    assert s["sent"][now] == 1
    assert s["late_p50_ms"][now] is None  # no claim that minute: a gap, not a zero
    assert sum(s["sent"]) == data["totals"]["sent"]


def test_operators_get_per_minute_counts_lateness_and_waits_before_and_after_the_rollup(
    ops_client: FlaskClient, database_url: str, seeded: dict[str, Any], conn: db.Conn
) -> None:
    """Read from email_events alone, then from the rollup plus the current minute: the same answer."""
    before = ops_client.get("/operators/charts.json?range=1h").get_json()
    assert before["rolled_until"] is None
    check_seeded(before, seeded)
    assert len(before["t"]) == 60 and before["t"][-1] == int(seeded["minute"].timestamp())
    assert before["totals"] == {"sent": 4, "failed": 1, "retried": 2, "rate_limited": 5, "sent_late_over_1m": 0}

    rollup(database_url)
    # The rollup now answers for the minutes before the watermark: deleting their
    # events (as `prune` may) leaves the chart as it was.
    conn.execute("DELETE FROM email_events WHERE at < %s", [seeded["minute"]])
    after = ops_client.get("/operators/charts.json?range=1h").get_json()

    assert after["rolled_until"] is not None
    check_seeded(after, seeded)
    if after["t"] == before["t"]:  # (unless a minute turned in between)
        events = ("sent", "failed", "retried", "late_p50_ms", "late_p99_ms")
        assert {k: after["series"][k] for k in events} == {k: before["series"][k] for k in events}
        assert after["rate_limited"] == before["rate_limited"]
    assert after["totals"] == before["totals"]


def test_the_24_hour_range_reaches_three_hours_back(ops_client: FlaskClient, seeded: dict[str, Any]) -> None:
    data = ops_client.get("/operators/charts.json?range=24h").get_json()

    assert len(data["t"]) == 24 * 60
    assert data["series"]["sent"][at_minute(data, seeded["minute"] - dt.timedelta(hours=3))] == 1
    assert data["totals"]["sent"] == 5
    check_seeded(data, seeded)


def test_the_queue_depth_is_sampled_each_run(ops_client: FlaskClient, database_url: str, conn: db.Conn) -> None:
    owner = user(conn, "alice@example.com")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    for _ in range(2):
        email(conn, owner, next_attempt_at=past, send_at=past)  # due, waiting for a worker
    email(conn, owner, next_attempt_at=soon, waiting_reason="waiting for a rate-limit slot")  # within the hour
    email(conn, owner, next_attempt_at=soon, send_at=soon)  # within the hour
    email(conn, owner)  # in 2031: not in the queue's depth yet
    email(conn, owner, status="sending", job_id=1, attempts=1)
    email(conn, owner, status="cancelled")

    rollup(database_url)
    data = ops_client.get("/operators/charts.json?range=1h").get_json()

    s = data["series"]
    minute = at_minute(data, now_minute(conn))
    latest = max(i for i, v in enumerate(s["due"]) if v is not None)
    assert latest >= minute - 1  # the sample's minute (or the one before, should a minute turn)
    assert (s["due"][latest], s["waiting"][latest], s["sending"][latest]) == (2, 2, 1)
    assert s["due"][: latest - 1] == [None] * (latest - 1)  # no samples before: gaps


def test_a_run_recounts_the_last_minutes_so_a_late_commit_is_counted_once(database_url: str, conn: db.Conn) -> None:
    owner = user(conn, "alice@example.com")
    e = email(conn, owner)
    m = now_minute(conn)
    event(conn, e, "sent", m - dt.timedelta(minutes=1, seconds=-5))
    rollup(database_url)
    rollup(database_url)  # again: nothing added twice
    # Committed after the first run although its time is in a minute already counted.
    event(conn, e, "sent", m - dt.timedelta(minutes=1, seconds=-6))
    rollup(database_url)

    rows = conn.execute("SELECT minute, sent FROM chart_minutes").fetchall()
    assert rows == [{"minute": m - dt.timedelta(minutes=1), "sent": 2}]


def test_the_first_run_catches_up_in_chunks_and_old_rows_are_pruned(database_url: str, conn: db.Conn) -> None:
    owner = user(conn, "alice@example.com")
    e = email(conn, owner)
    m = now_minute(conn)
    event(conn, e, "sent", m - dt.timedelta(days=3))
    event(conn, e, "sent", m - dt.timedelta(days=20))  # older than any chart
    conn.execute(
        "INSERT INTO chart_minutes (minute, sent, failed, retried, claims) VALUES (%s, 7, 0, 0, 0)",
        [m - dt.timedelta(days=30)],
    )

    done = rollup(database_url)

    rows = conn.execute("SELECT minute, sent FROM chart_minutes ORDER BY minute").fetchall()
    assert rows == [{"minute": m - dt.timedelta(days=3), "sent": 1}]
    assert done["rolled_until"] is not None
    assert conn.execute("SELECT rolled_until FROM chart_rollup").fetchone()["rolled_until"] >= m


def test_bad_ranges_are_refused_naming_the_field_and_only_operators_see_the_charts(
    ops_client: FlaskClient, operator_app: Flask, sign_in: Callable[..., Any]
) -> None:
    bad = ops_client.get("/operators/charts.json?range=7d")
    assert bad.status_code == 422
    assert bad.get_json()["error"]["field"] == "range"

    alice = operator_app.test_client()
    sign_in(alice, "alice@example.com")
    assert alice.get("/operators/charts.json?range=1h").status_code == 404
    visitor = operator_app.test_client()
    assert visitor.get("/operators/charts.json", headers={"Accept": "application/json"}).status_code == 401


def test_a_users_chart_counts_their_own_mail_per_local_day_and_never_anothers(
    client: FlaskClient, sign_in: Callable[..., Any], database_url: str, conn: db.Conn
) -> None:
    alice = sign_in(client, "alice@example.com")
    bob = user(conn, "bob@example.com")
    mine, theirs = email(conn, alice.id), email(conn, bob)
    today = dt.datetime.now(dt.UTC).astimezone(charts.zone("Asia/Tokyo")).date()
    tokyo_midnight = dt.datetime.combine(today, dt.time(), tzinfo=charts.zone("Asia/Tokyo"))
    # 30 minutes before Tokyo's midnight today: yesterday there, but today in UTC for most hours.
    event(conn, mine, "sent", tokyo_midnight - dt.timedelta(minutes=30))
    event(conn, mine, "sent", tokyo_midnight - dt.timedelta(days=2))
    event(conn, mine, "failed", tokyo_midnight - dt.timedelta(days=2))
    event(conn, mine, "sent", tokyo_midnight - dt.timedelta(days=9))  # older than 7 days
    event(conn, mine, "scheduled", tokyo_midnight - dt.timedelta(days=1))  # not charted
    for _ in range(5):
        event(conn, theirs, "sent", tokyo_midnight - dt.timedelta(minutes=30))
    event(conn, theirs, "failed", tokyo_midnight - dt.timedelta(days=2))

    before = client.get("/charts/mine.json?tz=Asia/Tokyo").get_json()
    rollup(database_url)
    after = client.get("/charts/mine.json?tz=Asia/Tokyo").get_json()

    for data in (before, after):
        assert data["days"][-1] == today.isoformat() and len(data["days"]) == 7
        assert data["series"]["sent"] == [0, 0, 0, 0, 1, 1, 0]
        assert data["series"]["failed"] == [0, 0, 0, 0, 1, 0, 0]
        assert data["totals"] == {"sent": 2, "failed": 1}
    bobs = charts.owner_days(conn, orgs.personal_org_id(conn, bob), bob, "Asia/Tokyo")
    assert bobs["totals"] == {"sent": 5, "failed": 1}


def test_a_users_chart_reads_new_events_only_when_the_rollup_is_behind(database_url: str, conn: db.Conn) -> None:
    """Every dashboard asks for it, so while the rollup is current it costs the same at a peak of sends."""
    owner = user(conn, "alice@example.com")
    e = email(conn, owner)
    event(conn, e, "sent", now_minute(conn) - dt.timedelta(minutes=10))
    rollup(database_url)
    event(conn, e, "sent", dt.datetime.now(dt.UTC))

    assert (
        charts.owner_days(conn, orgs.personal_org_id(conn, owner), owner, "UTC")["totals"]["sent"] == 1
    )  # the next run counts it

    conn.execute("UPDATE chart_rollup SET rolled_until = rolled_until - interval '5 minutes'")  # no worker ran
    assert charts.owner_days(conn, orgs.personal_org_id(conn, owner), owner, "UTC")["totals"]["sent"] == 2


def test_a_users_chart_refuses_an_unknown_zone_and_a_visitor(client: FlaskClient, sign_in: Callable[..., Any]) -> None:
    assert client.get("/charts/mine.json", headers={"Accept": "application/json"}).status_code == 401
    sign_in(client, "alice@example.com")

    bad = client.get("/charts/mine.json?tz=Mars/Olympus_Mons")

    assert bad.status_code == 422
    assert bad.get_json()["error"] == {
        "code": "invalid",
        "message": "unknown time zone 'Mars/Olympus_Mons'",
        "field": "tz",
    }
    assert client.get("/charts/mine.json").get_json()["tz"] == "UTC"


def test_the_pages_carry_the_charts(ops_client: FlaskClient, client: FlaskClient, sign_in: Callable[..., Any]) -> None:
    page = ops_client.get("/operators?range=24h").get_data(as_text=True)
    assert 'data-charts-src="/operators/charts.json"' in page and 'data-range="24h"' in page
    assert "vendor/uplot-1.6.32/uPlot.iife.min.js" in page
    assert 'data-range="1h"' in ops_client.get("/operators?range=nonsense").get_data(as_text=True)
    sign_in(client, "alice@example.com")
    assert 'data-my-chart-src="/charts/mine.json"' in client.get("/").get_data(as_text=True)


def test_the_periodic_task_runs_the_rollup_on_the_workers_pool(
    conn: db.Conn, database_url: str, settings: Settings
) -> None:
    """The task's own body with a worker's context (its pool, its Runtime), as a worker runs it every minute."""
    owner = user(conn, "alice@example.com")
    event(conn, email(conn, owner), "sent", now_minute(conn) - dt.timedelta(minutes=3))

    async def run_task() -> dict[str, Any]:
        pool = db.async_pool(database_url, size=2)
        await pool.open(wait=True)
        rt = Runtime.create(settings, pool, worker_name="test")
        try:
            context = JobContext(
                app=app,
                job=procrastinate_jobs.Job(id=1, queue="maintenance", lock=None, queueing_lock=None, task_name="x"),
                start_timestamp=time.time(),
                additional_context={"runtime": rt},
                abort_reason=lambda: None,
            )
            return await chart_rollup(context, timestamp=int(time.time()))
        finally:
            await rt.close()
            await pool.close()

    done = asyncio.run(run_task())

    assert done["rows"] == 1 and done["depth"] == {"due": 0, "waiting": 0, "sending": 0}
    assert conn.execute("SELECT sum(sent) AS n FROM chart_minutes").fetchone() == {"n": 1}
    assert chart_rollup.name in {p.task.name for p in app.periodic_registry.periodic_tasks.values()}


# ---- Sent lateness: the sent event's time minus the email's send_at ----------------------------


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def sent_late(conn: db.Conn, owner_id: int, org_id: int, at: dt.datetime, late: dt.timedelta) -> None:
    """An email of ``owner_id`` in ``org_id`` scheduled for ``at - late`` and sent at ``at``."""
    e = email(conn, owner_id, org_id=org_id, send_at=at - late, next_attempt_at=at - late, status="sent", sent_at=at)
    event(conn, e, "sent", at, attempt=1, transport="primary")


@pytest.fixture
def lateness_seeded(conn: db.Conn, sign_in: Callable[..., Any], client: FlaskClient) -> dict[str, Any]:
    """Five minutes ago: Alice's 100 emails sent 1..100 s late, her teammate Bob's two sent
    200 and 300 s late, Carol's (another organization) one 1,000 s late; and in the current
    minute one of Alice's, 90 s late."""
    m = now_minute(conn)
    old = m - dt.timedelta(minutes=5)
    alice = sign_in(client, "alice@example.com").id
    team = orgs.personal_org_id(conn, alice)
    bob, carol = user(conn, "bob@example.com"), user(conn, "carol@example.com")
    conn.execute("INSERT INTO memberships (org_id, user_id, role) VALUES (%s, %s, 'member')", [team, bob])
    for k in range(1, 101):
        sent_late(conn, alice, team, old + dt.timedelta(milliseconds=100 * k), dt.timedelta(seconds=k))
    for k in (200, 300):
        sent_late(conn, bob, team, old + dt.timedelta(seconds=20), dt.timedelta(seconds=k))
    sent_late(
        conn, carol, orgs.personal_org_id(conn, carol), old + dt.timedelta(seconds=30), dt.timedelta(seconds=1000)
    )
    sent_late(conn, alice, team, m + dt.timedelta(seconds=1), dt.timedelta(seconds=90))
    return {"minute": m, "old": old, "team": team, "alice": alice, "bob": bob, "carol": carol}


def lateness_at(data: dict[str, Any], minute: dt.datetime, *names: str) -> tuple[Any, ...]:
    i = at_minute(data, minute)
    return tuple(data["series"][name][i] for name in names)


def check_lateness(
    ops: dict[str, Any], alices: dict[str, Any], teams: dict[str, Any], seeded: dict[str, Any], *, now_read: bool
) -> None:
    """The seeded minutes; the current one only if ``now_read`` (the latest events read)."""
    old, now, n = seeded["old"], seeded["minute"], int(now_read)
    everyone = [1000.0 * k for k in range(1, 101)] + [200_000.0, 300_000.0, 1_000_000.0]
    expected_ops = tuple(round(percentile_cont(everyone, f), 1) for f in (0.5, 0.95, 0.99)) + (40 + 3,)
    ops_names = ("sent_late_p50_ms", "sent_late_p95_ms", "sent_late_p99_ms", "sent_late_over_1m")
    assert lateness_at(ops, old, *ops_names) == expected_ops
    assert lateness_at(ops, now, *ops_names) == (
        (90_000.0, 90_000.0, 90_000.0, 1) if now_read else (None, None, None, 0)
    )
    assert ops["totals"]["sent_late_over_1m"] == 43 + n

    names = ("sent", "p50_ms", "p95_ms", "p99_ms", "over_1m")
    # 1..100 s: p50 50.5 s, p95 95.05 s, p99 99.01 s (percentile_cont); 61..100 s are over a minute (60 s is not).
    assert lateness_at(alices, old, *names) == (100, 50_500.0, 95_050.0, 99_010.0, 40)
    assert lateness_at(alices, now, *names) == (
        (1, 90_000.0, 90_000.0, 90_000.0, 1) if now_read else (0, None, None, None, 0)
    )
    assert alices["totals"] == {"sent": 100 + n, "over_1m": 40 + n} and alices["mine"] is True
    team = [1000.0 * k for k in range(1, 101)] + [200_000.0, 300_000.0]
    assert lateness_at(teams, old, *names) == (
        102,
        *(round(percentile_cont(team, f), 1) for f in (0.5, 0.95, 0.99)),
        42,
    )  # Carol's, in another organization, is not there
    assert teams["totals"] == {"sent": 102 + n, "over_1m": 42 + n} and teams["mine"] is False
    quiet = at_minute(alices, old) - 1
    assert alices["series"]["sent"][quiet] == 0 and alices["series"]["p50_ms"][quiet] is None  # a gap, not a zero


def test_sent_lateness_percentiles_per_minute_for_operators_an_organization_and_a_user(
    ops_client: FlaskClient, client: FlaskClient, database_url: str, conn: db.Conn, lateness_seeded: dict[str, Any]
) -> None:
    """Exact p50/p95/p99 and the count over a minute, read from the events alone; from the
    rollup alone while it is current (the current minute waits for the next run); from the
    rollup plus the latest events when it is behind. The rolled-up minutes' events are
    deleted (as prune may): the rollup answers for them."""
    answers = []
    for step in ("events", "rollup", "behind"):
        if step == "rollup":
            rollup(database_url)
            conn.execute("DELETE FROM email_events WHERE at < %s", [lateness_seeded["minute"]])
        if step == "behind":  # no worker ran for three minutes: the latest events are read again
            conn.execute("UPDATE chart_rollup SET rolled_until = rolled_until - interval '3 minutes'")
        ops = ops_client.get("/operators/charts.json?range=1h").get_json()
        alices = client.get("/charts/lateness.json?range=1h&mine=1").get_json()
        teams = client.get("/charts/lateness.json?range=1h").get_json()
        assert (ops["rolled_until"] is None) == (step == "events") == (alices["rolled_until"] is None)
        check_lateness(ops, alices, teams, lateness_seeded, now_read=step != "rollup")
        answers.append((alices["t"], alices["series"], teams["series"]))
    if answers[0][0] == answers[2][0]:  # (unless a minute turned in between)
        assert answers[0] == answers[2]

    day = client.get("/charts/lateness.json?range=24h&mine=1").get_json()
    assert len(day["t"]) == 24 * 60 and day["totals"] == {"sent": 101, "over_1m": 41}


def test_a_lateness_chart_shows_only_its_scopes_emails(
    conn: db.Conn, database_url: str, lateness_seeded: dict[str, Any]
) -> None:
    """Bob's own (in Alice's team), and Carol's organization: nobody else's emails, before and after the rollup."""
    s = lateness_seeded
    bobs = models.Scope(org_id=s["team"], user_id=s["bob"], mine=True)
    carols = models.Scope(org_id=orgs.personal_org_id(conn, s["carol"]), user_id=s["carol"])
    for _ in range(2):
        bob = charts.lateness(conn, bobs, "1h")
        assert lateness_at(bob, s["old"], "sent", "p50_ms", "p99_ms", "over_1m") == (2, 250_000.0, 299_000.0, 2)
        assert bob["totals"] == {"sent": 2, "over_1m": 2}
        carol = charts.lateness(conn, carols, "1h")
        assert carol["totals"] == {"sent": 1, "over_1m": 1}
        assert lateness_at(carol, s["old"], "p95_ms") == (1_000_000.0,)
        rollup(database_url)
    # The team, Alice, Bob; Carol's organization, Carol.
    assert conn.execute("SELECT count(*) AS n FROM chart_lateness_minutes").fetchone() == {"n": 3 + 2}
    with db.connect(database_url) as web:  # the web app's role: PostgreSQL shows it only its organization's rows
        web.execute("SET ROLE reach_web")
        web.execute("SELECT set_config('app.org_id', %s, false)", (str(s["team"]),))
        rows = web.execute("SELECT org_id, owner_id FROM chart_lateness_minutes ORDER BY owner_id").fetchall()
        assert rows == [{"org_id": s["team"], "owner_id": o} for o in (0, s["alice"], s["bob"])]


def test_the_lateness_endpoint_refuses_bad_parameters_and_visitors(
    client: FlaskClient, ops_client: FlaskClient, sign_in: Callable[..., Any]
) -> None:
    assert client.get("/charts/lateness.json", headers={"Accept": "application/json"}).status_code == 401
    sign_in(client, "alice@example.com")
    for query, field in (("range=7d", "range"), ("mine=yes", "mine")):
        bad = client.get(f"/charts/lateness.json?{query}")
        assert bad.status_code == 422 and bad.get_json()["error"]["field"] == field
    assert client.get("/operators/charts.json?range=1h").status_code == 404  # not an operator
    page = client.get("/lateness?mine=1&range=24h").get_data(as_text=True)
    assert (
        'data-lateness-src="/charts/lateness.json"' in page and 'data-mine="1"' in page and 'data-range="24h"' in page
    )
    assert 'id="view-lateness"' in client.get("/upcoming").get_data(as_text=True)
    assert 'data-chart="sent_lateness"' in ops_client.get("/operators").get_data(as_text=True)
