"""Bulk actions (tasks/domain/bulk.py, webapp/bulk.py): the exact count, the typed count, the
snapshot (emails changed meanwhile skipped and reported, emails matching later untouched), undo
within its window, the audit line, and the roles. The job's work is ``bulk.run`` on a
connection of the test's, as the worker's job runs it (tasks/queue/bulk.py)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import audit, bulk, emails, orgs, tokens
from tasks.domain.models import Scope, Status, User
from tests.support.openapi_check import check
from tests.support.web import csrf_token


@pytest.fixture
def org(conn: Conn, owner: User) -> Scope:
    return orgs.personal_scope(conn, owner.id)


def schedule(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], n: int, subject: str
) -> list[Any]:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    return [
        emails.schedule(conn, owner=owner, draft=make_draft(subject=subject, send_at=at), settings=settings)[0]
        for _ in range(n)
    ]


def job_status(conn: Conn, job_id: int | None) -> str | None:
    row = conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,)).fetchone()
    return row["status"] if row else None


def stored(conn: Conn) -> tuple[int, int, int, int]:
    """(bulk actions, snapshot rows, bulk audit lines, bulk jobs)."""
    row = conn.execute(
        """SELECT (SELECT count(*) FROM bulk_actions) AS a, (SELECT count(*) FROM bulk_action_emails) AS e,
                  (SELECT count(*) FROM org_audit WHERE action LIKE 'bulk.%%') AS l,
                  (SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'bulk_action') AS j"""
    ).fetchone()
    assert row is not None
    return row["a"], row["e"], row["l"], row["j"]


def everything(q: str) -> bulk.Selection:
    return bulk.Selection(q=q, view="all")


def test_the_preview_counts_exactly_what_the_action_applies_to(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    promos = schedule(conn, owner, settings, make_draft, 3, "Promo week")
    schedule(conn, owner, settings, make_draft, 2, "Invoice")
    emails.cancel(conn, org, promos[0].id)

    cancel = bulk.preview(conn, org, everything("promo"), "cancel")
    retry = bulk.preview(conn, org, everything("promo"), "retry")
    picked = bulk.preview(conn, org, bulk.Selection(q="promo", ids=(promos[1].id, uuid.uuid4())), "cancel")

    assert (cancel.count, cancel.left) == (2, {"cancelled": 1})
    assert {e.id for e in cancel.sample} == {promos[1].id, promos[2].id}
    assert (retry.count, retry.left) == (0, {"cancelled": 1, "scheduled": 2})
    assert picked.count == 1 and [e.id for e in picked.sample] == [promos[1].id]
    assert stored(conn) == (0, 0, 0, 0)


@pytest.mark.parametrize("typed", [None, "", "100", "1O1"])
def test_over_100_the_typed_count_must_be_the_count_or_nothing_is_stored(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any], typed: str | None
) -> None:
    schedule(conn, owner, settings, make_draft, 101, "Many")

    with pytest.raises(errors.ValidationError) as refused:
        bulk.confirm(conn, org, everything("many"), "cancel", {}, confirm_count=typed)

    assert refused.value.field == "confirm_count"
    assert stored(conn) == (0, 0, 0, 0)
    bulk.confirm(conn, org, everything("many"), "cancel", {}, confirm_count="101")
    assert stored(conn) == (1, 101, 1, 1)


def test_a_count_that_changed_since_the_page_was_shown_is_refused(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    schedule(conn, owner, settings, make_draft, 3, "Few")
    with pytest.raises(errors.ValidationError, match="now holds 3 emails, not 2") as refused:
        bulk.confirm(conn, org, everything("few"), "cancel", {}, expected=2)
    assert refused.value.field == "confirm_count" and stored(conn) == (0, 0, 0, 0)


def test_a_cancel_acts_on_the_snapshot_only_and_reports_what_changed_meanwhile(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    first = schedule(conn, owner, settings, make_draft, 4, "Sale")
    bulk_id = bulk.confirm(conn, org, everything("sale"), "cancel", {})
    # Meanwhile: one is cancelled by hand, one moved; a new one matches the search.
    emails.cancel(conn, org, first[0].id)
    emails.reschedule(
        conn, org, first[1].id, send_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=8), settings=settings
    )
    [later] = schedule(conn, owner, settings, make_draft, 1, "Sale")

    done = bulk.run(conn, bulk_id, settings)

    assert done is not None and (done["state"], done["total"], done["applied"], done["skipped"]) == ("done", 4, 2, 2)
    reasons = {(r["reason"], r["n"]) for r in bulk.reasons(conn, bulk_id)}
    assert reasons == {("changed since confirmed: now cancelled", 1), ("changed since confirmed: edited or moved", 1)}
    moved = emails.get(conn, org, first[1].id)
    assert moved.status == Status.SCHEDULED and job_status(conn, moved.job_id) == "todo"
    for e in first[2:]:
        now = emails.get(conn, org, e.id)
        assert now.status == Status.CANCELLED and job_status(conn, e.job_id) == "cancelled"
        assert emails.timeline(conn, org, e.id)[-1].detail == {"bulk_action_id": str(bulk_id)}
    untouched = emails.get(conn, org, later.id)
    assert untouched.status == Status.SCHEDULED and job_status(conn, untouched.job_id) == "todo"
    [line] = [e for e in audit.entries(conn, org.org_id or 0) if e.action == "bulk.cancel"]
    assert line.actor_id == owner.id and line.detail["count"] == 4 and line.detail["query"] == "sale"
    assert line.detail["bulk_action_id"] == str(bulk_id)


def test_undo_within_the_window_brings_cancelled_emails_back_with_new_jobs(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    sent = schedule(conn, owner, settings, make_draft, 3, "Oops")
    bulk_id = bulk.confirm(conn, org, everything("oops"), "cancel", {})
    bulk.run(conn, bulk_id, settings)

    undone = bulk.undo(conn, org, bulk_id, settings=settings)

    assert (undone.state, undone.restored, undone.undo_skipped) == ("undone", 3, 0)
    for e in sent:
        now = emails.get(conn, org, e.id)
        assert now.status == Status.SCHEDULED and now.next_attempt_at == e.next_attempt_at
        assert now.job_id != e.job_id and job_status(conn, now.job_id) == "todo"
    assert any(e.action == "bulk.undo" for e in audit.entries(conn, org.org_id or 0))
    with pytest.raises(errors.Conflict, match="undone already"):
        bulk.undo(conn, org, bulk_id, settings=settings)


def test_undo_is_refused_once_the_window_has_passed(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any], monkeypatch: Any
) -> None:
    monkeypatch.setattr(bulk, "UNDO_WINDOW", dt.timedelta(0))
    sent = schedule(conn, owner, settings, make_draft, 2, "Late")
    bulk_id = bulk.confirm(conn, org, everything("late"), "cancel", {})
    bulk.run(conn, bulk_id, settings)

    with pytest.raises(errors.Conflict, match="too late to undo"):
        bulk.undo(conn, org, bulk_id, settings=settings)
    assert {emails.get(conn, org, e.id).status for e in sent} == {Status.CANCELLED}


def test_undo_of_a_reschedule_skips_the_emails_changed_after_it(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    sent = schedule(conn, owner, settings, make_draft, 3, "Move")
    bulk_id = bulk.confirm(
        conn, org, everything("move"), "reschedule", bulk.parse_params("reschedule", {"shift": "+2h"})
    )
    bulk.run(conn, bulk_id, settings)
    moved = [emails.get(conn, org, e.id) for e in sent]
    assert [m.send_at - e.send_at for m, e in zip(moved, sent, strict=True)] == [dt.timedelta(hours=2)] * 3
    emails.cancel(conn, org, sent[0].id)  # changed after the action: left as it is

    undone = bulk.undo(conn, org, bulk_id, settings=settings)

    assert (undone.restored, undone.undo_skipped) == (2, 1)
    assert emails.get(conn, org, sent[0].id).status == Status.CANCELLED
    for e in sent[1:]:
        back = emails.get(conn, org, e.id)
        assert back.send_at == e.send_at and back.status == Status.SCHEDULED and job_status(conn, back.job_id) == "todo"
    assert [(r["stage"], r["reason"]) for r in bulk.reasons(conn, bulk_id)] == [
        ("undo", "changed since the action: now cancelled")
    ]


def test_send_now_and_retry_are_not_undoable(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    [e] = schedule(conn, owner, settings, make_draft, 1, "Now")
    bulk_id = bulk.confirm(conn, org, everything("now"), "send_now", {})
    bulk.run(conn, bulk_id, settings)
    now = emails.get(conn, org, e.id)
    assert now.next_attempt_at < e.next_attempt_at - dt.timedelta(minutes=4) and job_status(conn, now.job_id) == "todo"
    with pytest.raises(errors.Conflict, match="cannot be undone"):
        bulk.undo(conn, org, bulk_id, settings=settings)


def test_a_reschedule_into_the_past_is_refused(
    conn: Conn, owner: User, org: Scope, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    schedule(conn, owner, settings, make_draft, 2, "Past")
    with pytest.raises(errors.ValidationError) as to:
        bulk.parse_params("reschedule", {"to": "2020-01-01T00:00:00Z"})
    with pytest.raises(errors.ValidationError) as shift:
        bulk.confirm(conn, org, everything("past"), "reschedule", bulk.parse_params("reschedule", {"shift": "-2h"}))
    with pytest.raises(errors.ValidationError) as syntax:
        bulk.parse_params("reschedule", {"shift": "2 hours"})
    assert (to.value.field, shift.value.field, syntax.value.field) == ("to", "shift", "shift")
    assert stored(conn) == (0, 0, 0, 0)


# ---- the web ----


@pytest.fixture
def alice(client: FlaskClient, sign_in: Callable[..., Any]) -> User:
    return sign_in(client, "alice@example.com", name="Alice")


def test_the_list_offers_select_all_and_the_confirmation_shows_the_count(
    client: FlaskClient, alice: User, conn: Conn, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    schedule(conn, alice, settings, make_draft, 3, "Webinar")
    page = client.get("/?view=all&q=webinar").get_data(as_text=True)
    assert "Select all 3 matching this search" in page and page.count('class="pick"') == 3

    confirm = client.get("/bulk/new?action=cancel&q=webinar&view=all&all=1").get_data(as_text=True)
    assert "Cancel 3 emails?" in confirm and 'name="confirm_count"' not in confirm

    response = client.post(
        "/bulk",
        data={
            "csrf_token": csrf_token(client),
            "action": "cancel",
            "q": "webinar",
            "view": "all",
            "all": "1",
            "expected": "3",
        },
    )
    assert response.status_code == 302
    bulk_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert client.get(f"/bulk/{bulk_id}.json").get_json()["state"] == "pending"


def test_nothing_picked_and_not_select_all_acts_on_nothing(
    client: FlaskClient, alice: User, conn: Conn, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    schedule(conn, alice, settings, make_draft, 2, "Unpicked")
    shown = client.get("/bulk/new?action=cancel&q=unpicked&view=all")
    assert shown.status_code == 302 and "/bulk/new" not in shown.headers["Location"]
    form = {"csrf_token": csrf_token(client), "action": "cancel", "q": "unpicked", "view": "all"}
    assert client.post("/bulk", data=form).status_code == 302
    assert stored(conn) == (0, 0, 0, 0)
    assert "Pick some emails first" in client.get("/").get_data(as_text=True)


def test_a_wrong_typed_count_reshows_the_form_with_the_reason(
    client: FlaskClient, alice: User, conn: Conn, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    schedule(conn, alice, settings, make_draft, 101, "Lots")
    form = {"csrf_token": csrf_token(client), "action": "cancel", "q": "lots", "view": "all", "all": "1"}

    response = client.post("/bulk", data=form | {"confirm_count": "110"})

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert re.search(r'id="confirm-count-error"[^>]*>110 is not the number of emails \(101\)', page)
    assert stored(conn) == (0, 0, 0, 0)


def test_a_viewer_may_not_act_and_another_organization_sees_nothing(
    app: Any, client: FlaskClient, alice: User, conn: Conn, settings: Settings, make_draft: Callable[..., Any],
    sign_in: Callable[..., Any],
) -> None:  # fmt: skip
    schedule(conn, alice, settings, make_draft, 2, "Team")
    alice_org = orgs.personal_org_id(conn, alice.id)
    form = {"csrf_token": csrf_token(client), "action": "cancel", "q": "team", "view": "all", "all": "1"}
    bulk_id = client.post("/bulk", data=form).headers["Location"].rsplit("/", 1)[-1]

    viewer = app.test_client()
    vera = sign_in(viewer, "vera@example.com", name="Vera")
    orgs.add_member(conn, alice_org, vera, orgs.Role.VIEWER)
    viewer.post("/orgs/switch", data={"org_id": alice_org, "csrf_token": csrf_token(viewer)})
    token = csrf_token(viewer)
    assert 'id="bulk-form"' not in viewer.get("/?view=all&q=team").get_data(as_text=True)
    assert viewer.post("/bulk", data=form | {"csrf_token": token}).status_code == 403
    assert viewer.get("/bulk/new?action=cancel&q=team&all=1").status_code == 403
    assert viewer.post(f"/bulk/{bulk_id}/undo", data={"csrf_token": token}).status_code == 403
    assert viewer.get(f"/bulk/{bulk_id}").status_code == 200

    outsider = app.test_client()
    sign_in(outsider, "olga@example.com", name="Olga")
    token = csrf_token(outsider)
    assert outsider.get(f"/bulk/{bulk_id}").status_code == 404
    assert outsider.get(f"/bulk/{bulk_id}.json").status_code == 404
    assert outsider.post(f"/bulk/{bulk_id}/undo", data={"csrf_token": token}).status_code == 404
    # Olga's own "select all" of the same search finds none of Alice's emails.
    assert outsider.post("/bulk", data=form | {"csrf_token": token}).status_code == 422
    assert db.one(conn, "bulk_get", id=uuid.UUID(bulk_id), any_org=True, org_id=0)["state"] == "pending"


def _insert(conn: Conn, owner: User, subject: str, status: str, error: str) -> None:
    org_id = orgs.personal_org_id(conn, owner.id)
    conn.execute(
        """INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                               status, message_id, last_error, transport)
           VALUES (%s, %s, 'a@example.com', ARRAY['x@gone.example'], %s, 'b', now() + interval '1 hour',
                   now() + interval '1 hour', %s, %s, %s, 'smtp')""",
        (org_id, owner.id, subject, status, f"<{uuid.uuid4()}@t>", error),
    )


def test_a_failures_group_leads_to_a_bulk_retry_and_a_cancel_of_its_pending_retries(
    client: FlaskClient, alice: User, conn: Conn
) -> None:
    refused = "RCPT TO: 550 5.1.1 mailbox unavailable"
    for i in range(2):
        _insert(conn, alice, f"Refused {i}", "failed", refused)
    _insert(conn, alice, "Waiting", "scheduled", refused)  # failed once the same way, waits for its retry

    page = client.get("/failures").get_data(as_text=True)
    retry = re.search(r'class="btn small group-retry" href="([^"]+)"', page)
    cancel = re.search(r'class="btn small group-cancel" href="([^"]+)"', page)
    assert retry and cancel

    retrying = client.get(retry[1].replace("&amp;", "&")).get_data(as_text=True)
    cancelling = client.get(cancel[1].replace("&amp;", "&")).get_data(as_text=True)
    assert "Retry 2 emails?" in retrying and "Cancel 1 email?" in cancelling
    assert "status:scheduled code:550 code:5.1.1 domain:gone.example" in cancelling


def test_the_lists_select_all_count_stops_at_its_cap(
    conn: Conn, settings: Settings, make_draft: Callable[..., Any], monkeypatch: Any, client: FlaskClient, alice: User
) -> None:
    schedule(conn, alice, settings, make_draft, 4, "Capped")
    monkeypatch.setattr(bulk, "COUNT_CAP", 3)
    assert bulk.count(conn, orgs.personal_scope(conn, alice.id), everything("capped"), cap=3) == 3
    page = client.get("/?view=all&q=capped").get_data(as_text=True)
    assert "Select all 3+ matching this search" in page
    assert "Cancel 4 emails?" in client.get("/bulk/new?action=cancel&q=capped&all=1").get_data(as_text=True)


# ---- the API ----


def test_the_api_counts_confirms_follows_and_undoes_a_bulk_cancel(
    client: FlaskClient, conn: Conn, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    ann = emails.ensure_user(conn, email="ann@example.com", name="Ann")
    headers = {"Authorization": f"Bearer {tokens.create(conn, ann, 'bulk')[1]}"}
    sent = schedule(conn, ann, settings, make_draft, 101, "Api sale")

    def call(method: str, url: str, spec: str, body: Any = None) -> Any:
        response = client.open(url, method=method, json=body, headers=headers)
        check(method, spec, response.status_code, response.get_json())
        return response

    counted = call(
        "POST", "/api/v1/emails/bulk", "/emails/bulk", {"action": "cancel", "q": "api sale", "dry_run": True}
    )
    assert counted.status_code == 200 and counted.get_json()["count"] == 101
    assert counted.get_json()["confirm_count_required"] is True
    missing = call("POST", "/api/v1/emails/bulk", "/emails/bulk", {"action": "cancel", "q": "api sale"})
    assert missing.status_code == 422 and missing.get_json()["error"]["field"] == "confirm_count"
    assert stored(conn) == (0, 0, 0, 0)

    started = call(
        "POST", "/api/v1/emails/bulk", "/emails/bulk", {"action": "cancel", "q": "api sale", "confirm_count": 101}
    )
    assert started.status_code == 202
    url = started.headers["Location"]
    bulk.run(conn, started.get_json()["bulk_action"]["id"], settings)  # what the worker's job does
    done = call("GET", url, "/emails/bulk/{bulk_id}").get_json()["bulk_action"]
    assert (done["state"], done["applied"], done["skipped"]) == ("done", 101, 0) and done["undo_seconds_left"] > 0

    undone = call("POST", url + "/undo", "/emails/bulk/{bulk_id}/undo").get_json()["bulk_action"]
    assert (undone["state"], undone["restored"]) == ("undone", 101)
    assert {emails.get(conn, orgs.personal_scope(conn, ann.id), e.id).status for e in sent} == {Status.SCHEDULED}
    again = call("POST", url + "/undo", "/emails/bulk/{bulk_id}/undo")
    assert again.status_code == 409
