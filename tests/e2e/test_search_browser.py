"""Search in a real browser: the box's autocomplete by keyboard, the query in the URL, an invalid
query's message, and a saved search whose count follows a new email live (screenshot:
``test-output/search.png``, copied to ``docs/search.png`` by hand)."""

from __future__ import annotations

import pathlib
import urllib.parse
from typing import Any

import pytest
from playwright.sync_api import expect

from tasks.core import db
from tasks.domain import emails
from tasks.domain.models import User
from tests.e2e.conftest import sign_in_with_google
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow


def test_search_with_autocomplete_then_a_saved_search_counts_live(
    page: Any,
    server: Server,
    oauth_provider: OAuthProvider,
    conn: Any,
    settings: Any,
    make_draft: Any,
    output_dir: pathlib.Path,
) -> None:
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    sign_in_with_google(page, server)
    row = db.one(conn, "user_by_email", email="ada@example.com")
    assert row is not None
    ada = User.from_row(row)
    mail = [("Invoice 1", "ann@acme.example"), ("Invoice 2", "bo@other.example"), ("Lunch", "cy@acme.example")]
    for subject, to in mail:
        emails.schedule(conn, owner=ada, draft=make_draft(subject=subject, to=[to]), settings=settings)

    page.goto(f"{server.url}/?view=all")
    box = page.locator("#search-q")
    box.click()
    box.type("dom")
    option = page.locator("#search-suggestions [role=option]")
    expect(option.first).to_contain_text("domain:")
    box.press("ArrowDown")
    box.press("Enter")  # takes the suggestion, does not search yet
    expect(box).to_have_value("domain:")
    expect(option.first).to_contain_text("domain:acme.example")  # the values follow at once
    box.press("ArrowDown")
    box.press("Tab")
    expect(box).to_have_value("domain:acme.example ")
    box.type("invoice")
    expect(page.locator("#search-suggestions")).to_be_hidden()
    box.press("Enter")

    page.wait_for_url("**q=domain*")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    assert query["q"] == ["domain:acme.example invoice"]  # the view can be bookmarked
    expect(page.locator("#rows li.row")).to_have_count(1)
    expect(page.locator("#rows li.row .subject")).to_have_text("Invoice 1")

    page.fill("#save-name", "Acme invoices")
    page.get_by_role("button", name="Save", exact=True).click()
    saved = page.locator("#saved-searches li", has_text="Acme invoices")
    expect(saved.locator("[data-saved-count]")).to_have_text("1")
    page.wait_for_selector("#live-status[data-state=live]")

    # A new matching email, scheduled from the page: the count follows, without a reload.
    created = page.evaluate(
        """() => window.reach.api("POST", "/api/v1/emails", {to: ["dee@acme.example"], subject: "Invoice 3",
              body_text: "b", send_at: new Date(Date.now() + 3600e3).toISOString()}).then((r) => r.status)"""
    )
    assert created == 201
    expect(saved.locator("[data-saved-count]")).to_have_text("2", timeout=10_000)
    page.screenshot(path=str(output_dir / "search.png"))

    # An invalid query says what is wrong, where the list was; the query stays to be fixed.
    box = page.locator("#search-q")
    box.fill("domain:acme.example status:nope")
    box.press("Enter")
    expect(page.locator("#query-error")).to_contain_text('Status: "nope" is not one of')
    expect(page.locator("#query-error")).to_contain_text("(at character 21)")
    expect(page.locator("#search-q")).to_have_value("domain:acme.example status:nope")
    expect(page.locator("#rows li.row")).to_have_count(0)

    # The saved search, from the sidebar.
    saved.get_by_role("link").click()
    expect(page.locator("#rows li.row")).to_have_count(2)
    expect(page.locator("#search-q")).to_have_value("domain:acme.example invoice")
