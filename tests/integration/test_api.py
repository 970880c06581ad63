"""The JSON API: every endpoint's success and error paths, checked against the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.core import db
from tasks.core.db import Conn
from tasks.domain import emails, tokens
from tests.support import invariants
from tests.support.openapi_check import check
from tests.support.web import make_app


def soon(seconds: float = 3600) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


class Api:
    """Call the API as one user (a personal access token) and check every answer against the spec."""

    def __init__(self, client: FlaskClient, token: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, url: str, spec_path: str, *, json: Any = None, headers: dict[str, str] | None = None):
        response = self.client.open(url, method=method, json=json, headers=self.headers | (headers or {}))
        check(method, spec_path, response.status_code, response.get_json())
        return response

    def create(self, **fields: Any):
        body = {"to": ["bob@example.com"], "subject": "Hello", "body_text": "Hi", "send_at": soon()} | fields
        return self.call("POST", "/api/v1/emails", "/emails", json=body)


@pytest.fixture
def api(client: FlaskClient, conn: Conn) -> Api:
    alice = emails.ensure_user(conn, email="alice@example.com", name="Alice")
    return Api(client, tokens.create(conn, alice, "tests")[1])


def test_create_schedules_the_email_and_its_job(api: Api, conn: Conn) -> None:
    response = api.create(send_at="2030-06-01T09:00:00+02:00", time_zone="Europe/Paris", cc=["carol@example.com"])

    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/emails/{body['id']}"
    assert body["status"] == "scheduled"
    assert body["send_at"] == "2030-06-01T07:00:00+00:00"
    assert body["send_at_local"] == "2030-06-01T09:00:00+02:00"
    assert (body["time_zone"], body["cc"]) == ("Europe/Paris", ["carol@example.com"])
    assert invariants.counts(conn) == {"scheduled": 1}


def test_send_now_creates_a_job_due_at_once(api: Api, conn: Conn) -> None:
    body = api.create(send_at=None, send_now=True).get_json()

    row = conn.execute("SELECT j.scheduled_at FROM emails e JOIN procrastinate_jobs j ON j.id = e.job_id").fetchone()
    assert row["scheduled_at"] <= dt.datetime.now(dt.UTC)
    assert body["status"] == "scheduled"


def test_the_same_idempotency_key_twice_creates_one_email(api: Api, conn: Conn) -> None:
    body = {"to": ["bob@example.com"], "subject": "Once", "body_text": "Hi", "send_at": "2030-01-01T00:00:00Z"}
    first = api.call("POST", "/api/v1/emails", "/emails", json=body, headers={"Idempotency-Key": "order-17"})

    again = api.call("POST", "/api/v1/emails", "/emails", json=body, headers={"Idempotency-Key": "order-17"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert invariants.counts(conn) == {"scheduled": 1}


def test_the_same_idempotency_key_with_another_body_is_409(api: Api, conn: Conn) -> None:
    body = {"to": ["bob@example.com"], "subject": "Once", "body_text": "Hi", "send_at": "2030-01-01T00:00:00Z"}
    api.call("POST", "/api/v1/emails", "/emails", json=body, headers={"Idempotency-Key": "k"})

    response = api.call(
        "POST", "/api/v1/emails", "/emails", json=body | {"subject": "Other"}, headers={"Idempotency-Key": "k"}
    )

    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == "idempotency_key"
    assert invariants.counts(conn) == {"scheduled": 1}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": ["not-an-address"]}, "to"),
        ({"to": []}, "to"),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"to": ["bob@example.com\r\nBcc: victim@example.com"]}, "to"),
        ({"send_at": "2030-01-01T09:00:00"}, "send_at"),
        ({"send_at": "2001-01-01T09:00:00Z"}, "send_at"),
        ({"send_at": "tomorrow"}, "send_at"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"body_text": 7}, "body_text"),
        ({"send_now": "yes"}, "send_now"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_input_is_422_naming_the_field(api: Api, conn: Conn, fields: dict[str, Any], field: str) -> None:
    response = api.create(**fields)

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field
    assert invariants.counts(conn) == {}


def test_every_problem_is_listed_in_details(api: Api) -> None:
    response = api.create(to=["nope"], subject="a\nb")

    error = response.get_json()["error"]
    assert {d["field"] for d in error["details"]} == {"to", "subject"}


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_is_400(api: Api, data: bytes) -> None:
    response = api.client.post("/api/v1/emails", data=data, headers=api.headers | {"Content-Type": "application/json"})

    assert response.status_code == 400
    check("POST", "/emails", 400, response.get_json())


@pytest.mark.parametrize("header", [None, "Bearer rdbx_unknown", "Bearer ", "Basic YWxpY2U6cHc=", "Token rdbx_x"])
def test_without_valid_credentials_it_is_401(client: FlaskClient, header: str | None) -> None:
    response = client.get("/api/v1/emails", headers={"Authorization": header} if header else {})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    check("GET", "/emails", 401, response.get_json())


@pytest.mark.parametrize(
    ("method", "url", "spec_path"),
    [
        ("POST", "/api/v1/emails", "/emails"),
        ("PATCH", "/api/v1/emails/00000000-0000-0000-0000-000000000000", "/emails/{email_id}"),
        ("POST", "/api/v1/batches", "/batches"),
    ],
)
def test_a_change_with_no_credentials_at_all_is_401_not_a_csrf_refusal(
    client: FlaskClient, conn: Conn, method: str, url: str, spec_path: str
) -> None:
    """No Authorization header and no session: nothing for a CSRF token to protect, so the API says
    how to authenticate (RFC 6750's challenge) instead of asking for a CSRF token."""
    body = {"to": ["bob@example.com"], "subject": "Hi", "body_text": "B", "send_now": True}

    response = client.open(url, method=method, json=body)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"]["code"] == "unauthenticated"
    check(method, spec_path, 401, response.get_json())
    assert invariants.counts(conn) == {}


def test_a_revoked_token_is_refused(client: FlaskClient, conn: Conn) -> None:
    user = emails.ensure_user(conn, email="alice@example.com")
    token, secret = tokens.create(conn, user, "old")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/emails", headers=headers).status_code == 200

    tokens.revoke(conn, token.org_id, user, token.id)

    assert client.get("/api/v1/emails", headers=headers).status_code == 401


def test_tokens_are_stored_only_as_a_hash(conn: Conn) -> None:
    user = emails.ensure_user(conn, email="alice@example.com")

    _token, secret = tokens.create(conn, user, "ci")

    row = conn.execute("SELECT token_hash, prefix FROM api_tokens").fetchone()
    assert secret not in str(row) and row["token_hash"] == tokens.digest(secret)
    assert secret.startswith(row["prefix"])


def test_list_filters_by_status_and_searches_recipient_and_subject(api: Api) -> None:
    api.create(subject="Invoice 100%", to=["ann@acme.example"])
    api.create(subject="Lunch", to=["bob@example.com"])
    cancelled = api.create(subject="Invoice draft", to=["cy@acme.example"]).get_json()
    api.call("POST", f"/api/v1/emails/{cancelled['id']}/cancel", "/emails/{email_id}/cancel")

    def subjects(query: str) -> list[str]:
        response = api.call("GET", f"/api/v1/emails?{query}", "/emails")
        return [e["subject"] for e in response.get_json()["emails"]]

    assert subjects("") == ["Invoice draft", "Lunch", "Invoice 100%"]
    assert subjects("status=scheduled") == ["Lunch", "Invoice 100%"]
    assert subjects("status=cancelled") == ["Invoice draft"]
    assert subjects("q=acme.example") == ["Invoice draft", "Invoice 100%"]
    assert subjects("q=100%25") == ["Invoice 100%"]
    assert subjects("q=_") == []  # matched literally, not as a wildcard


@pytest.mark.parametrize(
    "query",
    ["status=bogus", "status=", "cursor=garbage", "limit=0", "limit=1000", "limit=x", "batch_id=", "batch_id=x"],
)
def test_bad_list_parameters_are_422(api: Api, query: str) -> None:
    assert api.call("GET", f"/api/v1/emails?{query}", "/emails").status_code == 422


def test_pagination_is_stable_under_inserts(api: Api) -> None:
    """Emails created while a client pages through never shift, repeat or hide a row."""
    original = [api.create(subject=f"old {i}").get_json()["id"] for i in range(7)]
    newest_first = list(reversed(original))

    page1 = api.call("GET", "/api/v1/emails?limit=3", "/emails").get_json()
    for i in range(5):
        api.create(subject=f"new {i}")
    page2 = api.call("GET", f"/api/v1/emails?limit=3&cursor={page1['next_cursor']}", "/emails").get_json()
    page3 = api.call("GET", f"/api/v1/emails?limit=3&cursor={page2['next_cursor']}", "/emails").get_json()

    seen = [e["id"] for page in (page1, page2, page3) for e in page["emails"]]
    assert seen == newest_first
    assert page3["next_cursor"] is None


def test_get_returns_the_body_and_the_timeline(api: Api) -> None:
    created = api.create(body_text="The body", body_html="<p>The body</p>").get_json()

    response = api.call("GET", f"/api/v1/emails/{created['id']}", "/emails/{email_id}")

    body = response.get_json()
    assert (body["body_text"], body["body_html"]) == ("The body", "<p>The body</p>")
    assert [e["kind"] for e in body["events"]] == ["scheduled"]
    assert body["why"].startswith("Waiting for its time")


@pytest.mark.parametrize("email_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_an_unknown_email_is_404(api: Api, email_id: str) -> None:
    for method, url, spec in (
        ("GET", f"/api/v1/emails/{email_id}", "/emails/{email_id}"),
        ("PATCH", f"/api/v1/emails/{email_id}", "/emails/{email_id}"),
        ("POST", f"/api/v1/emails/{email_id}/cancel", "/emails/{email_id}/cancel"),
        ("POST", f"/api/v1/emails/{email_id}/send-now", "/emails/{email_id}/send-now"),
    ):
        response = api.call(method, url, spec, json={"subject": "x"} if method == "PATCH" else None)
        assert response.status_code == 404, (method, url)


def test_patch_reschedules_with_a_new_job(api: Api, conn: Conn) -> None:
    created = api.create(send_at=soon(60)).get_json()
    old_job = conn.execute("SELECT job_id FROM emails").fetchone()["job_id"]

    response = api.call(
        "PATCH",
        f"/api/v1/emails/{created['id']}",
        "/emails/{email_id}",
        json={"send_at": "2031-03-01T10:00:00-05:00", "time_zone": "America/New_York"},
    )

    body = response.get_json()
    assert response.status_code == 200
    assert (body["send_at"], body["time_zone"]) == ("2031-03-01T15:00:00+00:00", "America/New_York")
    job = conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (old_job,)).fetchone()
    assert job["status"] == "cancelled"
    assert conn.execute("SELECT job_id FROM emails").fetchone()["job_id"] is None  # beyond the horizon now
    assert invariants.jobs_without_email(conn) == []


def test_patch_edits_content_while_scheduled_and_keeps_the_job(api: Api, conn: Conn) -> None:
    created = api.create(send_at=soon(60)).get_json()
    job = conn.execute("SELECT job_id FROM emails").fetchone()["job_id"]

    body = api.call(
        "PATCH",
        f"/api/v1/emails/{created['id']}",
        "/emails/{email_id}",
        json={"subject": "Better subject", "to": ["zed@example.com"], "body_text": "New"},
    ).get_json()

    assert (body["subject"], body["to"], body["body_text"]) == ("Better subject", ["zed@example.com"], "New")
    assert conn.execute("SELECT job_id FROM emails").fetchone()["job_id"] == job
    kinds = [
        e["kind"] for e in api.call("GET", f"/api/v1/emails/{created['id']}", "/emails/{email_id}").get_json()["events"]
    ]
    assert kinds == ["scheduled", "edited"]


@pytest.mark.parametrize(
    ("changes", "status"),
    [({}, 422), ({"subject": "a\rb"}, 422), ({"send_at": "2001-01-01T00:00:00Z"}, 422), ({"owner_id": 2}, 422)],
)
def test_bad_patches_change_nothing(api: Api, conn: Conn, changes: dict[str, Any], status: int) -> None:
    created = api.create().get_json()

    response = api.call("PATCH", f"/api/v1/emails/{created['id']}", "/emails/{email_id}", json=changes)

    assert response.status_code == status
    assert db.one(conn, "get_email", id=created["id"], any_org=True, org_id=0)["subject"] == "Hello"


def _mark_sent(conn: Conn, email_id: str) -> None:
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", (email_id,))
    conn.execute("UPDATE emails SET status = 'sent', sent_at = now() WHERE id = %s", (email_id,))


def test_an_email_already_sent_cannot_be_cancelled_edited_or_sent_now(api: Api, conn: Conn) -> None:
    email_id = api.create(send_at=soon(60)).get_json()["id"]
    _mark_sent(conn, email_id)

    for method, url, spec in (
        ("POST", f"/api/v1/emails/{email_id}/cancel", "/emails/{email_id}/cancel"),
        ("POST", f"/api/v1/emails/{email_id}/send-now", "/emails/{email_id}/send-now"),
        ("PATCH", f"/api/v1/emails/{email_id}", "/emails/{email_id}"),
    ):
        response = api.call(method, url, spec, json={"subject": "late"} if method == "PATCH" else None)
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "too_late"
    assert invariants.counts(conn) == {"sent": 1}


def test_cancel_then_cancel_again_is_a_no_op(api: Api, conn: Conn) -> None:
    email_id = api.create().get_json()["id"]

    first = api.call("POST", f"/api/v1/emails/{email_id}/cancel", "/emails/{email_id}/cancel")
    second = api.call("POST", f"/api/v1/emails/{email_id}/cancel", "/emails/{email_id}/cancel")

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.get_json()["status"] == "cancelled"
    assert invariants.counts(conn) == {"cancelled": 1}


def test_send_now_moves_the_email_to_now(api: Api, conn: Conn) -> None:
    email_id = api.create(send_at=soon(3000)).get_json()["id"]

    body = api.call("POST", f"/api/v1/emails/{email_id}/send-now", "/emails/{email_id}/send-now").get_json()

    assert dt.datetime.fromisoformat(body["next_attempt_at"]) <= dt.datetime.now(dt.UTC)
    assert invariants.waiting_without_job(conn, 600) == []


CSV = "email,first_name\nann@example.com,Ann\nnot-an-address,Bad\nbob@example.com,Bob\n"


def _batch(**fields: Any) -> dict[str, Any]:
    return {
        "csv": CSV,
        "subject": "Hi {{first_name}}",
        "body_text": "Hello {{ first_name }}!",
        "min_delay_seconds": 60,
    } | fields


def test_a_batch_dry_run_previews_and_creates_nothing(api: Api, conn: Conn) -> None:
    response = api.call("POST", "/api/v1/batches", "/batches", json=_batch(dry_run=True))

    body = response.get_json()
    assert response.status_code == 200
    assert body["accepted"] == 2
    assert [(p["to"], p["subject"], p["body_text"]) for p in body["preview"]] == [
        ("ann@example.com", "Hi Ann", "Hello Ann!"),
        ("bob@example.com", "Hi Bob", "Hello Bob!"),
    ]
    assert [(r["line"], r["value"]) for r in body["rejected"]] == [(3, "not-an-address")]
    assert invariants.counts(conn) == {}


def test_a_batch_is_created_read_and_cancelled(api: Api, conn: Conn) -> None:
    created = api.call("POST", "/api/v1/batches", "/batches", json=_batch())
    batch_id = created.get_json()["batch"]["id"]

    read = api.call("GET", f"/api/v1/batches/{batch_id}", "/batches/{batch_id}").get_json()["batch"]
    cancel = api.call("POST", f"/api/v1/batches/{batch_id}/cancel", "/batches/{batch_id}/cancel").get_json()
    listed = api.call("GET", f"/api/v1/emails?batch_id={batch_id}", "/emails").get_json()["emails"]

    assert created.status_code == 201
    assert (read["total"], read["pending"], read["sent"]) == (2, 2, 0)
    assert (cancel["cancelled"], cancel["batch"]["cancelled"], cancel["batch"]["pending"]) == (2, 2, 0)
    assert {e["status"] for e in listed} == {"cancelled"} and len(listed) == 2
    assert invariants.jobs_without_email(conn) == []
    live_jobs = conn.execute("SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo'").fetchone()
    assert live_jobs["n"] == 0


def test_a_repeated_batch_key_returns_the_first_batch_and_another_body_is_409(api: Api, conn: Conn) -> None:
    headers = {"Idempotency-Key": "campaign-1"}
    first = api.call("POST", "/api/v1/batches", "/batches", json=_batch(), headers=headers)
    again = api.call("POST", "/api/v1/batches", "/batches", json=_batch(), headers=headers)
    other = api.call("POST", "/api/v1/batches", "/batches", json=_batch(subject="Yo"), headers=headers)

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.get_json()["batch"]["id"] == first.get_json()["batch"]["id"]
    assert invariants.counts(conn) == {"scheduled": 2}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"csv": "name\nann\n"}, "csv"),
        ({"subject": "Hi {{last_name}}"}, "subject"),
        ({"subject": "Hi\r\nBcc: x@example.com"}, "subject"),
        ({"min_delay_seconds": -1}, "min_delay_seconds"),
        ({"hourly_cap": 0}, "hourly_cap"),
        ({"start_at": "2001-01-01T00:00:00Z"}, "start_at"),
        ({"csv": "email,first_name\nnope,X\n"}, "recipients"),
        ({"addresses": "a@example.com"}, "recipients"),
    ],
)
def test_bad_batches_are_422_and_create_nothing(api: Api, conn: Conn, fields: dict[str, Any], field: str) -> None:
    response = api.call("POST", "/api/v1/batches", "/batches", json=_batch(**fields))

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field
    assert invariants.counts(conn) == {}


def test_an_unknown_batch_is_404(api: Api) -> None:
    missing = "00000000-0000-0000-0000-000000000000"

    assert api.call("GET", f"/api/v1/batches/{missing}", "/batches/{batch_id}").status_code == 404
    assert api.call("POST", f"/api/v1/batches/{missing}/cancel", "/batches/{batch_id}/cancel").status_code == 404


def test_the_rate_limit_keys_live_under_the_redis_prefix(web_env: dict[str, str], settings: Any, conn: Conn) -> None:
    import redis

    app = make_app(web_env | {"API_RATE_LIMIT": "50/minute"})
    try:
        user = emails.ensure_user(conn, email="alice@example.com")
        app.test_client().get("/api/v1/emails", headers={"Authorization": f"Bearer {tokens.create(conn, user)[1]}"})

        keys = redis.Redis.from_url(settings.redis_url).keys(f"{settings.redis_prefix}ratelimit*")

        assert keys
    finally:
        app.extensions["reachdbox"].close()


def test_the_openapi_document_is_valid_and_covers_every_route(app: Any, client: FlaskClient) -> None:
    from openapi_spec_validator import validate

    document = client.get("/api/v1/openapi.json").get_json()
    validate(document)
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    served = {
        (rule.rule.removeprefix("/api/v1").replace("<", "{").replace(">", "}"), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/") and rule.endpoint != "api.openapi"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }

    assert documented == served


def test_a_lone_surrogate_is_400_not_a_crash(api: Api, conn: Conn) -> None:
    data = b'{"to": ["bob@example.com"], "subject": "\\ud800", "body_text": "x", "send_now": true}'

    response = api.client.post("/api/v1/emails", data=data, headers=api.headers | {"Content-Type": "application/json"})

    assert response.status_code == 400
    assert invariants.counts(conn) == {}


@pytest.mark.parametrize("send_at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+05:00"])
def test_a_send_time_out_of_range_is_422(api: Api, send_at: str) -> None:
    response = api.create(send_at=send_at)

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "send_at"


def test_a_batch_running_past_year_9999_is_422(api: Api) -> None:
    response = api.call(
        "POST",
        "/api/v1/batches",
        "/batches",
        json=_batch(start_at="9999-12-31T23:00:00Z", min_delay_seconds=86400),
    )

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "start_at"


def test_a_nul_character_in_a_list_value_rejects_that_line_only(api: Api, conn: Conn) -> None:
    recipients = [
        {"email": "ann@example.com", "first_name": "Ann"},
        {"email": "bob@example.com", "first_name": "B\x00"},
    ]

    body = api.call(
        "POST",
        "/api/v1/batches",
        "/batches",
        json={"recipients": recipients, "subject": "Hi", "body_text": "{{first_name}}"},
    ).get_json()

    assert body["accepted"] == 1
    assert [(r["line"], r["reason"]) for r in body["rejected"]] == [(2, "the body would contain a NUL character")]
    assert invariants.counts(conn) == {"scheduled": 1}


def test_null_cc_means_none(api: Api) -> None:
    body = api.create(cc=None, bcc=None, time_zone=None, idempotency_key=None).get_json()

    assert (body["cc"], body["bcc"], body["time_zone"]) == ([], [], "UTC")
