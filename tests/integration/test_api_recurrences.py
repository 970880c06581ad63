"""``/api/v1/recurrences``: every endpoint, its 422s with field and reason, checked against the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.core.db import Conn
from tasks.domain import emails, tokens
from tests.support.openapi_check import check
from tests.support.web import make_app

WEEKLY = {
    "to": ["team@example.com"],
    "subject": "Weekly {{occurrence_date}}",
    "body_text": "Report for {{occurrence_date}} at {{occurrence_time}}",
    "preset": {"kind": "weekly", "days": ["mon", "thu"], "time": "09:00"},
    "time_zone": "Europe/Paris",
}


class Api:
    def __init__(self, client: FlaskClient, token: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, url: str, spec_path: str, *, json: Any = None, headers: dict[str, str] | None = None):
        response = self.client.open(url, method=method, json=json, headers=self.headers | (headers or {}))
        check(method, spec_path, response.status_code, response.get_json())
        return response


@pytest.fixture
def api(client: FlaskClient, conn: Conn) -> Api:
    alice = emails.ensure_user(conn, email="alice@example.com", name="Alice")
    return Api(client, tokens.create(conn, alice, "tests")[1])


def count(conn: Conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM recurrences").fetchone()["n"]


def test_create_read_list_and_preview(api: Api, conn: Conn) -> None:
    created = api.call("POST", "/api/v1/recurrences", "/recurrences", json=WEEKLY)
    assert created.status_code == 201
    body = created.get_json()
    assert body["summary"] == "Every week on Monday and Thursday at 09:00, Europe/Paris"
    assert body["cron"] == "0 9 * * 1,4" and body["status"] == "active"
    nexts = [dt.datetime.fromisoformat(t) for t in body["next_occurrences"]]
    assert len(nexts) == 5 and nexts == sorted(nexts)
    assert all(t.utcoffset() in (dt.timedelta(hours=1), dt.timedelta(hours=2)) for t in nexts)
    assert all(t.hour == 9 and t.minute == 0 and t.isoweekday() in (1, 4) for t in nexts)
    rid = body["id"]
    assert created.headers["Location"].endswith(f"/api/v1/recurrences/{rid}")

    got = api.call("GET", f"/api/v1/recurrences/{rid}", "/recurrences/{recurrence_id}").get_json()
    assert got["history"] == [] and got["next_occurrences"] == body["next_occurrences"]
    listed = api.call("GET", "/api/v1/recurrences", "/recurrences").get_json()["recurrences"]
    assert [r["id"] for r in listed] == [rid]
    preview = api.call("GET", f"/api/v1/recurrences/{rid}/preview?n=8", "/recurrences/{recurrence_id}/preview")
    assert preview.get_json()["occurrences"][:5] == body["next_occurrences"]
    assert len(preview.get_json()["occurrences"]) == 8
    for n in ("0", "51", "x"):
        refused = api.call("GET", f"/api/v1/recurrences/{rid}/preview?n={n}", "/recurrences/{recurrence_id}/preview")
        assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "n"
        unsaved = api.call("POST", f"/api/v1/recurrences/preview?n={n}", "/recurrences/preview", json=WEEKLY)
        assert unsaved.status_code == 422 and unsaved.get_json()["error"]["field"] == "n"


def test_preview_a_rule_without_saving_it(api: Api, conn: Conn) -> None:
    rule = WEEKLY | {"preset": None, "cron": "30 2 * * *", "starts_at": "2027-03-27T12:00:00+01:00"}
    # Previews start from now; a rule whose start is ahead previews from its start.
    response = api.call("POST", "/api/v1/recurrences/preview?n=3", "/recurrences/preview", json=rule)
    assert response.get_json()["occurrences"] == [
        "2027-03-28T03:00:00+02:00",
        "2027-03-29T02:30:00+02:00",
        "2027-03-30T02:30:00+02:00",
    ]
    assert count(conn) == 0


def test_the_same_idempotency_key_returns_the_first_and_another_body_is_409(api: Api, conn: Conn) -> None:
    key = {"Idempotency-Key": "weekly-1"}
    first = api.call("POST", "/api/v1/recurrences", "/recurrences", json=WEEKLY, headers=key)
    again = api.call("POST", "/api/v1/recurrences", "/recurrences", json=WEEKLY, headers=key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    other = api.call("POST", "/api/v1/recurrences", "/recurrences", json=WEEKLY | {"subject": "x"}, headers=key)
    assert other.status_code == 409 and other.get_json()["error"]["field"] == "idempotency_key"
    assert count(conn) == 1


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"preset": None, "cron": "0 9 * *"}, "cron", "exactly 5 fields"),
        ({"preset": None, "cron": "0 25 * * *"}, "cron", "not a valid cron expression"),
        ({"preset": None, "cron": "0 9 30 2 *"}, "cron", "never fires"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone", "IANA time zone"),
        ({"starts_at": "2030-06-01T00:00:00Z", "ends_at": "2030-05-01T00:00:00Z"}, "ends_at", "after starts_at"),
        ({"ends_at": "2020-01-01T00:00:00Z", "starts_at": "2019-01-01T00:00:00Z"}, "ends_at", "never fires"),
        ({"preset": {"kind": "weekly", "days": ["someday"]}}, "preset", "days must be"),
        ({"preset": None}, "cron", "give a cron expression or a preset"),
        ({"cron": "0 9 * * *"}, "cron", "not both"),
        ({"count": 0}, "count", "whole number"),
        ({"to": []}, "to", "at least one recipient"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_input_is_422_with_field_and_reason_and_stores_nothing(
    api: Api, conn: Conn, changes: dict[str, Any], field: str, reason: str
) -> None:
    response = api.call("POST", "/api/v1/recurrences", "/recurrences", json=WEEKLY | changes)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["field"] == field and reason in error["message"]
    assert count(conn) == 0


def test_a_rule_more_frequent_than_the_minimum_interval_is_422(web_env: dict[str, str], conn: Conn) -> None:
    app = make_app(web_env | {"RECURRENCE_MIN_INTERVAL": "300"})
    try:
        alice = emails.ensure_user(conn, email="alice@example.com", name="Alice")
        api = Api(app.test_client(), tokens.create(conn, alice, "tests")[1])
        body = WEEKLY | {"preset": None, "cron": "*/2 * * * *"}
        response = api.call("POST", "/api/v1/recurrences", "/recurrences", json=body)
        assert response.status_code == 422
        assert response.get_json()["error"]["field"] == "cron"
        assert "RECURRENCE_MIN_INTERVAL" in response.get_json()["error"]["message"]
        assert count(conn) == 0
        ok = api.call("POST", "/api/v1/recurrences", "/recurrences", json=body | {"cron": "*/5 * * * *"})
        assert ok.status_code == 201
    finally:
        app.extensions["reachdbox"].close()


def test_pause_resume_edit_and_delete(api: Api, conn: Conn) -> None:
    rid = api.call("POST", "/api/v1/recurrences", "/recurrences", json=WEEKLY).get_json()["id"]
    path = "/recurrences/{recurrence_id}"
    paused = api.call("POST", f"/api/v1/recurrences/{rid}/pause", path + "/pause").get_json()
    assert paused["status"] == "paused" and paused["next_occurrence_at"] is None and paused["next_occurrences"] == []
    assert paused["paused_reason"] == "paused by its owner"
    resumed = api.call("POST", f"/api/v1/recurrences/{rid}/resume", path + "/resume").get_json()
    assert resumed["status"] == "active" and resumed["next_occurrence_at"] is not None
    edited = api.call("PATCH", f"/api/v1/recurrences/{rid}", path, json={"preset": {"kind": "daily", "time": "07:30"}})
    assert edited.get_json()["summary"] == "Every day at 07:30, Europe/Paris"
    bad = api.call("PATCH", f"/api/v1/recurrences/{rid}", path, json={"cron": "nope"})
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "cron"
    deleted = api.call("DELETE", f"/api/v1/recurrences/{rid}", path)
    assert deleted.get_json() == {"id": rid, "status": "deleted", "cancelled": 0}
    assert api.call("GET", f"/api/v1/recurrences/{rid}", path).status_code == 404
    assert api.call("POST", f"/api/v1/recurrences/{rid}/resume", path + "/resume").status_code == 404


def test_another_users_recurrence_is_404(api: Api, conn: Conn, client: FlaskClient) -> None:
    rid = api.call("POST", "/api/v1/recurrences", "/recurrences", json=WEEKLY).get_json()["id"]
    bob = emails.ensure_user(conn, email="bob@example.com", name="Bob")
    other = Api(client, tokens.create(conn, bob, "tests")[1])
    path = "/recurrences/{recurrence_id}"
    assert other.call("GET", f"/api/v1/recurrences/{rid}", path).status_code == 404
    assert other.call("POST", f"/api/v1/recurrences/{rid}/pause", path + "/pause").status_code == 404
    assert other.call("DELETE", f"/api/v1/recurrences/{rid}", path).status_code == 404
    assert other.call("GET", "/api/v1/recurrences", "/recurrences").get_json()["recurrences"] == []
