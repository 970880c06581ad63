"""The dev mailbox in a real browser: search, select several and delete them, then a message's
HTML view (test-output/dev-mailbox.png, dev-mailbox-html.png and dev-mailbox-check.png are docs/ images,
copied by hand)."""

from __future__ import annotations

import email.message
import pathlib
from typing import Any

import pytest
from playwright.sync_api import expect

from tasks.core import db
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow
Conn = Any


@pytest.fixture
def web_env(web_env: dict[str, str]) -> dict[str, str]:
    """Ada is an operator here, so the dev mailbox is hers to see."""
    return web_env | {"OPERATOR_EMAILS": "ada@example.com"}


def store(conn: Conn, sender: str, subject: str, text: str, html: str | None = None) -> int:
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "team@example.com", subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    row = db.one(
        conn,
        "insert_devmail",
        mail_from=sender,
        rcpt_tos=["team@example.com"],
        message_id=None,
        subject=subject,
        raw=message.as_bytes(),
    )
    assert row is not None
    return int(row["id"])


def test_search_select_delete_and_the_html_view(
    page: Any, server: Server, oauth_provider: OAuthProvider, conn: Conn, output_dir: pathlib.Path
) -> None:
    store(conn, "billing@example.com", "Invoice 1041", "Your invoice.")
    store(conn, "billing@example.com", "Invoice 1042", "Your invoice.")
    welcome = store(
        conn,
        "hello@example.com",
        "Welcome aboard",
        "Welcome!",
        '<div style="display:flex"><h1 style="color:#2b59c3">Welcome aboard</h1>'
        '<img src="https://images.example/hero.png"></div><p>Glad to have you.</p>',
    )
    oauth_provider.account = Account(email="ada@example.com")
    page.goto(f"{server.url}/auth/google")
    page.wait_for_selector("#live-status")
    page.goto(f"{server.url}/devmail/")
    expect(page.locator("details.mail")).to_have_count(3)

    page.fill("#devmail-q", "from:billing subject:invoice")
    page.press("#devmail-q", "Enter")
    expect(page.locator("details.mail")).to_have_count(2)
    assert "q=from%3Abilling+subject%3Ainvoice" in page.url  # the search lives in the URL
    page.check("#devmail-select-all")
    expect(page.locator("#devmail-selected")).to_have_text("2 selected")
    page.screenshot(path=str(output_dir / "dev-mailbox.png"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#devmail-delete")

    expect(page.locator(".flash.ok")).to_have_text("Deleted 2 message(s).")
    assert page.input_value("#devmail-q") == "from:billing subject:invoice"  # back to the same search
    expect(page.locator(".empty")).to_contain_text("No message matches")
    page.fill("#devmail-q", "")
    page.press("#devmail-q", "Enter")
    expect(page.locator("details.mail")).to_have_count(1)

    page.get_by_role("link", name="Open: HTML, text, source, headers, links, HTML check").click()
    heading = page.frame_locator("iframe.html-body").locator("h1")
    expect(heading).to_have_text("Welcome aboard")
    assert page.url.endswith(f"/devmail/{welcome}")
    page.screenshot(path=str(output_dir / "dev-mailbox-html.png"))
    page.click("#view-check")
    expect(page.locator('[data-rule="flexbox"]')).to_contain_text("Outlook for Windows")
    expect(page.locator('[data-rule="img-missing-alt"]')).to_be_visible()
    page.screenshot(path=str(output_dir / "dev-mailbox-check.png"), full_page=True)
    page.click("#view-text")
    expect(page.locator("pre.text-body")).to_have_text("Welcome!\n")
