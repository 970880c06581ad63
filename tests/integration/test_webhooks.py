"""Webhooks: the outbox commits with the status change (or not at all), and each attempt is
signed, logged and retried as documented (docs/webhooks.md).

The receivers are real HTTP servers on 127.0.0.1 (tests/support/hooks.py); signatures are
checked with the standardwebhooks library's own ``Webhook.verify``. The attempts are made
by the delivery task's own function (``deliver.attempt``), one at a time, so retries need
no waiting: each attempt's job is the one the previous attempt deferred.
"""

from __future__ import annotations

import asyncio
import dataclasses
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from psycopg.types.json import Jsonb

from tasks.core import crypto, db
from tasks.core.config import Settings
from tasks.domain import emails, feedback, org_settings, orgs, recurrences
from tasks.domain.models import Email, User, in_org
from tasks.queue import reconcile
from tasks.queue.app import app
from tasks.webhooks import deliver, endpoints, events
from tests.support.hooks import Answer, Receiver, verified
from tests.support.openapi_check import check_schema
from tests.support.slack_receiver import SlackReceiver
from tests.support.smtp_sink import free_port
from tests.support.web import csrf_token


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        webhook_allow_http=True,
        webhook_allow_private=True,
        webhook_retry_base=0.01,
        webhook_timeout=0.5,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def _org(conn: db.Conn, owner: User) -> int:
    return orgs.personal_org_id(conn, owner.id)


def _endpoint(
    conn: db.Conn, settings: Settings, owner: User, url: str, kinds: tuple[str, ...] = events.TYPES
) -> endpoints.Endpoint:
    return endpoints.create(conn, settings, _org(conn, owner), owner.id, url=url, event_types=list(kinds))


def _finish(conn: db.Conn, email: Email, status: str) -> None:
    """The send path's own statement: the email was being sent, and ended with ``status``."""
    conn.execute(
        "UPDATE emails SET status = 'sending', attempts = 1, data_started_at = now() WHERE id = %s", (email.id,)
    )
    db.all_rows(
        conn, "finish_emails", end_job=True, ids=[email.id], job_ids=[email.job_id], statuses=[status],
        replies=["250 2.0.0 queued"], errors=[None], transports=["primary"], refused=[Jsonb({})],
        provider_ids=[None],
    )  # fmt: skip


def _deliveries(conn: db.Conn) -> list[db.Row]:
    return conn.execute(
        "SELECT d.*, j.task_name, j.queue_name, j.args FROM webhook_deliveries d"
        " LEFT JOIN procrastinate_jobs j ON j.id = d.job_id ORDER BY d.created_at, d.id"
    ).fetchall()


def _attempt_all(database_url: str, settings: Settings, times: int, between: Callable[[int], None]) -> list[str]:
    """Make ``times`` attempts of the one delivery, each with the job the previous one left."""

    async def run() -> list[str]:
        pool = db.async_pool(database_url, size=2)
        await pool.open(wait=True)
        sender = deliver.Sender(settings)
        out = []
        try:
            for i in range(times):
                between(i)
                async with pool.connection() as conn:
                    cur = await conn.execute("SELECT id, job_id FROM webhook_deliveries ORDER BY created_at LIMIT 1")
                    row = await cur.fetchone()
                assert row is not None
                out.append(await deliver.attempt(pool, sender, str(row["id"]), row["job_id"]))
        finally:
            await sender.aclose()
            await pool.close()
        return out

    return asyncio.run(run())


def test_a_sent_email_and_its_delivery_commit_together_and_a_rollback_leaves_neither(
    conn: db.Conn, owner: User, hook_settings: Settings, make_draft: Callable[..., Any], receiver: Receiver
) -> None:
    _endpoint(conn, hook_settings, owner, receiver.url, ("email.sent", "email.failed"))
    [kept, rolled_back, uncertain] = [
        emails.schedule(conn, owner=owner, draft=make_draft(body_text="The secret plans"), settings=hook_settings)[0]
        for _ in range(3)
    ]

    class Undo(Exception):
        pass

    with pytest.raises(Undo), conn.transaction():
        _finish(conn, rolled_back, "sent")
        assert len(_deliveries(conn)) == 1  # inside the transaction, it is there
        raise Undo
    assert _deliveries(conn) == []  # rolled back: no event, no job

    _finish(conn, kept, "sent")
    _finish(conn, uncertain, "uncertain")  # not subscribed: nothing

    [row] = _deliveries(conn)
    assert (row["event_type"], row["status"], row["task_name"], row["queue_name"]) == (
        "email.sent", "pending", events.TASK, events.QUEUE,
    )  # fmt: skip
    assert row["args"] == {"delivery_id": str(row["id"])}
    payload = row["payload"]
    assert set(payload) == {"type", "timestamp", "data"} and payload["type"] == "email.sent"
    assert payload["timestamp"].endswith("Z")
    assert payload["data"] | {"sent_at": None} == {
        "email_id": str(kept.id), "status": "sent", "owner_id": owner.id, "batch_id": None, "recurrence_id": None,
        "to": ["bob@example.com"], "subject": "Hello", "attempts": 1, "transport": "primary",
        "reply": "250 2.0.0 queued", "error": None, "sent_at": None,
    }  # fmt: skip
    assert payload["data"]["sent_at"].endswith("Z")
    assert "secret plans" not in str(payload)  # never the body
    check_schema("EmailEvent", payload)  # as the OpenAPI document's webhooks describe it


def test_an_organization_without_a_subscribed_enabled_endpoint_gets_no_row(
    conn: db.Conn, owner: User, hook_settings: Settings, make_draft: Callable[..., Any], receiver: Receiver
) -> None:
    other = emails.ensure_user(conn, email="carol@example.com", name="Carol")
    _endpoint(conn, hook_settings, other, receiver.url)  # another organization's
    off = _endpoint(conn, hook_settings, owner, receiver.url, ("email.sent",))
    endpoints.update(conn, hook_settings, _org(conn, owner), owner.id, off.id, {"enabled": False})
    email = emails.schedule(conn, owner=owner, draft=make_draft(), settings=hook_settings)[0]

    _finish(conn, email, "sent")

    assert _deliveries(conn) == []


def test_down_then_500_then_back_every_attempt_has_the_same_webhook_id_and_a_valid_signature(
    conn: db.Conn, database_url: str, owner: User, hook_settings: Settings, make_draft: Callable[..., Any]
) -> None:
    port = free_port()
    down = Receiver(port)  # not listening yet: the first attempt finds nobody
    made = _endpoint(conn, hook_settings, owner, down.url, ("email.failed",))
    assert made.secret is not None and made.secret.startswith("whsec_")
    email = emails.schedule(conn, owner=owner, draft=make_draft(), settings=hook_settings)[0]
    _finish(conn, email, "failed")

    def between(i: int) -> None:
        if i == 1:
            down.answers = [Answer(500, b"x" * 3000)]
            down.start()

    try:
        outcomes = _attempt_all(database_url, hook_settings, 3, between)
    finally:
        down.stop()

    assert outcomes == ["pending", "pending", "delivered"]
    first, second = down.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body  # the same bytes every time
    for received in down.received:
        payload = verified(received, made.secret)
        assert payload["type"] == "email.failed" and payload["data"]["email_id"] == str(email.id)
    [row] = _deliveries(conn)
    assert row["status"] == "delivered" and row["attempts"] == 3 and row["job_id"] is None
    assert first.headers["webhook-id"] == endpoints.message_id(row["id"])
    log = endpoints.attempts(conn, _org(conn, owner), made.id, row["id"])
    assert [a["status_code"] for a in log] == [None, 500, 200]
    assert "Connect" in log[0]["error"] and log[1]["error"] == "answered 500"
    assert log[1]["response"] == "x" * 1024  # the first 1 KB
    assert log[2]["response"] == "ok" and all(a["latency_ms"] >= 0 for a in log)
    endpoint = endpoints.get(conn, _org(conn, owner), made.id)
    assert endpoint.failing_since is None and endpoint.enabled  # the success ended the run of failures


def test_a_slow_endpoint_times_out_and_the_retry_delivers(
    conn: db.Conn, database_url: str, owner: User, hook_settings: Settings, make_draft: Callable[..., Any],
    receiver: Receiver,
) -> None:  # fmt: skip
    _endpoint(conn, hook_settings, owner, receiver.url, ("email.sent",))
    receiver.answers = [Answer(200, b"late", delay=1.5), Answer(200, b"\x00\xff fine")]  # WEBHOOK_TIMEOUT: 0.5 s
    _finish(conn, emails.schedule(conn, owner=owner, draft=make_draft(), settings=hook_settings)[0], "sent")

    assert _attempt_all(database_url, hook_settings, 2, lambda i: None) == ["pending", "delivered"]

    [row] = _deliveries(conn)
    log = conn.execute("SELECT status_code, latency_ms, error FROM webhook_attempts ORDER BY id").fetchall()
    assert log[0]["status_code"] is None and log[0]["error"] == "no answer within 0.5 s"
    assert 450 <= log[0]["latency_ms"] < 1500
    assert log[1]["status_code"] == 200
    assert conn.execute("SELECT response FROM webhook_attempts ORDER BY id").fetchall()[1] == {
        "response": "\ufffd\ufffd fine"  # NUL and invalid UTF-8, kept as text PostgreSQL can hold
    }
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


def test_a_redirect_is_not_followed(
    conn: db.Conn, database_url: str, owner: User, hook_settings: Settings, make_draft: Callable[..., Any],
    receiver: Receiver,
) -> None:  # fmt: skip
    elsewhere = Receiver().start()
    try:
        _endpoint(conn, hook_settings, owner, receiver.url, ("email.sent",))
        receiver.default = Answer(307, b"", {"location": elsewhere.url})
        _finish(conn, emails.schedule(conn, owner=owner, draft=make_draft(), settings=hook_settings)[0], "sent")

        assert _attempt_all(database_url, hook_settings, 1, lambda i: None) == ["pending"]
    finally:
        elsewhere.stop()

    assert elsewhere.connections == 0 and elsewhere.received == []
    log = conn.execute("SELECT status_code, error FROM webhook_attempts").fetchall()
    assert log == [{"status_code": 307, "error": f"redirected (307) to {elsewhere.url}: not followed"}]


def test_after_a_day_of_retries_the_delivery_fails_and_after_three_days_the_endpoint_is_disabled_and_its_owner_told(
    conn: db.Conn, database_url: str, owner: User, hook_settings: Settings, make_draft: Callable[..., Any],
    receiver: Receiver,
) -> None:  # fmt: skip
    made = _endpoint(conn, hook_settings, owner, receiver.url, ("email.sent",))
    slack_receiver = SlackReceiver().start()  # the organization's own Slack channel is told too
    org_settings.set_slack_webhook(conn, hook_settings, _org(conn, owner), owner.id, slack_receiver.url())
    receiver.default = Answer(503, b"down for maintenance")
    _finish(conn, emails.schedule(conn, owner=owner, draft=make_draft(), settings=hook_settings)[0], "sent")

    def between(i: int) -> None:
        if i == 1:  # a day of retries has gone by, and three days of failures
            conn.execute("UPDATE webhook_deliveries SET retrying_since = now() - interval '25 hours'")
            conn.execute("UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 minute'")

    assert _attempt_all(database_url, hook_settings, 2, between) == ["pending", "failed"]

    [row] = _deliveries(conn)
    assert row["status"] == "failed" and row["job_id"] is None and row["finished_at"] is not None
    endpoint = endpoints.get(conn, _org(conn, owner), made.id)
    assert not endpoint.enabled and endpoint.disabled_reason is not None
    assert endpoint.disabled_reason.startswith("disabled after failing since")
    told = conn.execute(
        "SELECT to_addrs, subject, body_text, status FROM emails WHERE subject LIKE 'A webhook endpoint%%'"
    ).fetchall()
    assert len(told) == 1 and told[0]["to_addrs"] == [owner.email] and receiver.url in told[0]["body_text"]
    assert made.secret is not None and made.secret not in told[0]["body_text"]
    try:
        [said] = slack_receiver.messages
        assert "was disabled" in said.text and receiver.url in said.text and made.secret not in said.text
    finally:
        slack_receiver.stop()


def test_after_a_rotation_both_secrets_verify_and_the_test_event_goes_to_that_endpoint_only(
    conn: db.Conn, database_url: str, owner: User, hook_settings: Settings, receiver: Receiver
) -> None:
    org_id = _org(conn, owner)
    made = _endpoint(conn, hook_settings, owner, receiver.url, ("batch.completed",))
    rotated = endpoints.rotate(conn, hook_settings, org_id, owner.id, made.id)
    assert rotated.secret != made.secret and rotated.previous_secret_until is not None

    test = endpoints.send_test(conn, org_id, made.id)
    assert _attempt_all(database_url, hook_settings, 1, lambda i: None) == ["delivered"]

    [received] = receiver.received
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    for secret in (made.secret, rotated.secret):
        assert secret is not None
        assert verified(received, secret) == test.payload
    check_schema("TestEvent", test.payload)
    assert received.headers["webhook-id"] == test.webhook_id


def test_cancelling_and_a_batch_completing_are_events_too(
    conn: db.Conn, database_url: str, owner: User, hook_settings: Settings, make_draft: Callable[..., Any],
    receiver: Receiver,
) -> None:  # fmt: skip
    org_id = _org(conn, owner)
    _endpoint(conn, hook_settings, owner, receiver.url, ("email.cancelled", "batch.completed"))
    email = emails.schedule(conn, owner=owner, draft=make_draft(), settings=hook_settings)[0]

    emails.cancel(conn, in_org(org_id, owner.id), email.id)

    [cancelled] = _deliveries(conn)
    assert cancelled["event_type"] == "email.cancelled"
    assert cancelled["payload"]["data"]["email_id"] == str(email.id)
    assert cancelled["payload"]["data"]["status"] == "cancelled"
    check_schema("EmailEvent", cancelled["payload"])

    batch_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO batches (id, org_id, owner_id, name, subject_template, total, start_at)"
        " VALUES (%s, %s, %s, 'Newsletter', 'Hi', 1, now())",
        (batch_id, org_id, owner.id),
    )
    conn.execute("UPDATE emails SET batch_id = %s WHERE id = %s", (batch_id, email.id))

    async def run() -> dict[str, int]:
        pool = db.async_pool(database_url, size=1)
        await pool.open(wait=True)
        try:
            rt: Any = types.SimpleNamespace(pool=pool)
            first = await reconcile.webhooks(rt)
            again = await reconcile.webhooks(rt)
            return first | {"again": again["batches_completed"]}
        finally:
            await pool.close()

    stats = asyncio.run(run())

    assert stats["batches_completed"] == 1 and stats["again"] == 0  # once
    completed = [d for d in _deliveries(conn) if d["event_type"] == "batch.completed"]
    assert len(completed) == 1
    assert completed[0]["payload"]["data"] | {"completed_at": None} == {
        "batch_id": str(batch_id), "owner_id": owner.id, "name": "Newsletter", "total": 1,
        "counts": {"cancelled": 1}, "completed_at": None,
    }  # fmt: skip
    check_schema("BatchCompletedEvent", completed[0]["payload"])


def test_the_pages_add_an_endpoint_send_a_test_event_show_its_log_and_redeliver(
    client: FlaskClient, sign_in: Callable[..., User], conn: db.Conn, database_url: str, web_env: dict[str, str],
    receiver: Receiver,
) -> None:  # fmt: skip
    user = sign_in(client, "alice@example.com", name="Alice")
    token = csrf_token(client, "/webhooks/")
    refused = client.post(
        "/webhooks/", data={"csrf_token": token, "url": "ftp://x.example/", "event_type": ["email.sent"]}
    )
    assert refused.status_code == 422 and "url: must start with https://" in refused.get_data(as_text=True)
    made = client.post(
        "/webhooks/",
        data={
            "csrf_token": token,
            "url": "https://hooks.example.com/in",
            "event_type": ["email.sent", "batch.completed"],
        },
    )
    assert made.status_code == 200 and 'id="new-secret">whsec_' in made.get_data(as_text=True)
    [endpoint] = endpoints.list_endpoints(conn, _org(conn, user))
    assert endpoint.event_types == ["email.sent", "batch.completed"]
    page = f"/webhooks/{endpoint.id}"

    assert client.post(f"{page}/test", data={"csrf_token": token}).status_code == 302
    [delivery] = _deliveries(conn)
    conn.execute(
        "INSERT INTO webhook_attempts (org_id, delivery_id, status_code, latency_ms, response, error)"
        " VALUES (%s, %s, 500, 12, 'upstream <b>down</b>', 'answered 500')",
        (delivery["org_id"], delivery["id"]),
    )
    conn.execute("UPDATE webhook_deliveries SET attempts = 1")  # as the attempt's statement does
    shown = client.get(page).get_data(as_text=True)
    assert "webhook.test" in shown and endpoints.message_id(delivery["id"]) in shown
    assert "upstream &lt;b&gt;down&lt;/b&gt;" in shown and "12 ms" in shown  # the log, escaped
    old_job = delivery["job_id"]
    redone = client.post(f"{page}/deliveries/{delivery['id']}/redeliver", data={"csrf_token": token})
    assert redone.status_code == 302
    [again] = _deliveries(conn)
    assert again["id"] == delivery["id"] and again["job_id"] != old_job and again["status"] == "pending"

    edited = client.post(
        page, data={"csrf_token": token, "url": "https://hooks.example.com/v2", "event_type": ["email.failed"]}
    )
    assert edited.status_code == 302
    now = endpoints.get(conn, _org(conn, user), endpoint.id)
    assert (now.url, now.event_types, now.enabled) == ("https://hooks.example.com/v2", ["email.failed"], False)
    assert client.post(f"{page}/delete", data={"csrf_token": token}).status_code == 302
    assert endpoints.list_endpoints(conn, _org(conn, user)) == [] and _deliveries(conn) == []


def test_a_paused_recurrence_is_an_event_with_its_cancelled_occurrences(
    conn: db.Conn, owner: User, hook_settings: Settings, receiver: Receiver
) -> None:
    org_id = _org(conn, owner)
    _endpoint(conn, hook_settings, owner, receiver.url, ("recurrence.paused",))
    spec = recurrences.validate(
        {
            "to": ["team@example.com"],
            "subject": "Standup",
            "body_text": "Notes",
            "preset": {"kind": "daily", "time": "09:00"},
        },
        settings=hook_settings,
    )
    recurrence, _ = recurrences.create(conn, owner=owner, spec=spec, settings=hook_settings)

    recurrences.pause(conn, in_org(org_id, owner.id), recurrence.id, reason="paused by its owner")

    [paused] = _deliveries(conn)
    assert paused["event_type"] == "recurrence.paused"
    assert paused["payload"]["data"] == {
        "recurrence_id": str(recurrence.id), "owner_id": owner.id, "reason": "paused by its owner", "cancelled": 0,
    }  # fmt: skip
    check_schema("RecurrencePausedEvent", paused["payload"])


def test_a_bounce_and_a_complaint_reported_by_the_provider_are_events_with_their_state_change(
    conn: db.Conn, owner: User, hook_settings: Settings, make_draft: Callable[..., Any], receiver: Receiver
) -> None:
    _endpoint(conn, hook_settings, owner, receiver.url, ("email.bounced", "email.complained"))
    bounced, complained, delivered = [
        emails.schedule(conn, owner=owner, draft=make_draft(body_text="The secret plans"), settings=hook_settings)[0]
        for _ in range(3)
    ]
    for email in (bounced, complained, delivered):
        _finish(conn, email, "sent")  # not subscribed to email.sent: nothing yet
    assert _deliveries(conn) == []

    def report(email: Email, kind: Any, event_id: str, **extra: Any) -> feedback.Event:
        return feedback.Event(source="webhook", event_id=event_id, kind=kind, recipient="bob@example.com",
                              message_id=email.message_id, **extra)  # fmt: skip

    taken = feedback.ingest(
        conn,
        [
            report(bounced, "bounced", "e1", bounce_type="hard", diagnostic="550 5.1.1 no such user"),
            report(complained, "complained", "e2", diagnostic="abuse"),
            report(delivered, "delivered", "e3"),  # not an event type: no delivery
        ],
    )

    assert taken.matched == 3
    rows = {r["event_type"]: r for r in _deliveries(conn)}
    assert set(rows) == {"email.bounced", "email.complained"}
    data = rows["email.bounced"]["payload"]["data"]
    assert (data["email_id"], data["delivery"], data["bounce_type"]) == (str(bounced.id), "bounced", "hard")
    assert data["diagnostic"] == "550 5.1.1 no such user" and data["owner_id"] == owner.id
    assert rows["email.complained"]["payload"]["data"]["email_id"] == str(complained.id)
    for row in rows.values():
        assert "secret plans" not in str(row["payload"])
        check_schema("DeliveryFeedbackEvent", row["payload"])
    # The same report again changes nothing: no second event.
    again = feedback.ingest(conn, [report(bounced, "bounced", "e1", bounce_type="hard")])
    assert again.duplicates == 1 and len(_deliveries(conn)) == 2


def test_keys_rotate_re_encrypts_the_webhook_secrets_with_the_new_key(
    conn: db.Conn, owner: User, hook_settings: Settings, receiver: Receiver
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = dataclasses.replace(hook_settings, secret_keys=(old,))
    made = _endpoint(conn, before, owner, receiver.url, ("email.sent",))
    endpoints.rotate(conn, before, _org(conn, owner), owner.id, made.id)  # a previous secret too
    both = dataclasses.replace(hook_settings, secret_keys=(new, old))

    assert org_settings.rotate_keys(conn, both) == 1

    only_new = crypto.Box(dataclasses.replace(hook_settings, secret_keys=(new,)))
    row = conn.execute("SELECT secret, previous_secret FROM webhook_endpoints").fetchone()
    assert row is not None
    assert only_new.decrypt(row["previous_secret"].encode()) == made.secret
    assert only_new.decrypt(row["secret"].encode()).startswith("whsec_")


def test_finished_deliveries_older_than_the_log_days_are_pruned_with_their_attempts(
    conn: db.Conn, database_url: str, owner: User, hook_settings: Settings, receiver: Receiver
) -> None:
    org_id = _org(conn, owner)
    made = _endpoint(conn, hook_settings, owner, receiver.url, ("email.sent",))
    for _ in range(3):
        endpoints.send_test(conn, org_id, made.id)
    old_done, old_pending, recent = [r["id"] for r in _deliveries(conn)]
    conn.execute("UPDATE webhook_deliveries SET created_at = now() - interval '31 days' WHERE id <> %s", (recent,))
    conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', finished_at = now() WHERE id <> %s", (old_pending,)
    )
    conn.execute(
        "INSERT INTO webhook_attempts (org_id, delivery_id, status_code, latency_ms) VALUES (%s, %s, 200, 1)",
        (org_id, old_done),
    )

    async def run() -> int:
        pool = db.async_pool(database_url, size=1)
        await pool.open(wait=True)
        try:
            return await deliver.prune(pool, 30)
        finally:
            await pool.close()

    assert asyncio.run(run()) == 1
    assert [r["id"] for r in _deliveries(conn)] == [old_pending, recent]  # a pending one stays, whatever its age
    assert conn.execute("SELECT count(*) AS n FROM webhook_attempts").fetchone() == {"n": 0}
    assert deliver.prune_webhooks.name in {p.task.name for p in app.periodic_registry.periodic_tasks.values()}
