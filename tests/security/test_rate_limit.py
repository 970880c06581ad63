"""More requests than API_RATE_LIMIT allows are 429 with Retry-After: on the API (by
token, by session, signed out) and on every state-changing route of the pages; and
more live streams than a user may hold open are 429 too."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask

from tasks.core.db import Conn
from tests.security.conftest import Owned
from tests.security.test_routes import SAFE, routes, url
from tests.support import procs
from tests.support.oauth_provider import OAuthProvider
from tests.support.openapi_check import check
from tests.support.web import Server, csrf_token, make_app, signed_in_session
from webapp import live

LIMIT = 3


@pytest.fixture
def limited(web_env: dict[str, str]) -> Iterator[Flask]:
    """The app with a low limit: LIMIT requests a minute."""
    app = make_app(web_env | {"API_RATE_LIMIT": f"{LIMIT}/minute"})
    yield app
    app.extensions["reachdbox"].close()


def _retry_after(response: Any) -> int:
    value = int(response.headers["Retry-After"])
    assert 0 < value <= 60
    return value


def test_the_api_by_token_is_429_with_retry_after_past_the_limit(limited: Flask, alices: Owned) -> None:
    client = limited.test_client()
    headers = {"Authorization": f"Bearer {alices.secret}"}

    statuses = [client.get("/api/v1/emails", headers=headers).status_code for _ in range(LIMIT)]
    over = client.get("/api/v1/emails", headers=headers)

    assert statuses == [200] * LIMIT
    assert over.status_code == 429 and _retry_after(over)
    check("GET", "/emails", 429, over.get_json())


def test_the_limit_is_per_user_and_signed_out_callers_per_address(
    limited: Flask, alices: Owned, bobs: Owned, sign_in: Callable[..., Any]
) -> None:
    alice = {"Authorization": f"Bearer {alices.secret}"}
    client = limited.test_client()
    for _ in range(LIMIT + 1):
        client.get("/api/v1/emails", headers=alice)

    bob = client.get("/api/v1/emails", headers={"Authorization": f"Bearer {bobs.secret}"})
    visitor = [client.get("/api/v1/emails").status_code for _ in range(LIMIT + 1)]

    assert bob.status_code == 200  # Alice's excess is hers alone
    assert visitor == [401] * LIMIT + [429]


def test_the_api_by_session_is_429_too(limited: Flask, alices: Owned, sign_in: Callable[..., Any]) -> None:
    client = limited.test_client()
    sign_in(client, "alice@example.com")
    token = csrf_token(client)
    new = {"to": ["b@example.com"], "subject": "S", "body_text": "B", "send_at": "2030-01-01T00:00:00Z"}

    statuses = [client.post("/api/v1/emails", json=new, headers={"X-CSRF-Token": token}) for _ in range(LIMIT + 1)]

    assert [s.status_code for s in statuses] == [201] * LIMIT + [429]
    assert _retry_after(statuses[-1])


def test_every_state_changing_page_route_is_429_with_retry_after_past_the_limit(
    limited: Flask, conn: Conn, alices: Owned, sign_in: Callable[..., Any]
) -> None:
    """Enumerated from the url_map: a new route that changes something is limited, or this fails."""
    answers = {}
    for rule, method in routes(limited):
        if method in SAFE or rule.rule.startswith("/api/"):
            continue
        client = limited.test_client()
        sign_in(client, "alice@example.com")
        statuses = []
        for _ in range(LIMIT + 1):
            token = csrf_token(client) if client.get_cookie("reachdbox_session") else ""
            response = client.open(
                url(rule, alices.ids()),
                method=method,
                data={"csrf_token": token, "send_at": "2031-01-01T00:00:00Z", "name": "n"},
            )
            if response.status_code == 302 and "/auth/login" in response.headers.get("Location", ""):
                sign_in(client, "alice@example.com")  # signed out by the route itself
            statuses.append(response.status_code)
        answers[f"{method} {rule.rule}"] = statuses[-1], "Retry-After" in response.headers

    assert answers and set(answers.values()) == {(429, True)}, answers


def _open_stream(server: Server, session: requests.Session) -> tuple[socket.socket, int, str]:
    """Open /live/stream on a raw socket; return it, the status and the head of the answer."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    request = f"GET /live/stream HTTP/1.1\r\nHost: x\r\nCookie: {cookies}\r\nAccept: text/event-stream\r\n\r\n"
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    return sock, int(head.split(b" ", 2)[1]), head.decode("latin-1")


@pytest.mark.slow
def test_live_streams_are_capped_per_user_and_a_page_left_frees_its_slot_at_once(
    server: Server, oauth_provider: OAuthProvider
) -> None:
    """Each stream holds a server thread: one user may not take them all, and a closed
    connection gives its thread back within a second or two, not at the next keep-alive."""
    alice = signed_in_session(server, oauth_provider, "alice@example.com")
    held = [_open_stream(server, alice) for _ in range(live.MAX_STREAMS_PER_USER)]
    over = _open_stream(server, alice)
    bob = _open_stream(server, signed_in_session(server, oauth_provider, "bob@example.com"))
    assert [status for _, status, _ in held] == [200] * live.MAX_STREAMS_PER_USER
    assert (over[1], bob[1]) == (429, 200)
    assert "Retry-After" in over[2]

    held[0][0].close()  # the browser left the page
    started = time.monotonic()

    def reopened() -> tuple[socket.socket, int, str] | None:
        attempt = _open_stream(server, alice)
        if attempt[1] == 200:
            return attempt
        attempt[0].close()
        return None

    again = procs.wait_until(reopened, timeout=live.KEEPALIVE_SECONDS / 3, interval=0.2, what="a freed stream slot")
    assert time.monotonic() - started < live.KEEPALIVE_SECONDS / 3
    for sock in [s for s, _, _ in held[1:]] + [over[0], bob[0], again[0]]:
        sock.close()
