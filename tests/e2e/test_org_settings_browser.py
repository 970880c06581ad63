"""An organization's settings in a real browser: the sending identity refused outside the
allowed domains (the reason beside the form), a transport added and shown masked, the audit
log; the screenshot is the docs' (test-output/org-settings.png, copied to docs/ by hand)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tasks.core import db
from tasks.domain import orgs
from tasks.domain.models import User
from tests.e2e.conftest import sign_in_with_google
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow
Conn = Any
PASSWORD = "Zx9-secret-pass"


@pytest.fixture
def domains_server(web_env: dict[str, str], tmp_path: pathlib.Path) -> Iterator[Server]:
    """The web app with an allow-list of sending domains, as a deployment sets it."""
    running = Server(web_env | {"ORG_SENDING_DOMAINS": "example.com"}, tmp_path)
    yield running
    running.stop()


def test_an_admin_sets_the_identity_and_adds_a_transport(
    domains_server: Server, oauth_provider: OAuthProvider, conn: Conn, page: Any, output_dir: pathlib.Path
) -> None:
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    server = domains_server
    sign_in_with_google(page, server)
    ada = User.from_row(db.one(conn, "user_by_email", email="ada@example.com") or {})
    org_id = orgs.personal_org_id(conn, ada.id)

    page.goto(f"{server.url}/members")
    page.locator("#org-settings-link").click()
    page.fill("#from_name", "Ada's Support")
    page.fill("#from_address", "support@mail.example.com")
    page.fill("#reply_to", "help@example.com")
    page.get_by_role("button", name="Save identity").click()
    expect(page.locator(".flash.ok")).to_contain_text("Sending identity saved")
    page.fill("#from_address", "ceo@elsewhere.example")
    page.get_by_role("button", name="Save identity").click()
    expect(page.locator("#settings-error")).to_contain_text("outside the domains this deployment allows")
    expect(page.locator("#from_address")).to_have_value("ceo@elsewhere.example")  # what was typed stays

    page.goto(f"{server.url}/org/settings")
    page.fill("#p-label", "sendgrid")
    page.fill("#p-url", f"smtp://apikey:{PASSWORD}@127.0.0.1:2525")
    page.fill("#p-limit", "100/second")
    page.get_by_role("button", name="Add transport").click()
    expect(page.locator("table.providers")).to_contain_text("smtp://apikey:****@127.0.0.1:2525")
    assert PASSWORD not in page.content()
    page.screenshot(path=str(output_dir / "org-settings.png"), full_page=True)

    page.goto(f"{server.url}/org/audit")
    expect(page.locator("table.audit tbody tr")).to_have_count(2)
    expect(page.locator("table.audit")).to_contain_text("provider.add")
    assert PASSWORD not in page.content()
    stored = conn.execute("SELECT from_address FROM org_settings WHERE org_id = %s", (org_id,)).fetchone()
    assert stored == {"from_address": "support@mail.example.com"}
