"""A captured message's HTML is attacker-controlled: in a real browser (Debian's chromium, CSP
enforced) its scripts never run, neither in the dev mailbox's page nor opened on their own,
and nothing remote loads until the operator asks.

A local "beacon" site stands for the attacker's server: every script, handler and remote
image in the message calls it, so what ran or loaded is what it saw.
"""

from __future__ import annotations

import email.message
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.core import db
from tests.e2e.conftest import server_first
from tests.support import procs
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow
Conn = Any


class _Beacon(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802  (the standard library's name)
        _Beacon.seen.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def beacon() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Beacon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Beacon.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page with the site's Content-Security-Policy enforced, as any browser would."""
    server_first(request)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


@pytest.fixture
def web_env(web_env: dict[str, str]) -> dict[str, str]:
    """Ada is an operator here, so the dev mailbox is hers to see."""
    return web_env | {"OPERATOR_EMAILS": "ada@example.com"}


def test_a_messages_script_never_runs_and_remote_content_waits_to_be_asked_for(
    page: Any, server: Server, oauth_provider: OAuthProvider, conn: Conn, beacon: str
) -> None:
    html = (
        '<p id="greeting">Hello from the sandbox</p>'
        f'<script>fetch("{beacon}/script-ran"); parent.document.body.dataset.pwned = "1";</script>'
        f"<img src=x onerror=\"fetch('{beacon}/handler-ran'); top.document.body.dataset.pwned = '1'\">"
        f'<img alt="remote" src="{beacon}/remote.png">'
        f'<form action="{beacon}/form-sent"><button id="go">Go</button></form>'
    )
    captured = email.message.EmailMessage()
    captured["From"], captured["To"], captured["Subject"] = "a@example.com", "b@example.com", "Sandbox"
    captured.set_content("Text part.")
    captured.add_alternative(html, subtype="html")
    row = db.one(
        conn,
        "insert_devmail",
        mail_from="a@example.com",
        rcpt_tos=["b@example.com"],
        message_id="<sandbox@test>",
        subject="Sandbox",
        raw=captured.as_bytes(),
    )
    assert row is not None
    oauth_provider.account = Account(email="ada@example.com")
    page.goto(f"{server.url}/auth/google")
    page.wait_for_selector("#live-status")

    with page.expect_response(lambda r: r.url.endswith(f"/devmail/{row['id']}/html")) as framed:
        page.goto(f"{server.url}/devmail/{row['id']}")
    page.wait_for_load_state("load")  # the frame's images included
    frame = page.frame_locator("iframe.html-body")
    assert frame.locator("#greeting").inner_text() == "Hello from the sandbox"
    frame.locator("#go").click()  # a form in the message goes nowhere
    assert _Beacon.seen == []  # nothing remote loaded, no script or handler ran
    assert page.locator("iframe.html-body").get_attribute("sandbox") == ""
    policy = framed.value.headers["content-security-policy"]
    assert policy.startswith("sandbox;") and "default-src 'none'" in policy

    page.click("#load-remote")
    procs.wait_until(lambda: "/remote.png" in _Beacon.seen, timeout=15, what="the remote image, once asked for")
    page.wait_for_load_state("load")
    assert page.evaluate("document.body.dataset.pwned") is None

    page.goto(f"{server.url}/devmail/{row['id']}/html?remote=1")  # opened on its own, as a page
    procs.wait_until(lambda: _Beacon.seen.count("/remote.png") == 2, timeout=15, what="the page's image")
    page.wait_for_load_state("load")
    assert [path for path in _Beacon.seen if path != "/remote.png"] == []
    assert page.evaluate("document.body.dataset.pwned") is None
