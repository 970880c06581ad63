"""Provider trouble, end to end: real workers, two real SMTP servers (primary, backup)
and the offline log. Each scripted failure gives its behaviour: retried, failed,
uncertain, or counted by the breaker until the chain falls through."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tasks.core import db
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models
from tasks.domain.models import Email, User
from tests.support import procs
from tests.support.procs import run_cli, wait_until
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow


@pytest.fixture
def backup() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def offline_log(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "offline.jsonl"


@pytest.fixture
def chain_env(env: dict[str, str], sink: Sink, backup: Sink, offline_log: pathlib.Path) -> dict[str, str]:
    """primary (the ``sink``), backup, then the offline log; one failure opens a breaker."""
    return env | {
        "MAIL_TRANSPORTS": f"primary=smtp://127.0.0.1:{sink.port} backup=smtp://127.0.0.1:{backup.port} "
        f"jsonl://{offline_log}",
        "BREAKER_THRESHOLD": "1",
        "BREAKER_COOLDOWN": "60",
    }


def schedule(conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], **fields: Any) -> Email:
    fields.setdefault("send_at", dt.datetime.now(dt.UTC))
    return emails.schedule(conn, owner=owner, draft=make_draft(**fields), settings=settings)[0]


def final(conn: Conn, email: Email, *statuses: str, timeout: float = 30) -> Email:
    return wait_until(
        lambda: (e := emails.get(conn, models.OPERATOR, email.id)).status in statuses and e,
        timeout=timeout,
        what=f"email to become {'/'.join(statuses)}",
    )


def events(conn: Conn, email: Email, kind: str) -> list[models.Event]:
    return [e for e in emails.timeline(conn, models.OPERATOR, email.id) if e.kind == kind]


def breaker(conn: Conn, label: str) -> dict[str, Any]:
    return conn.execute("SELECT * FROM transport_breakers WHERE label = %s", (label,)).fetchone() or {}


def test_refused_connections_open_the_breaker_and_later_emails_go_to_the_backup(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    backup: Sink,
    chain_env: dict[str, str],
    workers: Any,
) -> None:
    """The failing attempt is retried later (no fall-through within it); once open, picks skip primary."""
    sink.stop()
    workers(extra_env=chain_env | {"BREAKER_THRESHOLD": "2"})

    first = final(conn, schedule(conn, owner, settings, make_draft, subject="first"), "sent")
    second = final(conn, schedule(conn, owner, settings, make_draft, subject="second"), "sent")
    status = json.loads(run_cli(chain_env, "status", "--json").stdout)

    retries = events(conn, first, "retry_scheduled")
    assert [r.detail["transport"] for r in retries] == ["primary", "primary"]
    assert all("cannot connect" in r.detail["error"] for r in retries)
    assert first.attempts == 3 and first.transport == "backup"
    assert second.attempts == 1 and second.transport == "backup"  # primary not even tried
    assert sorted(m.subject for m in backup.messages) == ["first", "second"]
    primary = status["transports"][0]
    assert (primary["label"], primary["state"], primary["failures"]) == ("primary", "open", 2)
    assert status["transports"][1]["state"] == "closed"


@pytest.mark.parametrize(
    "case",
    ["rcpt 421", "rcpt 451", "data 452", "data 550", "stall before DATA", "stall in DATA"],
)
def test_each_scripted_failure_gives_its_behaviour(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    backup: Sink,
    chain_env: dict[str, str],
    workers: Any,
    case: str,
) -> None:
    """421 and timeouts are the provider's fault (breaker opens, backup sends); 451/452 are
    about the message (retried on primary); 550 fails for good; a stall in DATA is uncertain."""
    expected = {
        # case: (final status, the server that got it, primary's breaker)
        "rcpt 421": ("sent", "backup", "open"),
        "rcpt 451": ("sent", "primary", "closed"),
        "data 452": ("sent", "primary", "closed"),
        "data 550": ("failed", None, "closed"),
        "stall before DATA": ("sent", "backup", "open"),
        "stall in DATA": ("uncertain", None, "open"),
    }[case]
    if case == "rcpt 421":
        sink.rcpt_replies.append("421 4.3.0 Service shutting down")
    elif case == "rcpt 451":
        sink.rcpt_replies.append("451 4.7.1 Greylisted, try again later")
    elif case == "data 452":
        sink.data_replies.append("452 4.3.1 Insufficient system storage")
    elif case == "data 550":
        sink.data_replies.append("550 5.7.1 Message rejected as spam")
    elif case == "stall before DATA":
        sink.stall_rcpt.set()
    else:
        sink.stall_data.set()
    workers(extra_env=chain_env | {"SMTP_TIMEOUT": "1"})

    email = final(conn, schedule(conn, owner, settings, make_draft), "sent", "failed", "uncertain")

    status, server, breaker_state = expected
    received = {"primary": len(sink.messages), "backup": len(backup.messages)}
    assert email.status == status, email.last_error
    assert received == {"primary": int(server == "primary"), "backup": int(server == "backup")}
    assert breaker(conn, "primary")["state"] == breaker_state
    if status == "failed":
        assert email.attempts == 1 and email.last_error == "DATA refused: 550 5.7.1 Message rejected as spam"
    if status == "uncertain":
        assert email.attempts == 1 and email.data_started_at is not None
    if status == "sent":
        assert email.attempts == 2 and email.transport == server


def test_the_breaker_closes_after_a_successful_trial_and_traffic_returns(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    backup: Sink,
    chain_env: dict[str, str],
    workers: Any,
) -> None:
    sink.stop()
    workers(extra_env=chain_env | {"BREAKER_COOLDOWN": "1"})
    during = final(conn, schedule(conn, owner, settings, make_draft, subject="during"), "sent")
    sink.start()
    wait_until(
        lambda: conn.execute(
            "SELECT retry_at < now() AS due FROM transport_breakers WHERE label = 'primary'"
        ).fetchone()["due"],
        timeout=10,
        what="the cool-down to pass",
    )

    trial = final(conn, schedule(conn, owner, settings, make_draft, subject="trial"), "sent")
    after = final(conn, schedule(conn, owner, settings, make_draft, subject="after"), "sent")

    assert (during.transport, trial.transport, after.transport) == ("backup", "primary", "primary")
    row = breaker(conn, "primary")
    assert row["state"] == "closed" and row["failures"] == 0 and row["opened_count"] == 1
    assert [m.subject for m in sink.messages] == ["trial", "after"]


def go_offline(conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], n: int) -> list[Email]:
    batch = [schedule(conn, owner, settings, make_draft, subject=f"#{i}", body_text=f"body of #{i}") for i in range(n)]
    return [final(conn, email, "offline") for email in batch]


def test_with_every_transport_down_emails_are_logged_offline_and_replayed_once(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    backup: Sink,
    chain_env: dict[str, str],
    offline_log: pathlib.Path,
    workers: Any,
) -> None:
    sink.stop()
    backup.stop()
    replay_env = chain_env | {"BREAKER_COOLDOWN": "2"}
    workers(extra_env=replay_env)

    logged = go_offline(conn, owner, settings, make_draft, 6)
    status = json.loads(run_cli(replay_env, "status", "--json").stdout)
    lines = [json.loads(line) for line in offline_log.read_text().splitlines()]
    sink.start()
    backup.start()
    replay = run_cli(replay_env, "replay-offline", "--timeout", "60s")

    assert status["emails"]["offline"] == 6
    assert [t["state"] for t in status["transports"][:2]] == ["open", "open"]
    assert sorted(line["message_id"] for line in lines) == sorted(e.message_id for e in logged)
    whole = {line["message_id"]: line["message"] for line in lines}
    for email in logged:
        assert f"Subject: {email.subject}" in whole[email.message_id]
        assert email.body_text in whole[email.message_id]
        assert email.provider_reply == f"logged offline to {offline_log}"
    assert stat.S_IMODE(os.stat(offline_log).st_mode) == 0o600
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "handed 6 offline email(s) back" in replay.stdout and "sent 6" in replay.stdout
    received = sink.by_message_id() + backup.by_message_id()
    assert {e.message_id: received[e.message_id] for e in logged} == {e.message_id: 1 for e in logged}
    assert len(offline_log.read_text().splitlines()) == 6  # never logged twice
    assert all(events(conn, e, "replayed") for e in logged)


def test_a_replay_makes_the_open_breakers_trial_due_so_mail_flows_at_once(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    backup: Sink,
    chain_env: dict[str, str],
    workers: Any,
) -> None:
    """The operator replays because the providers are back: the emails do not sit out the
    rest of a 10-minute cool-down; the first of them is the trial that closes the breaker."""
    sink.stop()
    backup.stop()
    replay_env = chain_env | {"BREAKER_COOLDOWN": "600"}
    workers(extra_env=replay_env)
    logged = go_offline(conn, owner, settings, make_draft, 3)
    sink.start()
    backup.start()

    replay = run_cli(replay_env, "replay-offline", "--timeout", "40s")

    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "primary: circuit breaker open; its trial send is now" in replay.stdout
    assert "sent 3" in replay.stdout
    assert breaker(conn, "primary")["state"] == "closed"
    received = sink.by_message_id() + backup.by_message_id()
    assert {e.message_id: received[e.message_id] for e in logged} == {e.message_id: 1 for e in logged}


def test_an_interrupted_replay_run_again_delivers_each_email_once(
    conn: Conn,
    database_url: str,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    backup: Sink,
    chain_env: dict[str, str],
    tmp_path: pathlib.Path,
    workers: Any,
) -> None:
    """The replay is killed while it hands emails over, the worker is killed mid-send; run again:
    every email is sent exactly once, or at worst uncertain (received at most once), never duplicated."""
    sink.stop()
    backup.stop()
    replay_env = chain_env | {"BREAKER_COOLDOWN": "1", "WORKER_HEARTBEAT": "0.5", "WORKER_STALLED_AFTER": "2"}
    first_worker = workers(extra_env=replay_env)
    logged = go_offline(conn, owner, settings, make_draft, 8)
    order = [r["id"] for r in conn.execute("SELECT id FROM emails ORDER BY offline_at, id")]
    sink.data_delay = 0.3
    sink.start()
    backup.start()

    with db.connect(database_url) as blocker, blocker.transaction():
        # Hold the 5th email: the replay hands over four, then waits on it and is killed there.
        blocker.execute("SELECT 1 FROM emails WHERE id = %s FOR UPDATE", (order[4],))
        cli = subprocess.Popen(
            [sys.executable, "-m", "tasks", "replay-offline"],
            env=replay_env,
            cwd=procs.ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: invariant_count(conn, "offline") == 4, timeout=30, what="four emails handed over")
        cli.send_signal(signal.SIGKILL)
        cli.wait(10)
    sink.data_started.wait(30)
    first_worker.kill()  # mid-DATA, most likely
    workers(extra_env=replay_env)
    again = run_cli(replay_env, "replay-offline", "--timeout", "60s")
    wait_until(lambda: set(invariant_statuses(conn)) <= {"sent", "uncertain"}, timeout=60, what="every email to finish")

    assert "handed 4 offline email(s) back" in again.stdout
    rows = conn.execute("SELECT status, message_id FROM emails").fetchall()
    received = sink.by_message_id() + backup.by_message_id()
    assert all(received[r["message_id"]] == 1 for r in rows if r["status"] == "sent")
    assert all(received[r["message_id"]] <= 1 for r in rows)
    assert len(rows) == len(logged) == 8
    assert conn.execute("SELECT count(*) AS n FROM email_events WHERE kind = 'replayed'").fetchone()["n"] == 8


def invariant_statuses(conn: Conn) -> list[str]:
    return [r["status"] for r in conn.execute("SELECT status FROM emails")]


def invariant_count(conn: Conn, status: str) -> int:
    return invariant_statuses(conn).count(status)


def test_without_an_offline_log_an_email_waits_for_the_trial_without_spending_attempts(
    conn: Conn,
    env: dict[str, str],
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    workers: Any,
) -> None:
    sink.stop()
    workers(extra_env={"BREAKER_THRESHOLD": "1", "BREAKER_COOLDOWN": "3"})

    email = schedule(conn, owner, settings, make_draft)
    waiting = wait_until(
        lambda: (
            (e := emails.get(conn, models.OPERATOR, email.id)).waiting_reason
            == "waiting for a mail transport: every circuit breaker is open"
            and e
        ),
        timeout=20,
        what="the email to wait for a transport",
    )
    sink.start()
    sent = final(conn, email, "sent")

    assert waiting.status == "scheduled" and waiting.attempts == 1
    assert events(conn, email, "transport_unavailable")
    assert sent.attempts == 2  # the failed attempt and the trial: waiting spent none
    assert breaker(conn, "smtp")["state"] == "closed"
    assert sink.by_message_id()[email.message_id] == 1
