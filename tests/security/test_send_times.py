"""Send times at the edge of what a date can hold: one whose local time (in the zone it was
chosen in) would be past the year 9999 is refused on every way in, and whatever the table
holds, the lists, the pages and the API still answer."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql

from tests.security.conftest import Owned, snapshot
from tests.support.web import csrf_token

Conn = Any
#: 23:00 UTC on the last day a date can hold is already next year in Kiritimati (UTC+14).
LAST_HOUR = "9999-12-31T23:00:00+00:00"
EAST = "Pacific/Kiritimati"


def test_a_send_time_whose_local_time_overflows_is_422_and_nothing_is_stored(
    app: Flask, alice_client: FlaskClient, conn: Conn, alices: Owned
) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {alices.secret}"}
    new = {"to": ["a@example.com"], "subject": "S", "body_text": "B"}
    # In UTC the same instant is fine, so an email can be there already, and moved to another zone.
    utc = client.post("/api/v1/emails", json=new | {"send_at": LAST_HOUR, "time_zone": "UTC"}, headers=headers)
    assert utc.status_code == 201, utc.get_json()
    before = snapshot(conn)
    batch = {"addresses": "a@example.com\nb@example.com", "subject": "S", "body_text": "B", "time_zone": EAST}

    answers = {
        "create": client.post("/api/v1/emails", json=new | {"send_at": LAST_HOUR, "time_zone": EAST}, headers=headers),
        "move": client.patch(
            f"/api/v1/emails/{alices.email}", json={"send_at": LAST_HOUR, "time_zone": EAST}, headers=headers
        ),
        "rezone": client.patch(f"/api/v1/emails/{utc.get_json()['id']}", json={"time_zone": EAST}, headers=headers),
        "batch": client.post("/api/v1/batches", json=batch | {"start_at": LAST_HOUR}, headers=headers),
        # The first email is fine (23:00 local); the second, an hour later, is not.
        "batch's last": client.post(
            "/api/v1/batches",
            json=batch | {"start_at": "9999-12-31T09:00:00Z", "min_delay_seconds": 3600, "dry_run": True},
            headers=headers,
        ),
    }
    form = alice_client.post(
        f"/emails/{alices.email}/reschedule",
        data={"csrf_token": csrf_token(alice_client), "send_at": LAST_HOUR, "time_zone": EAST},
    )

    assert {k: (r.status_code, r.get_json()["error"]["field"]) for k, r in answers.items()} == {
        "create": (422, "send_at"),
        "move": (422, "send_at"),
        "rezone": (422, "time_zone"),
        "batch": (422, "start_at"),
        "batch's last": (422, "start_at"),
    }
    assert "year 9999" in answers["create"].get_json()["error"]["message"]
    assert form.status_code == 302
    assert "year 9999" in alice_client.get(form.headers["Location"]).get_data(as_text=True)
    assert snapshot(conn) == before


@pytest.fixture
def far_east_server(database_url: str) -> None:
    """Make the database's own time zone UTC+14, for every session opened from now on (the app's too)."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET TimeZone = 'Pacific/Kiritimati'").format(sql.Identifier(admin.info.dbname))
        )


def test_lists_pages_and_the_api_answer_whatever_send_time_and_zone_are_stored(
    far_east_server: None, alice_client: FlaskClient, conn: Conn, alices: Owned
) -> None:
    """Written straight to the table (an older version, an operator's hand): times whose local
    form overflows either end of the calendar, and zones that are not zones; on a server whose
    own zone is east of UTC, where the last instants of 9999 are not dates either."""
    batch_emails = [
        r["id"] for r in conn.execute("SELECT id FROM emails WHERE batch_id = %s ORDER BY id", (alices.batch,))
    ]
    stored = [
        (alices.email, "9999-12-31T23:00:00Z", EAST),
        (batch_emails[0], "9999-12-31T23:59:59.999999Z", "Europe"),
        (batch_emails[1], "0001-01-01T00:00:00Z", "America/Los_Angeles"),
    ]
    for email_id, at, zone in stored:
        conn.execute(
            "UPDATE emails SET send_at = %s, next_attempt_at = %s, send_tz = %s WHERE id = %s",
            (at, at, zone, email_id),
        )
    conn.execute("UPDATE batches SET send_tz = 'Europe' WHERE id = %s", (alices.batch,))
    ids = [str(e) for e, _, _ in stored]
    pages = [
        "/",
        "/?view=all",
        "/?view=all&q=ALICE",
        f"/batches/{alices.batch}",
        "/api/v1/emails",
        "/api/v1/emails?status=all",
        f"/api/v1/emails?batch_id={alices.batch}",
        f"/api/v1/batches/{alices.batch}",
        f"/live/snapshot?ids={','.join(ids)}&batches={alices.batch}",
        *(f"/emails/{i}" for i in ids),
        *(f"/api/v1/emails/{i}" for i in ids),
    ]

    def answers() -> dict[str, int]:
        return {page: alice_client.get(page).status_code for page in pages}

    assert answers() == dict.fromkeys(pages, 200)
    listed = {e["id"]: e for e in alice_client.get("/api/v1/emails?status=all").get_json()["emails"]}
    assert listed[alices.email]["send_at"] == "9999-12-31T23:00:00+00:00"
    assert listed[alices.email]["send_at_local"] == "9999-12-31T23:00:00+00:00"  # in UTC: Kiritimati cannot
    assert "9999" in listed[alices.email]["why"]

    token = csrf_token(alice_client)
    for email_id in ids:
        cancelled = alice_client.post(f"/api/v1/emails/{email_id}/cancel", headers={"X-CSRF-Token": token})
        assert cancelled.status_code == 200, cancelled.get_data(as_text=True)[:300]
    pages += ["/?view=cancelled", "/api/v1/emails?status=cancelled"]
    assert answers() == dict.fromkeys(pages, 200)
