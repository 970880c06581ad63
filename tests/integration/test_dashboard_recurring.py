"""The Recurring tab and a recurrence's page: next occurrence, last result, pause, resume,
delete, and a history that links to each occurrence's email and names skipped ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.core.db import Conn
from tasks.domain import recurrences
from tasks.domain.models import User
from tasks.domain.orgs import personal_scope
from tests.support.web import csrf_token


@pytest.fixture
def alice(client: FlaskClient, sign_in: Callable[..., Any]) -> User:
    return sign_in(client, "alice@example.com", name="Alice")


def _create(conn: Conn, owner: User, settings: Any) -> recurrences.Recurrence:
    spec = recurrences.validate(
        {
            "to": ["team@example.com"],
            "subject": "Standup <b>{{occurrence_date}}</b>",
            "body_text": "Notes",
            "preset": {"kind": "weekdays", "time": "09:00"},
            "time_zone": "Europe/Paris",
        },
        settings=settings,
    )
    return recurrences.create(conn, owner=owner, spec=spec, settings=settings)[0]


def test_the_tab_lists_each_with_its_rule_next_occurrence_and_pause(
    client: FlaskClient, alice: User, conn: Conn, settings: Any
) -> None:
    rec = _create(conn, alice, settings)
    page = client.get("/recurring/").get_data(as_text=True)
    assert "Every weekday at 09:00, Europe/Paris" in page
    assert "Standup &lt;b&gt;{{occurrence_date}}&lt;/b&gt;" in page  # escaped, never markup
    assert f'action="/recurring/{rec.id}/pause"' in page and "Not sent yet" in page
    response = client.post(f"/recurring/{rec.id}/pause", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302
    assert recurrences.get(conn, personal_scope(conn, alice.id), rec.id).status == "paused"
    assert f'action="/recurring/{rec.id}/resume"' in client.get("/recurring/").get_data(as_text=True)


def test_the_page_shows_next_occurrences_and_history_with_links_and_skips(
    client: FlaskClient, alice: User, conn: Conn, settings: Any
) -> None:
    rec = _create(conn, alice, settings)
    conn.execute(
        "INSERT INTO recurrence_skips (org_id, recurrence_id, first_at, last_at, n, reason)"
        " VALUES (%s, %s, now() - interval '3 days', now() - interval '1 day', 3, 'missed while the system was down')",
        [rec.org_id, rec.id],
    )
    page = client.get(f"/recurring/{rec.id}").get_data(as_text=True)
    assert page.count("<li><time") == 5  # the next five occurrences
    assert "3 occurrences from" in page and "missed while the system was down" in page
    response = client.post(f"/recurring/{rec.id}/delete", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302
    assert client.get(f"/recurring/{rec.id}").status_code == 404


def test_an_occurrence_links_back_to_its_recurrence(
    client: FlaskClient, alice: User, conn: Conn, settings: Any
) -> None:
    rec = _create(conn, alice, settings)
    row = conn.execute(
        "INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,"
        " message_id, recurrence_id, occurrence_at) VALUES (%s, %s, 'a@x', ARRAY['b@example.com'], 's', 'b', now(),"
        " now() + interval '1 day', '<occ@x>', %s, now() + interval '1 day') RETURNING id",
        [rec.org_id, alice.id, rec.id],
    ).fetchone()
    page = client.get(f"/emails/{row['id']}").get_data(as_text=True)
    assert f'href="/recurring/{rec.id}"' in page
