"""The monitor's alerts, one round at a time: real PostgreSQL and Redis, a real HTTP
server standing in for Slack's incoming webhook (driven by slack_sdk's client).

Each test runs ``Monitor.round()`` in this process after making a condition true
or false the way the system would (a breaker's own statements, an email's status
moves through the trigger-guarded transitions), and looks at what Slack received
and what PostgreSQL recorded. The monitor as processes (several, one killed) is
tests/integration/test_monitor_processes.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scripts.services import free_port
from tasks.core import config, crypto, db
from tasks.core.config import Settings
from tasks.domain import emails, org_settings, orgs
from tasks.domain.models import User
from tasks.ops import alerts, monitor, slack
from tests.support.servers import PrivateRedis
from tests.support.slack_receiver import SlackReceiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[SlackReceiver]:
    server = SlackReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def slack_env(env: dict[str, str], receiver: SlackReceiver) -> dict[str, str]:
    receiver.clear()
    receiver.fail_with = None
    return env | {
        "SLACK_WEBHOOK_URL": receiver.url(),
        "MONITOR_INTERVAL": "0.2",
        "ALERT_UNREACHABLE_AFTER": "0",
        "ALERT_MIN_INTERVAL": "0",
        "ALERT_QUEUE_LAG": "60",
    }


@pytest.fixture
def make_monitor(slack_env: dict[str, str]) -> Iterator[Callable[..., monitor.Monitor]]:
    made: list[monitor.Monitor] = []

    def make(**overrides: str) -> monitor.Monitor:
        m = monitor.Monitor(config.load(slack_env | overrides), name=f"test-{len(made)}", grace=0)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def keys(sent: list[tuple[alerts.Episode, str]]) -> list[tuple[str, str]]:
    return [(e.key, event) for e, event in sent]


def open_breaker(conn: db.Conn, label: str, error: str = "connection refused") -> None:
    """What a worker writes when a provider fails BREAKER_THRESHOLD times in a row (here: once)."""
    db.run(conn, "ensure_breakers", labels=[label])
    db.one(conn, "breaker_failure", label=label, trial=None, threshold=1, cooldown=60, error=error)


def close_breaker(conn: db.Conn, label: str) -> None:
    """What a worker writes when the breaker's trial send works (the cool-down cut short first)."""
    db.all_rows(conn, "breaker_trial_now", labels=[label])
    assert db.one(conn, "breaker_trial", label=label, token=uuid.uuid4(), worker="test", stale_after=60)
    assert db.one(conn, "breaker_success", label=label)


def scheduled(conn: db.Conn, owner: User, settings: Settings, make_draft: Callable[..., Any]) -> uuid.UUID:
    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)
    return email.id


def to_status(conn: db.Conn, email_id: uuid.UUID, status: str) -> None:
    """Move a scheduled email through ``sending`` to ``status`` (the trigger checks each step)."""
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", (email_id,))
    extra = {"offline": ", offline_at = now()", "uncertain": ", data_started_at = now()"}.get(status, "")
    conn.execute(f"UPDATE emails SET status = %s{extra} WHERE id = %s", (status, email_id))  # noqa: S608 - fixed text


def test_a_breaker_is_raised_once_and_resolved_once(
    make_monitor: Callable[..., monitor.Monitor], receiver: SlackReceiver, conn: db.Conn
) -> None:
    m = make_monitor()
    m.round()  # no worker: raised, and nothing else
    open_breaker(conn, "smtp")

    first = m.round()
    again = m.round()
    close_breaker(conn, "smtp")
    resolved = m.round()
    after = m.round()

    assert keys(first) == [("breaker:smtp", "raised")]
    assert again == [] and after == []
    assert keys(resolved) == [("breaker:smtp", "resolved")]
    posted = receiver.matching(key="breaker:smtp")
    assert [p.event for p in posted] == ["raised", "resolved"]
    assert "connection refused" in posted[0].text and "What to do" in posted[0].text
    assert "Since " in posted[0].text and "Emails affected: 0." in posted[0].text
    row = conn.execute("SELECT * FROM alerts WHERE key = 'breaker:smtp'").fetchall()
    assert len(row) == 1 and row[0]["raised_at"] and row[0]["resolved_posted"] and row[0]["kind"] == "breaker"


def test_no_worker_alive_says_since_when_and_how_many_wait(
    make_monitor: Callable[..., monitor.Monitor],
    receiver: SlackReceiver,
    conn: db.Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    workers: Any,
) -> None:
    email_id = scheduled(conn, owner, settings, make_draft)
    conn.execute("UPDATE emails SET next_attempt_at = now() - interval '1 second' WHERE id = %s", (email_id,))
    m = make_monitor()

    assert ("no_worker", "raised") in keys(m.round())
    message = receiver.matching(key="no_worker")[0]
    assert "none did" in message.text and "Emails affected: 1." in message.text
    assert "python -m tasks worker" in message.text

    workers()
    assert ("no_worker", "resolved") in keys(m.round())
    assert [p.event for p in receiver.matching(key="no_worker")] == ["raised", "resolved"]


def test_a_monitor_just_started_gives_workers_time_to_register_and_leaves_an_open_alert_be(
    make_monitor: Callable[..., monitor.Monitor], slack_env: dict[str, str], receiver: SlackReceiver, conn: db.Conn
) -> None:
    first = make_monitor()
    assert ("no_worker", "raised") in keys(first.round())
    first.close()  # its lock goes with its session

    starting = monitor.Monitor(config.load(slack_env), name="starting")  # default grace: WORKER_STALLED_AFTER
    try:
        assert starting.round() == [] and starting.leader
    finally:
        starting.close()

    assert conn.execute("SELECT resolved_at FROM alerts WHERE key = 'no_worker'").fetchone() == {"resolved_at": None}
    assert [m.event for m in receiver.matching(key="no_worker")] == ["raised"]


def test_the_queue_lag_the_offline_log_and_uncertain_emails(
    make_monitor: Callable[..., monitor.Monitor],
    receiver: SlackReceiver,
    conn: db.Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
) -> None:
    late, offline, unsure, unsure2 = (scheduled(conn, owner, settings, make_draft) for _ in range(4))
    conn.execute("UPDATE emails SET next_attempt_at = now() - interval '90 seconds' WHERE id = %s", (late,))
    to_status(conn, offline, "offline")
    to_status(conn, unsure, "uncertain")
    m = make_monitor()

    sent = dict(keys(m.round()))

    assert sent["queue_lag"] == sent["offline"] == sent["uncertain"] == "raised"
    lag = receiver.matching(key="queue_lag")[0].text
    assert "1 email(s) were due more than ALERT_QUEUE_LAG (60 s)" in lag and "Emails affected: 1." in lag
    assert "replay-offline" in receiver.matching(key="offline")[0].text
    # A new uncertain email while the alert is raised: "more", once.
    to_status(conn, unsure2, "uncertain")
    assert ("uncertain", "more") in keys(m.round())
    assert "Emails affected: 2." in receiver.matching(key="uncertain", event="more")[0].text
    assert ("uncertain", "more") not in keys(m.round())
    # Dealt with: each resolved once.
    conn.execute("UPDATE emails SET next_attempt_at = now() + interval '1 hour' WHERE id = %s", (late,))
    conn.execute("UPDATE emails SET status = 'cancelled' WHERE id = %s", (offline,))
    conn.execute("UPDATE emails SET status = 'failed' WHERE id = ANY(%s)", ([unsure, unsure2],))
    resolved = dict(keys(m.round()))
    assert resolved["queue_lag"] == resolved["offline"] == resolved["uncertain"] == "resolved"


def test_a_flapping_breaker_posts_at_most_once_per_interval_and_keeps_count(
    make_monitor: Callable[..., monitor.Monitor], receiver: SlackReceiver, conn: db.Conn
) -> None:
    m = make_monitor(ALERT_MIN_INTERVAL="3600")
    m.round()
    open_breaker(conn, "smtp")
    assert keys(m.round()) == [("breaker:smtp", "raised")]
    close_breaker(conn, "smtp")
    assert keys(m.round()) == [("breaker:smtp", "resolved")]

    for _ in range(5):  # back and gone again, five times, within the interval
        open_breaker(conn, "smtp")
        assert m.round() == []
        close_breaker(conn, "smtp")
        assert m.round() == []

    assert [p.event for p in receiver.matching(key="breaker:smtp")] == ["raised", "resolved"]
    rows = conn.execute("SELECT * FROM alerts WHERE key = 'breaker:smtp' ORDER BY id").fetchall()
    assert len(rows) == 2  # the announced episode, and one held back that flapped
    held = alerts.Episode.from_row(rows[1])
    assert held.raised_at is None and held.flaps == 4 and held.state == "cleared"
    # When the interval is over and it is still true, it is raised (once).
    conn.execute("UPDATE alerts SET posted_at = posted_at - interval '2 hours'")
    open_breaker(conn, "smtp")
    assert keys(m.round()) == [("breaker:smtp", "raised")]


def test_slack_down_the_message_waits_and_goes_when_slack_is_back(
    make_monitor: Callable[..., monitor.Monitor], receiver: SlackReceiver, conn: db.Conn
) -> None:
    m = make_monitor()
    receiver.fail_with = 503
    open_breaker(conn, "smtp")

    assert "breaker:smtp" not in dict(keys(m.round()))
    assert conn.execute("SELECT raised_at FROM alerts WHERE key = 'breaker:smtp'").fetchone() == {"raised_at": None}

    receiver.fail_with = None
    assert ("breaker:smtp", "raised") in keys(m.round())
    assert len(receiver.matching(key="breaker:smtp")) == 1


def test_an_organizations_failures_go_to_its_own_webhook(
    make_monitor: Callable[..., monitor.Monitor],
    receiver: SlackReceiver,
    conn: db.Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
) -> None:
    org_id = orgs.personal_org_id(conn, owner.id)
    hook = receiver.url("T111/B111/org")
    org_settings.set_slack_webhook(conn, settings, org_id, owner.id, hook)
    stored = conn.execute("SELECT * FROM org_settings WHERE org_id = %s", (org_id,)).fetchone()
    assert stored is not None and hook not in str(stored) and stored["slack_webhook_masked"].endswith("/****")
    assert crypto.Box(settings).decrypt(stored["slack_webhook_secret"].encode()) == hook
    unsure = scheduled(conn, owner, settings, make_draft)
    to_status(conn, unsure, "uncertain")
    open_breaker(conn, f"o{org_id}.own")
    m = make_monitor()

    sent = dict(keys(m.round()))

    assert sent[f"uncertain:org:{org_id}"] == sent[f"breaker:o{org_id}.own"] == sent["uncertain"] == "raised"
    ours = {m.alert_key for m in receiver.matching(path="/services/T111/B111/org")}
    assert ours == {f"uncertain:org:{org_id}", f"breaker:o{org_id}.own"}
    operators = {m.alert_key for m in receiver.matching(path="/services/T000/B000/operators")}
    assert "uncertain" in operators and f"breaker:o{org_id}.own" not in operators


def test_redis_unreachable_is_raised_and_resolved(
    make_monitor: Callable[..., monitor.Monitor], receiver: SlackReceiver
) -> None:
    redis_server = PrivateRedis().start()
    try:
        m = make_monitor(REDIS_URL=redis_server.url)
        assert "redis_unreachable" not in dict(keys(m.round()))
        redis_server.kill()
        assert ("redis_unreachable", "raised") in keys(m.round())
        redis_server.start()
        assert ("redis_unreachable", "resolved") in keys(m.round())
    finally:
        redis_server.destroy()


def test_postgres_lost_by_the_active_monitor_is_posted_from_memory_then_recorded(
    make_monitor: Callable[..., monitor.Monitor], receiver: SlackReceiver, database_url: str, conn: db.Conn
) -> None:
    m, standby = make_monitor(), make_monitor()
    m.round()
    standby.round()
    assert m.leader and not standby.leader
    dbname = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with db.connect(admin) as server:
        # The database refuses new connections and the monitor's are cut: unreachable, for it.
        server.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'reachdbox-monitor'",
            (dbname,),
        )
        try:
            raised = keys(m.round())
            assert raised == [("postgres_unreachable", "raised")]
            assert standby.round() == []  # the one that was active speaks, the other stays quiet
            assert "Emails affected: unknown" in receiver.matching(key="postgres_unreachable")[0].text
            assert m.round() == [] and standby.round() == []
        finally:
            server.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')

    assert ("postgres_unreachable", "resolved") in keys(m.round())
    assert standby.round() == []
    with db.connect(database_url) as fresh:
        rows = fresh.execute("SELECT * FROM alerts WHERE key = 'postgres_unreachable'").fetchall()
    assert len(rows) == 1 and rows[0]["raised_at"] and rows[0]["resolved_posted"]
    assert [p.event for p in receiver.matching(key="postgres_unreachable")] == ["raised", "resolved"]


def test_a_monitor_that_never_reached_postgres_speaks_if_it_holds_the_redis_lock(
    make_monitor: Callable[..., monitor.Monitor], receiver: SlackReceiver, env: dict[str, str]
) -> None:
    bad = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    first, second = make_monitor(DATABASE_URL=bad), make_monitor(DATABASE_URL=bad)

    assert keys(first.round()) == [("postgres_unreachable", "raised")]
    assert second.round() == []  # the other one holds the lock in Redis: one message
    assert len(receiver.matching(key="postgres_unreachable")) == 1


def test_the_webhooks_url_is_never_logged_even_at_debug(
    receiver: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = receiver.url("T7/B7/sEcReTpArT")

    slack.post(hook, "hello")
    with pytest.raises(slack.SlackError) as refused:
        slack.post(hook.replace("sEcReTpArT", "wrong"), "hello")

    assert receiver.matching(path="/services/T7/B7/sEcReTpArT")
    assert "sEcReT" not in caplog.text and "sEcReT" not in refused.value.message


def test_post_refuses_what_slack_did_not_take(receiver: SlackReceiver) -> None:
    with pytest.raises(slack.SlackError, match="404: no_service"):
        slack.post(f"http://127.0.0.1:{receiver.port}/services/unknown", "hello")
    slack.post(receiver.url("T9/B9/x"), "hello", [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}])
    assert receiver.matching(path="/services/T9/B9/x")[0].body["blocks"][0]["text"]["text"] == "hi"


def test_post_async_posts_and_refuses_like_post(receiver: SlackReceiver) -> None:
    asyncio.run(slack.post_async(receiver.url("T8/B8/a"), "from asyncio"))
    with pytest.raises(slack.SlackError, match="404: no_service"):
        asyncio.run(slack.post_async(f"http://127.0.0.1:{receiver.port}/services/unknown", "hello"))
    with pytest.raises(slack.SlackError, match="cannot reach Slack"):
        asyncio.run(slack.post_async(f"http://127.0.0.1:{free_port()}/services/T/B/x", "hello"))

    assert [m.text for m in receiver.matching(path="/services/T8/B8/a")] == ["from asyncio"]


def test_the_message_says_what_since_when_how_many_and_what_to_do() -> None:
    since = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    episode = alerts.Episode(
        key="queue_lag",
        kind="queue_lag",
        org_id=None,
        summary="3 email(s) were due",
        action="Add workers.",
        affected=3,
        since=since,
        last_seen_at=since,
    )

    text, blocks = alerts.message(episode, "raised", now=since, where="Reach D. Box")
    done, _ = alerts.message(episode, "resolved", now=since + dt.timedelta(seconds=200), where="Reach D. Box")

    assert text.startswith(":rotating_light: Raised: Due emails are not being claimed")
    assert "Since 2026-01-02 03:04:05 UTC. Emails affected: 3." in text and "Add workers." in text
    assert blocks[-1]["elements"][0]["text"].endswith("alert `queue_lag`")
    assert "after 3 min 20 s" in done
