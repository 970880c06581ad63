"""A live stream does not outlive its credential: once its user signs out (in this browser or
in another: sign-out voids every session), an open ``/live/stream`` ends within seconds instead
of relaying status events until its 300 s deadline. A personal access token never opens one
(``test_routes.py::test_a_token_is_no_credential_outside_the_api``), so the session is the only
credential a stream can hold.

Against a real gunicorn, with the stream read as a browser reads it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from tasks.core import live
from tasks.domain import emails
from tests.support.oauth_provider import OAuthProvider
from tests.support.sse import Stream
from tests.support.web import Server, page_csrf, signed_in_session
from webapp.live import CREDENTIAL_CHECK_SECONDS

Conn = Any
pytestmark = pytest.mark.slow
#: How long a stream may outlive a sign-out: a check's period, the second a check may wait for a
#: message, and slack for a loaded machine. Far below the stream's own 300 s deadline.
ENDS_WITHIN = CREDENTIAL_CHECK_SECONDS + 1 + 5


@pytest.mark.parametrize("where", ["in the same browser", "in another browser"])
def test_a_live_stream_ends_within_seconds_once_its_user_signs_out(
    server: Server, oauth_provider: OAuthProvider, where: str
) -> None:
    alice = signed_in_session(server, oauth_provider, "alice@example.com")
    stream = Stream(alice, f"{server.url}/live/stream")
    assert stream.connected.wait(10)
    elsewhere = where == "in another browser"
    browser = signed_in_session(server, oauth_provider, "alice@example.com") if elsewhere else alice
    token = page_csrf(browser, f"{server.url}/")

    signed_out = time.monotonic()
    response = browser.post(f"{server.url}/auth/logout", data={"csrf_token": token}, allow_redirects=False, timeout=10)
    ended = stream.ended.wait(ENDS_WITHIN)
    took = time.monotonic() - signed_out
    stream.close()

    assert response.status_code == 302
    assert ended, f"the stream was still open {ENDS_WITHIN} s after its user signed out"
    assert took < ENDS_WITHIN
    again = Stream(alice, f"{server.url}/live/stream")  # what the browser's EventSource does next
    assert again.response.status == 401
    again.close()


def test_a_stream_whose_session_holds_stays_open_past_its_checks_and_relays(
    server: Server, oauth_provider: OAuthProvider, conn: Conn, settings: Any
) -> None:
    """The control for the test above: the re-check does not end a stream that is still signed in."""
    alice = signed_in_session(server, oauth_provider, "alice@example.com")
    stream = Stream(alice, f"{server.url}/live/stream")
    assert stream.connected.wait(10)
    user = emails.ensure_user(conn, email="alice@example.com")

    # Nothing to await here but the absence of an end: bounded, over two checks.
    assert not stream.ended.wait(2 * CREDENTIAL_CHECK_SECONDS + 1)
    client = redis.Redis.from_url(settings.redis_url)
    live.publish(client, settings.redis_prefix, user.id, "e-1", "sent")
    client.close()

    assert stream.next()["email_id"] == "e-1"
    stream.close()
