"""Send to a list: 10,000 rows, bad lines reported, spacing kept, all or nothing."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.core.db import Conn
from tasks.domain import emails, tokens
from tests.support import invariants

pytestmark = pytest.mark.slow
ROWS = 10_000
BAD = {
    17: ("not-an-address", "x"),
    250: ("", "empty"),
    999: ("ann@", "half"),
    4000: ("dup0@example.com", "again"),  # duplicate of line 2
    7777: ("bad\r\nBcc: x@example.com", "injection"),
}


def big_csv() -> str:
    """10,000 data lines (lines 2..10001), a few of them bad."""
    out = io.StringIO()
    out.write("email,first_name,company\n")
    for line in range(2, ROWS + 2):
        if line in BAD:
            address, name = BAD[line]
            out.write(f'"{address}",{name},Acme\n')
        elif line == 5000:
            out.write('ok5000@example.com,"Eve\nBcc: x@example.com",Acme\n')  # a value that would break the subject
        else:
            out.write(f"dup{line - 2}@example.com,Name{line},Acme\n")
    return out.getvalue()


@pytest.fixture
def headers(conn: Conn) -> dict[str, str]:
    user = emails.ensure_user(conn, email="alice@example.com")
    return {"Authorization": f"Bearer {tokens.create(conn, user)[1]}"}


def test_ten_thousand_rows_are_scheduled_with_the_right_spacing_and_bad_lines_reported(
    client: FlaskClient, conn: Conn, headers: dict[str, str], settings: Any
) -> None:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    response = client.post(
        "/api/v1/batches",
        json={
            "csv": big_csv(),
            "subject": "Hello {{first_name}} at {{company}}",
            "body_text": "Dear {{first_name}},\n...",
            "start_at": start.isoformat(),
            "min_delay_seconds": 2,
            "hourly_cap": 1000,
            "time_zone": "Europe/Paris",
        },
        headers=headers,
    )

    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    body = response.get_json()
    rejected = {r["line"]: r["reason"] for r in body["rejected"]}
    # Line numbers are the file's: the quoted line break at line 5000 moves later records down one.
    assert sorted(rejected) == [17, 250, 999, 4000, 5000, 7778]
    assert rejected[4000] == "duplicate of line 2"
    assert rejected[250] == "no email address"
    assert "line break" in rejected[7778] and "line break" in rejected[5000]
    assert body["accepted"] == ROWS - 6 == body["batch"]["total"]

    rows = conn.execute(
        "SELECT to_addrs[1] AS addr, subject, send_at, send_tz, job_id FROM emails ORDER BY send_at, id"
    ).fetchall()
    assert len(rows) == ROWS - 6
    assert rows[0]["send_at"] == start.replace(microsecond=rows[0]["send_at"].microsecond)
    assert (rows[0]["addr"], rows[0]["subject"]) == ("dup0@example.com", "Hello Name2 at Acme")
    times = [r["send_at"] for r in rows]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 2 - 1e-6
    assert all((times[i] - times[i - 1000]).total_seconds() >= 3600 - 1e-6 for i in range(1000, len(times)))
    assert {r["send_tz"] for r in rows} == {"Europe/Paris"}
    # Only emails due within the horizon hold a queue job; the rest wait in the table.
    horizon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.schedule_horizon)
    with_job = [r for r in rows if r["job_id"] is not None]
    assert 0 < len(with_job) < len(rows)
    assert all(r["send_at"] <= horizon for r in with_job)
    assert invariants.jobs_without_email(conn) == []
    assert conn.execute("SELECT count(*) AS n FROM email_events WHERE kind = 'scheduled'").fetchone()["n"] == len(rows)


def test_a_failure_half_way_leaves_nothing_behind(client: FlaskClient, conn: Conn, headers: dict[str, str]) -> None:
    """A real database error while inserting the emails rolls back the batch, its emails and its jobs."""
    conn.execute(
        """
        CREATE FUNCTION fail_on_boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF 'boom@example.com' = ANY(NEW.to_addrs) THEN RAISE EXCEPTION 'disk full (simulated)'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER fail_on_boom BEFORE INSERT ON emails FOR EACH ROW EXECUTE FUNCTION fail_on_boom();
        """
    )
    addresses = "\n".join([f"ok{i}@example.com" for i in range(500)] + ["boom@example.com"])

    response = client.post(
        "/api/v1/batches", json={"addresses": addresses, "subject": "S", "body_text": "B"}, headers=headers
    )

    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal"
    assert invariants.counts(conn) == {}
    assert conn.execute("SELECT count(*) AS n FROM batches").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM procrastinate_jobs").fetchone()["n"] == 0
