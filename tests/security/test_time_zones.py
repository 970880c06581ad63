"""A time zone that names a directory of the zone database (``Europe``), or any other file
of it that is not a zone, is refused like an unknown zone on every way in: creating an
email, editing one, a batch and the reschedule form. Nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.security.conftest import Owned, snapshot
from tests.support.web import csrf_token

Conn = Any
#: Not zones, though each is a path in the zone database: directories, and data files that are no zone.
NOT_ZONES = ["Europe", "America", "America/Argentina", "Etc", "zone.tab", "tzdata.zi", "Europe/"]


@pytest.mark.parametrize("zone", NOT_ZONES)
def test_a_zone_that_is_a_directory_is_422_on_create_edit_and_batches(
    app: Flask, conn: Conn, alices: Owned, zone: str
) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {alices.secret}"}
    before = snapshot(conn)

    answers = [
        client.post(
            "/api/v1/emails",
            json={"to": ["a@example.com"], "subject": "S", "body_text": "B", "send_now": True, "time_zone": zone},
            headers=headers,
        ),
        client.patch(f"/api/v1/emails/{alices.email}", json={"time_zone": zone}, headers=headers),
        client.patch(
            f"/api/v1/emails/{alices.email}",
            json={"time_zone": zone, "send_at": "2031-01-01T09:00:00Z"},
            headers=headers,
        ),
        client.post(
            "/api/v1/batches",
            json={"addresses": "a@example.com", "subject": "S", "body_text": "B", "time_zone": zone},
            headers=headers,
        ),
        client.post(
            "/api/v1/batches",
            json={"addresses": "a@example.com", "subject": "S", "body_text": "B", "time_zone": zone, "dry_run": True},
            headers=headers,
        ),
    ]

    assert [(r.status_code, r.get_json()["error"]["field"]) for r in answers] == [(422, "time_zone")] * len(answers)
    assert snapshot(conn) == before


@pytest.mark.parametrize("zone", NOT_ZONES)
def test_a_zone_that_is_a_directory_is_refused_by_the_reschedule_form(
    alice_client: FlaskClient, conn: Conn, alices: Owned, zone: str
) -> None:
    """The form answers like to any bad input: back to the email's page, which says what is wrong."""
    before = snapshot(conn)
    token = csrf_token(alice_client)

    for fields in ({"local": "2031-07-01T09:30"}, {"send_at": "2031-07-01T09:30:00Z"}):
        response = alice_client.post(
            f"/emails/{alices.email}/reschedule", data={"csrf_token": token, "time_zone": zone, **fields}
        )

        assert response.status_code == 302, response.status_code
        assert response.headers["Location"] == f"/emails/{alices.email}"
        page = alice_client.get(response.headers["Location"]).get_data(as_text=True)
        assert "must be an iana time zone" in page.lower()
    assert snapshot(conn) == before
