"""The operator's canned queries (``sql/ops/*.sql``), run with the real ``psql`` on a populated database."""

from __future__ import annotations

import csv
import datetime as dt
import io
import pathlib
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails
from tasks.domain.models import Email, User
from tasks.queue import jobs
from tests.support.flow import attempt

OPS = pathlib.Path(__file__).resolve().parents[2] / "sql" / "ops"
FILES = sorted(p.name for p in OPS.glob("*.sql"))


def psql(database_url: str, name: str, *args: str) -> list[dict[str, str]]:
    """Run one ops file like an operator would; return its rows."""
    result = subprocess.run(
        ["psql", "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", *args, "-d", database_url, "-f", str(OPS / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture
def populated(conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any]) -> dict[str, Email]:
    """Every kind of email an operator meets, for two users."""
    now = dt.datetime.now(dt.UTC)

    def new(subject: str, at: dt.timedelta = dt.timedelta(0), who: User = owner) -> Email:
        draft = make_draft(subject=subject, send_at=now + at)
        return emails.schedule(conn, owner=who, draft=draft, settings=settings)[0]

    carol = emails.ensure_user(conn, email="carol@example.com", name="Carol")
    made = {
        "due": new("due soon", dt.timedelta(minutes=10)),
        "far": new("far future", dt.timedelta(days=20)),
        "rate": new("rate limited", dt.timedelta(seconds=40)),
        "stuck": new("stuck"),
    }
    for name in ("sent", "sent_backup", "spam1", "spam2", "nouser", "uncertain", "offline"):
        made[name] = new(name)
    made["carol"] = new("carol's", who=carol)
    attempt(conn, made["sent"], "sent")
    attempt(conn, made["sent_backup"], "sent", transport="backup")
    attempt(conn, made["carol"], "sent")
    attempt(conn, made["spam1"], "failed", error="DATA refused: 550 5.7.1 Message rejected as spam")
    attempt(conn, made["spam2"], "failed", error="DATA refused: 550 5.7.1 Message rejected as spam")
    attempt(conn, made["nouser"], "failed", error="every recipient was refused: 550 5.1.1 No such user")
    attempt(conn, made["uncertain"], "uncertain", error="connection failed during DATA: Connection lost")
    attempt(conn, made["offline"], "offline", transport="jsonl")
    conn.execute("UPDATE emails SET waiting_reason = 'waiting for a rate-limit slot' WHERE id = %s", (made["rate"].id,))
    # Claimed two minutes ago and never finished (email_events is append-only: the event is inserted old).
    stuck = made["stuck"]
    conn.execute("UPDATE emails SET status = 'sending', attempts = 1 WHERE id = %s", (stuck.id,))
    conn.execute(
        "INSERT INTO email_events (org_id, email_id, kind, job_id, at, detail) "
        "VALUES (%s, %s, 'claimed', %s, now() - interval '2 minutes', '{\"attempt\": 1, \"late_ms\": 5}')",
        (stuck.org_id, stuck.id, stuck.job_id),
    )
    return made


@pytest.mark.parametrize("name", FILES)
def test_every_ops_file_runs_on_a_populated_database(database_url: str, populated: dict[str, Email], name: str) -> None:
    rows = psql(database_url, name)

    assert isinstance(rows, list)


def test_the_queue_overview_counts_emails_by_status_and_transport(
    database_url: str, populated: dict[str, Email]
) -> None:
    rows = {(r["status"], r["transport"]): int(r["emails"]) for r in psql(database_url, "queue_overview.sql")}

    assert rows[("sent", "primary")] == 2 and rows[("sent", "backup")] == 1 and rows[("sent", "(all)")] == 3
    assert rows[("failed", "primary")] == 3
    assert rows[("scheduled", "-")] == 3 and rows[("offline", "jsonl")] == 1
    assert rows[("(all)", "(all)")] == len(populated)


def test_due_next_hour_lists_near_emails_but_not_far_ones(database_url: str, populated: dict[str, Email]) -> None:
    rows = psql(database_url, "due_next_hour.sql")

    ids = [r["id"] for r in rows]
    assert ids == [str(populated["rate"].id), str(populated["due"].id)]
    assert all(r["job"] == "todo" for r in rows)


def test_stuck_lists_emails_sending_for_over_a_minute(database_url: str, populated: dict[str, Email]) -> None:
    [row] = psql(database_url, "stuck_sending.sql")

    assert row["id"] == str(populated["stuck"].id)
    assert int(row["sending_for_seconds"]) >= 119 and row["data_started"] == "f"


def test_failures_are_grouped_by_reason_most_common_first(database_url: str, populated: dict[str, Email]) -> None:
    rows = psql(database_url, "failures_by_reason.sql")

    assert [(r["reason"], int(r["emails"])) for r in rows] == [
        ("DATA refused: 550 5.7.1 Message rejected as spam", 2),
        ("every recipient was refused: 550 5.1.1 No such user", 1),
    ]


def test_uncertain_offline_and_rate_limit_waits_list_their_emails(
    database_url: str, populated: dict[str, Email]
) -> None:
    uncertain = psql(database_url, "uncertain.sql")
    offline = psql(database_url, "offline.sql")
    waits = psql(database_url, "rate_limit_waits.sql")

    assert [r["message_id"] for r in uncertain] == [populated["uncertain"].message_id]
    assert [r["id"] for r in offline] == [str(populated["offline"].id)]
    assert [(r["id"], r["waiting_reason"]) for r in waits] == [
        (str(populated["rate"].id), "waiting for a rate-limit slot")
    ]


def test_lateness_and_per_user_volume_summarise_the_last_hour(database_url: str, populated: dict[str, Email]) -> None:
    lateness = {r["attempts"]: r for r in psql(database_url, "lateness_last_hour.sql")}
    volume = {r["email"]: r for r in psql(database_url, "per_user_volume.sql")}

    assert int(lateness["all"]["claims"]) == 9 and int(lateness["first attempts"]["claims"]) == 9
    assert float(lateness["all"]["max_ms"]) >= float(lateness["all"]["p50_ms"]) >= 0
    alice, carol = volume["alice@example.com"], volume["carol@example.com"]
    assert (int(alice["total"]), int(alice["sent_24h"]), int(alice["failed"])) == (11, 2, 3)
    assert (int(carol["total"]), int(carol["sent_24h"])) == (1, 1)
    assert list(volume) == ["alice@example.com", "carol@example.com"]


def test_the_invariant_queries_are_empty_and_catch_what_they_look_for(
    conn: Conn, database_url: str, populated: dict[str, Email]
) -> None:
    """Far-future emails hold no job legitimately; a lost job or an orphan job is reported."""
    clean = (psql(database_url, "jobs_without_email.sql"), psql(database_url, "emails_without_job.sql"))
    conn.execute("DELETE FROM procrastinate_jobs WHERE id = %s", (populated["rate"].job_id,))
    ghost = uuid.uuid4()
    with conn.transaction():
        [orphan] = jobs.defer_sends(conn, [(ghost, dt.datetime.now(dt.UTC))])

    lost = psql(database_url, "emails_without_job.sql")
    orphans = psql(database_url, "jobs_without_email.sql")
    wide = psql(database_url, "emails_without_job.sql", "-v", "horizon=3000000")

    assert clean == ([], [])
    assert [r["id"] for r in lost] == [str(populated["rate"].id)]
    assert [(r["job_id"], r["email_id"]) for r in orphans] == [(str(orphan), str(ghost))]
    assert str(populated["far"].id) in [r["id"] for r in wide]  # with a 34-day horizon it should have a job
