"""The dashboard in a real browser: sign in, compose through the picker, watch the badge turn Sent live."""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Any

import pytest
from playwright.sync_api import expect

from tasks.core import config
from tasks.core.db import Conn
from tasks.domain import emails, orgs, validation
from tests.e2e.conftest import sign_in_with_google
from tests.support import procs
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.smtp_sink import Sink, free_port
from tests.support.web import Server

pytestmark = pytest.mark.slow
XSS = "<img src=x onerror=alert(1)>"


def test_compose_a_few_seconds_ahead_and_see_it_turn_sent_without_reloading(
    page: Any,
    server: Server,
    oauth_provider: OAuthProvider,
    workers: Any,
    sink: Sink,
    output_dir: pathlib.Path,
) -> None:
    """Also checks that markup in subject and body is shown as text and never runs."""
    workers()
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    sign_in_with_google(page, server)
    page.goto(f"{server.url}/?view=all")  # the row stays in this list when it turns Sent
    page.wait_for_selector("#live-status[data-state=live]")
    page.evaluate("window.__notReloaded = true")

    page.get_by_role("button", name="Compose").first.click()
    page.fill("#c-to", "grace@example.com")
    page.fill("#c-subject", XSS)
    page.fill("#c-body", f"Hello {XSS}")
    # The picker works in the browser's zone (Europe/Paris here): four seconds from now, local time
    # (the picker shows minutes; a script may give seconds).
    page.fill("#c-when", page.evaluate("window.reach.toLocalInput(new Date(Date.now() + 4000), true)"))
    page.click("#c-submit")

    row = page.locator("li.row").first
    row.wait_for()
    email_id = row.get_attribute("data-email-id")
    assert row.get_attribute("data-status") == "scheduled"
    page.wait_for_selector(f'li.row[data-email-id="{email_id}"][data-status="sent"]', timeout=30_000)

    assert page.evaluate("window.__notReloaded") is True
    assert row.locator(".badge-sent .label").inner_text() == "Sent"
    assert row.locator(".subject").inner_text() == XSS
    assert page.locator("li.row img").count() == 0
    expect(page.locator('[data-count-for="sent"]')).to_have_text("1")
    [received] = sink.wait_for(1, timeout=10)
    assert received.subject == XSS and received.rcpt_tos == ("grace@example.com",)
    page.screenshot(path=str(output_dir / "compose-sent.png"))

    page.goto(f"{server.url}/emails/{email_id}")
    assert page.locator("#detail .subject").inner_text() == XSS
    assert XSS in page.locator(".text-body").inner_text()
    assert page.locator("#detail img").count() == 0
    page.screenshot(path=str(output_dir / "detail.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server.url}/?view=all")
    page.screenshot(path=str(output_dir / "list-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert dialogs == []


def test_an_open_detail_updates_and_polls_when_the_stream_is_unavailable(
    page: Any, web_env: dict[str, str], oauth_provider: OAuthProvider, tmp_path: pathlib.Path, conn: Any
) -> None:
    """With Redis unreachable the page says so discreetly and still shows the change."""
    environ = web_env | {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    server = Server(environ, tmp_path)
    try:
        oauth_provider.account = Account(email="ada@example.com")
        page.goto(f"{server.url}/")
        page.get_by_role("link", name="Sign in with Google").click()
        page.wait_for_selector("#live-status[data-state=polling]")
        assert page.locator("#live-status").inner_text() == "Updates every 5 s"
        user = emails.ensure_user(conn, email="ada@example.com")
        draft = validation.validate(
            to=["x@example.com"], subject="Polled", body_text="B", send_at="2030-01-01T00:00:00Z"
        )
        email, _ = emails.schedule(conn, owner=user, draft=draft, settings=config.load(environ))
        page.goto(f"{server.url}/emails/{email.id}")
        page.wait_for_selector("#live-status[data-state=polling]")

        emails.cancel(conn, orgs.personal_scope(conn, user.id), email.id)

        page.wait_for_selector('#detail[data-status="cancelled"]', timeout=20_000)
        assert "Cancelled: it will not be sent." in page.locator("#why").inner_text()
    finally:
        server.stop()


def test_the_make_run_path_dev_login_to_the_dev_mailbox(page: Any, env: dict[str, str], tmp_path: pathlib.Path) -> None:
    """A newcomer: dev login, compose "send now", and the mail shows up in the dev mailbox page."""
    devmail_addr = f"127.0.0.1:{free_port()}"
    dev_env = env | {"APP_ENV": "development", "MAIL_TRANSPORTS": "devmail://", "DEVMAIL_ADDR": devmail_addr}
    sink_log = tmp_path / "devmail.log"
    devmail = procs.Process([sys.executable, "-m", "tasks", "devmail"], dev_env, sink_log)
    procs.wait_until(lambda: "dev mailbox listening" in sink_log.read_text(), timeout=20, what="the dev mailbox")
    worker = procs.start_worker(dev_env, tmp_path)
    server = Server(dev_env, tmp_path)
    try:
        page.goto(f"{server.url}/")
        assert "Development mode" in page.locator(".devbar").inner_text()
        page.click("#dev-login")
        page.get_by_role("button", name="Compose").first.click()
        page.fill("#c-to", "friend@example.com")
        page.fill("#c-subject", "Hello from the dev mailbox")
        page.fill("#c-body", "It works.")
        page.check("#c-now")
        page.click("#c-submit")
        page.wait_for_selector('li.row[data-status="sent"]', timeout=30_000)

        page.get_by_role("link", name="Dev mailbox", exact=True).click()

        mail = page.locator("details.mail").first
        assert "Hello from the dev mailbox" in mail.locator("summary").inner_text()
        assert "It works." in mail.locator(".text-body").inner_text()
        assert re.search(r"Reply-To\s*dev@localhost", mail.locator(".facts").inner_text())
    finally:
        server.stop()
        worker.stop()
        devmail.stop()


def test_compose_shows_errors_beside_their_field_and_a_double_click_creates_one_email(
    page: Any, server: Server, oauth_provider: OAuthProvider, conn: Conn
) -> None:
    oauth_provider.account = Account(email="ada@example.com")
    sign_in_with_google(page, server)
    page.get_by_role("button", name="Compose").first.click()
    page.fill("#c-to", "not-an-address")
    page.fill("#c-subject", "Twice?")
    page.fill("#c-body", "Once.")

    page.click("#c-submit")

    expect(page.locator('[data-error-for="to"]')).to_contain_text("not a valid email address")
    assert page.locator("#c-to.invalid").count() == 1
    page.fill("#c-to", "grace@example.com")
    page.check("#c-now")
    page.dblclick("#c-submit")
    page.locator("li.row").first.wait_for()
    expect(page.locator("#compose")).not_to_be_visible()
    assert conn.execute("SELECT count(*) AS n FROM emails WHERE subject = 'Twice?'").fetchone()["n"] == 1
    assert page.locator("li.row").count() == 1


def test_send_to_a_list_from_a_csv_previews_rejects_and_confirms_once(
    page: Any, server: Server, oauth_provider: OAuthProvider, conn: Conn, tmp_path: pathlib.Path
) -> None:
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email,first_name\nann@example.com,Ann\nnope,Bad\nbob@example.com,<b>Bob</b>\n")
    oauth_provider.account = Account(email="ada@example.com")
    sign_in_with_google(page, server)
    page.get_by_role("link", name="Send to a list", exact=True).click()
    page.check('input[name="source"][value="csv"]')
    page.set_input_files('input[name="csv_file"]', str(csv_file))
    page.fill("#b-subject", "Hi {{first_name}}")
    page.fill("#b-body", "Hello {{first_name}}")
    page.fill("#b-delay", "60")

    page.click("#b-preview")

    expect(page.locator("#bp-summary")).to_contain_text("2 email(s) will be scheduled")
    assert page.locator("#bp-emails li strong").all_inner_texts() == ["Hi Ann", "Hi <b>Bob</b>"]
    assert page.locator("#bp-emails b").count() == 0  # shown as text
    assert page.locator("#bp-rejected tr td").all_inner_texts()[:2] == ["3", "nope"]
    assert conn.execute("SELECT count(*) AS n FROM emails").fetchone()["n"] == 0

    page.dblclick("#bp-confirm")

    page.wait_for_url(re.compile(r"/batches/[0-9a-f-]+$"))
    expect(page.locator("[data-batch-progress]").first).to_have_text("0 of 2 sent")
    assert conn.execute("SELECT count(*) AS n FROM batches").fetchone()["n"] == 1
    assert conn.execute("SELECT count(*) AS n FROM emails").fetchone()["n"] == 2
