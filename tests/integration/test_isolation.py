"""Each user sees only their own mail: another user's ids answer 404 everywhere, changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks import db, emails, tokens
from tests.support import invariants
from tests.support.web import csrf_token

Conn = Any


@pytest.fixture
def bobs(conn: Conn, settings: Any, make_draft: Callable[..., Any]) -> dict[str, str]:
    """Bob's email and batch, which Alice will try to reach."""
    from tasks import batch_plan, batches

    bob = emails.ensure_user(conn, email="bob@example.com", name="Bob")
    email, _ = emails.schedule(conn, owner=bob, draft=make_draft(subject="Bob's secret"), settings=settings)
    plan = batch_plan.prepare(settings=settings, addresses="x@example.com\ny@example.com", subject="S", body_text="B")
    batch, _ = batches.create(conn, owner=bob, plan=plan, settings=settings)
    return {"email": str(email.id), "batch": str(batch.id)}


def _snapshot(conn: Conn) -> list[Any]:
    return conn.execute("SELECT id, status, subject, send_at, job_id, updated_at FROM emails ORDER BY id").fetchall()


def test_the_api_answers_404_for_another_users_email_and_changes_nothing(
    client: FlaskClient, conn: Conn, bobs: dict[str, str]
) -> None:
    alice = emails.ensure_user(conn, email="alice@example.com")
    headers = {"Authorization": f"Bearer {tokens.create(conn, alice)[1]}"}
    before = _snapshot(conn)
    e, b = bobs["email"], bobs["batch"]

    answers = {
        "read": client.get(f"/api/v1/emails/{e}", headers=headers).status_code,
        "edit": client.patch(f"/api/v1/emails/{e}", json={"subject": "pwned"}, headers=headers).status_code,
        "reschedule": client.patch(
            f"/api/v1/emails/{e}", json={"send_at": "2030-01-01T00:00:00Z"}, headers=headers
        ).status_code,
        "cancel": client.post(f"/api/v1/emails/{e}/cancel", headers=headers).status_code,
        "send-now": client.post(f"/api/v1/emails/{e}/send-now", headers=headers).status_code,
        "batch": client.get(f"/api/v1/batches/{b}", headers=headers).status_code,
        "batch-cancel": client.post(f"/api/v1/batches/{b}/cancel", headers=headers).status_code,
        "batch-list": client.get(f"/api/v1/emails?batch_id={b}", headers=headers).status_code,
    }
    listed = client.get("/api/v1/emails?status=all&q=secret", headers=headers).get_json()["emails"]

    assert set(answers.values()) == {404}, answers
    assert listed == []
    assert _snapshot(conn) == before


def test_the_pages_answer_404_for_another_users_email_and_change_nothing(
    client: FlaskClient, conn: Conn, bobs: dict[str, str], sign_in: Callable[..., Any]
) -> None:
    sign_in(client, "alice@example.com")
    token = csrf_token(client)
    before = _snapshot(conn)
    e, b = bobs["email"], bobs["batch"]

    answers = [
        client.get(f"/emails/{e}").status_code,
        client.post(f"/emails/{e}/cancel", data={"csrf_token": token}).status_code,
        client.post(f"/emails/{e}/send-now", data={"csrf_token": token}).status_code,
        client.post(f"/emails/{e}/resend", data={"csrf_token": token}).status_code,
        client.post(
            f"/emails/{e}/reschedule", data={"csrf_token": token, "send_at": "2030-01-01T00:00:00Z"}
        ).status_code,
        client.get(f"/batches/{b}").status_code,
        client.post(f"/batches/{b}/cancel", data={"csrf_token": token}).status_code,
    ]
    page = client.get("/?view=all").get_data(as_text=True)

    assert set(answers) == {404}
    assert "Bob&#39;s secret" not in page and "Bob's secret" not in page
    assert _snapshot(conn) == before


def test_the_live_stream_and_snapshot_refuse_another_users_email(
    client: FlaskClient, conn: Conn, bobs: dict[str, str], sign_in: Callable[..., Any]
) -> None:
    sign_in(client, "alice@example.com")

    stream = client.get(f"/live/stream?email_id={bobs['email']}")
    snapshot = client.get(f"/live/snapshot?ids={bobs['email']}&batches={bobs['batch']}").get_json()

    assert stream.status_code == 404
    assert snapshot["emails"] == [] and snapshot["batches"] == []
    assert snapshot["counts"]["all"] == 0


def test_tokens_of_another_user_cannot_be_revoked(client: FlaskClient, conn: Conn, sign_in: Callable[..., Any]) -> None:
    bob = emails.ensure_user(conn, email="bob@example.com")
    token, secret = tokens.create(conn, bob, "bob's")
    sign_in(client, "alice@example.com")

    response = client.post(f"/tokens/{token.id}/revoke", data={"csrf_token": csrf_token(client)})

    assert response.status_code == 404
    assert tokens.authenticate(conn, secret) is not None
    assert db.one(conn, "user_by_email", email="bob@example.com") is not None
    assert invariants.counts(conn) == {}
