"""The Recurring tab and a recurrence's page: next occurrence, last result, pause, resume,
delete, a history that links to each occurrence's email and names skipped ones, and the
edit form (applied to every occurrence not yet sent; a bad field changes nothing)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg.rows import dict_row
from werkzeug.datastructures import MultiDict

from tasks.core.db import Conn
from tasks.domain import recurrences
from tasks.domain.models import User
from tasks.domain.orgs import personal_scope
from tasks.queue import occurrences
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


class _Form(HTMLParser):
    """The fields a browser would send for one form of a page (its prefilled values)."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside = form_id, False
        self.fields: MultiDict[str, str] = MultiDict()
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or "name" not in a and tag != "option":
            return
        if tag == "input" and (a.get("type") != "checkbox" or "checked" in a):
            self.fields.add(a["name"], a.get("value", ""))
        elif tag == "select":
            self.select = a["name"]
        elif tag == "option" and self.select and "selected" in a:
            self.fields.add(self.select, a["value"])
        elif tag == "textarea":
            self.textarea = a["name"]
            self.fields.add(self.textarea, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.fields.setlist(self.textarea, [self.fields[self.textarea] + data.removeprefix("\n")])


def _edit_form(client: FlaskClient, rec_id: Any) -> MultiDict[str, str]:
    response = client.get(f"/recurring/{rec_id}/edit")
    assert response.status_code == 200
    parser = _Form("recurrence-edit-form")
    parser.feed(response.get_data(as_text=True))
    return parser.fields


def _waiting(conn: Conn, rec_id: Any) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT status, subject FROM emails WHERE recurrence_id = %s ORDER BY occurrence_at, status", [rec_id]
    ).fetchall()


def _every_minute(conn: Conn, owner: User, settings: Any) -> recurrences.Recurrence:
    """An every-minute recurrence, its next occurrence already created and waiting."""
    spec = recurrences.validate(
        {
            "to": ["team@example.com"],
            "subject": "Tick {{occurrence_time}}",
            "body_text": "Line one\nline two",
            "cron": "* * * * *",
            "time_zone": "Europe/Paris",
            "count": 1000,
        },
        settings=settings,
    )
    rec = recurrences.create(conn, owner=owner, spec=spec, settings=settings)[0]

    async def tick() -> None:
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True, row_factory=dict_row
        ) as aconn:
            await occurrences.create_due(aconn, settings)

    asyncio.run(tick())
    assert [r["status"] for r in _waiting(conn, rec.id)][:1] == ["scheduled"]
    return recurrences.get(conn, personal_scope(conn, owner.id), rec.id)


def test_the_edit_form_is_prefilled_and_applies_to_every_occurrence_not_yet_sent(
    client: FlaskClient, alice: User, conn: Conn, settings: Any
) -> None:
    rec = _every_minute(conn, alice, settings)
    scope = personal_scope(conn, alice.id)
    assert f'href="/recurring/{rec.id}/edit"' in client.get(f"/recurring/{rec.id}").get_data(as_text=True)
    form = _edit_form(client, rec.id)
    assert form["repeat"] == "cron" and form["cron"] == "* * * * *" and form["time_zone"] == "Europe/Paris"
    assert form["to"] == "team@example.com" and form["body_text"] == "Line one\nline two" and form["count"] == "1000"
    assert form["starts_at"] == rec.starts_at.isoformat()  # the preview starts where the recurrence does

    # Sent as it is (a textarea sends CRLF): nothing to change, nothing changed.
    unchanged = form.copy()
    unchanged["body_text"] = form["body_text"].replace("\n", "\r\n")
    assert client.post(f"/recurring/{rec.id}/edit", data=unchanged).status_code == 302
    assert recurrences.get(conn, scope, rec.id).updated_at == rec.updated_at

    # Without the CSRF token, as every form: refused.
    refused = form.copy()
    refused.pop("csrf_token")
    refused["subject"] = "Forged"
    assert client.post(f"/recurring/{rec.id}/edit", data=refused).status_code == 403
    assert recurrences.get(conn, scope, rec.id).subject == "Tick {{occurrence_time}}"

    # New content: written into the occurrence already created, which still waits.
    content = form.copy()
    content["subject"] = "Tock {{occurrence_time}}"
    assert client.post(f"/recurring/{rec.id}/edit", data=content).status_code == 302
    assert recurrences.get(conn, scope, rec.id).subject == "Tock {{occurrence_time}}"
    waiting = _waiting(conn, rec.id)
    assert waiting and all(r["status"] == "scheduled" and r["subject"].startswith("Tock ") for r in waiting)
    assert "{{" not in waiting[0]["subject"]

    # A preset instead of the cron: the waiting occurrence is cancelled, the rule starts again.
    rule = content.copy()
    for name, value in {"repeat": "monthly", "repeat_monthly": "last:fri", "repeat_time": "07:15", "count": ""}.items():
        rule[name] = value
    response = client.post(f"/recurring/{rec.id}/edit", data=rule, follow_redirects=True)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Every month on the last Friday at 07:15, Europe/Paris" in page and page.count("<li><time") == 5
    edited = recurrences.get(conn, scope, rec.id)
    assert edited.cron == "15 7 * * 5L" and edited.max_count is None
    assert {r["status"] for r in _waiting(conn, rec.id)} == {"cancelled"}
    again = _edit_form(client, rec.id)  # prefilled with the preset now
    assert (again["repeat"], again["repeat_monthly"], again["repeat_time"]) == ("monthly", "last:fri", "07:15")


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"cron": "0 25 * * *"}, "cron", "not a valid cron expression"),
        ({"cron": "0 9 30 2 *"}, "cron", "never fires"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone", "IANA time zone"),
        ({"repeat_until": "2020-01-01"}, "ends_at", "after starts_at"),
        ({"count": "0"}, "count", "whole number"),
        ({"to": "not an address"}, "to", ""),
        ({"repeat": "weekly"}, "preset", "days must be"),
    ],
)
def test_a_bad_field_shows_its_reason_beside_it_and_changes_nothing(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, changes: dict[str, str], field: str, reason: str
) -> None:
    rec = _every_minute(conn, alice, settings)
    before = _waiting(conn, rec.id)
    form = _edit_form(client, rec.id)
    form["subject"] = "Changed too"
    for name, value in changes.items():
        form[name] = value
    response = client.post(f"/recurring/{rec.id}/edit", data=form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    slot = re.search(rf'<p class="field-error" data-error-for="{field}">([^<]+)</p>', page)
    assert slot and reason in slot[1], page
    assert 'aria-invalid="true"' in page and 'value="Changed too"' in page  # the form as sent, shown again
    after = recurrences.get(conn, personal_scope(conn, alice.id), rec.id)
    assert (after.subject, after.cron, after.updated_at) == (rec.subject, rec.cron, rec.updated_at)
    assert _waiting(conn, rec.id) == before


def test_another_users_recurrence_cannot_be_edited(
    app: Flask, client: FlaskClient, alice: User, conn: Conn, settings: Any, sign_in: Callable[..., Any]
) -> None:
    rec = _create(conn, alice, settings)
    form = _edit_form(client, rec.id)
    assert form["subject"] == "Standup <b>{{occurrence_date}}</b>"
    assert 'value="Standup &lt;b&gt;{{occurrence_date}}&lt;/b&gt;"' in client.get(f"/recurring/{rec.id}/edit").get_data(
        as_text=True
    )  # escaped, never markup
    bob_client = app.test_client()
    sign_in(bob_client, "bob@example.com", name="Bob")
    assert bob_client.get(f"/recurring/{rec.id}/edit").status_code == 404
    form["csrf_token"] = csrf_token(bob_client)
    form["subject"] = "Bob's"
    assert bob_client.post(f"/recurring/{rec.id}/edit", data=form).status_code == 404
    assert recurrences.get(conn, personal_scope(conn, alice.id), rec.id).subject == rec.subject
