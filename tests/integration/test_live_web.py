"""Live status in the web app: a user's changes reach their open pages over SSE, and only theirs."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tasks.core import live
from tasks.core.db import Conn
from tasks.domain import emails
from tests.support.oauth_provider import OAuthProvider
from tests.support.smtp_sink import free_port
from tests.support.sse import Stream
from tests.support.web import Server, csrf_token, make_app, page_csrf, signed_in_session

pytestmark = pytest.mark.slow


def test_a_change_made_in_the_web_reaches_the_owners_stream_and_no_one_elses(
    server: Server, oauth_provider: OAuthProvider, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    alice = signed_in_session(server, oauth_provider, "alice@example.com")
    bob = signed_in_session(server, oauth_provider, "bob@example.com")
    alice_stream = Stream(alice, f"{server.url}/live/stream")
    bob_stream = Stream(bob, f"{server.url}/live/stream")
    assert alice_stream.connected.wait(10) and bob_stream.connected.wait(10)
    token = page_csrf(alice, f"{server.url}/")

    created = alice.post(
        f"{server.url}/api/v1/emails",
        json={"to": ["x@example.com"], "subject": "Hi", "body_text": "B", "send_at": "2030-01-01T00:00:00Z"},
        headers={"X-CSRF-Token": token},
        timeout=10,
    ).json()
    alice.post(f"{server.url}/api/v1/emails/{created['id']}/cancel", headers={"X-CSRF-Token": token}, timeout=10)

    assert [(e["email_id"], e["status"]) for e in (alice_stream.next(), alice_stream.next())] == [
        (created["id"], "scheduled"),
        (created["id"], "cancelled"),
    ]
    with pytest.raises(queue.Empty):
        bob_stream.next(timeout=1)
    alice_stream.close()
    bob_stream.close()


def test_a_stream_for_one_email_relays_only_that_email(
    server: Server, oauth_provider: OAuthProvider, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    import redis

    session = signed_in_session(server, oauth_provider, "alice@example.com")
    alice = emails.ensure_user(conn, email="alice@example.com")
    watched, _ = emails.schedule(conn, owner=alice, draft=make_draft(), settings=settings)
    other, _ = emails.schedule(conn, owner=alice, draft=make_draft(subject="other"), settings=settings)
    stream = Stream(session, f"{server.url}/live/stream?email_id={watched.id}")
    assert stream.connected.wait(10)
    client = redis.Redis.from_url(settings.redis_url)

    live.publish(client, settings.redis_prefix, alice.id, other.id, "sent")
    live.publish(client, settings.redis_prefix, alice.id, watched.id, "sending")

    assert stream.next()["email_id"] == str(watched.id)
    stream.close()


def test_without_redis_the_stream_says_unavailable_and_the_snapshot_still_answers(
    web_env: dict[str, str], sign_in: Callable[..., Any]
) -> None:
    """The page falls back to polling /live/snapshot; scheduling still works."""
    app = make_app(web_env | {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        client = app.test_client()
        sign_in(client, "alice@example.com")
        token = csrf_token(client)
        created = client.post(
            "/api/v1/emails",
            json={"to": ["x@example.com"], "subject": "Hi", "body_text": "B", "send_now": True},
            headers={"X-CSRF-Token": token},
        )

        stream = client.get("/live/stream")
        snapshot = client.get(f"/live/snapshot?ids={created.get_json()['id']}")

        assert created.status_code == 201
        assert stream.status_code == 503
        assert snapshot.status_code == 200
        assert snapshot.get_json()["emails"][0]["status"] == "scheduled"
        assert snapshot.get_json()["counts"]["scheduled"] == 1
    finally:
        app.extensions["reachdbox"].close()


def test_the_stream_needs_a_signed_in_user(server: Server) -> None:
    assert requests.get(f"{server.url}/live/stream", timeout=5).status_code == 401
