"""The Failures and Upcoming views in a real browser: from the list's tabs to a group, its sparkline,
its examples and the list its link opens; then the forecast per hour (screenshots:
``test-output/failures.png`` and ``test-output/upcoming.png``, copied to ``docs/`` by hand)."""

from __future__ import annotations

import datetime as dt
import pathlib
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tasks.core import db
from tasks.domain import orgs
from tests.e2e.conftest import sign_in_with_google
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow


@pytest.fixture
def web_env(web_env: dict[str, str]) -> dict[str, str]:
    """The server with each user's own limit: 2 an hour, so 3 due in one hour are a backlog coming."""
    return web_env | {"USER_RATE_LIMIT": "2/hour"}


def _insert(conn: Any, org: int, owner: int, subject: str, status: str, error: str | None, at: dt.datetime) -> None:
    email_id = uuid.uuid4()
    conn.execute(
        """INSERT INTO emails (id, org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                               status, message_id, last_error, transport, updated_at)
           VALUES (%s, %s, %s, 'ada@example.com', %s, %s, 'b', %s, %s, %s, %s, %s, 'smtp', %s)""",
        (email_id, org, owner, [f"{subject.lower()}@gone.example"], subject, at, at, status, f"<{email_id}@t>", error)
        + (at,),
    )


def test_the_failures_and_upcoming_views(
    page: Any, server: Server, oauth_provider: OAuthProvider, conn: Any, output_dir: pathlib.Path
) -> None:
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    sign_in_with_google(page, server)
    row = db.one(conn, "user_by_email", email="ada@example.com")
    assert row is not None
    org = orgs.personal_org_id(conn, row["id"])
    now = dt.datetime.now(dt.UTC)
    refused, spam = "RCPT TO: 550 5.1.1 mailbox unavailable", "DATA: 554 5.7.1 rejected as spam"
    for i, subject in enumerate(["Welcome", "Invoice"]):
        _insert(conn, org, row["id"], subject, "failed", refused, now - (i + 1) * dt.timedelta(minutes=20))
    _insert(conn, org, row["id"], "Later", "failed", spam, now - dt.timedelta(hours=5))
    for _ in range(3):
        _insert(conn, org, row["id"], "Soon", "scheduled", None, now + dt.timedelta(hours=2))

    page.goto(f"{server.url}/?view=failed")
    page.locator("#view-failures").click()
    groups = page.locator("#failure-groups tr.failure-group")
    expect(groups).to_have_count(2)
    first = groups.first
    expect(first).to_have_attribute("data-code", "550")
    expect(first.locator("svg.sparkline")).to_be_visible()
    expect(first.locator(".examples a")).to_have_text(["Welcome", "Invoice"])
    page.screenshot(path=str(output_dir / "failures.png"), full_page=True)

    first.locator("a.group-link").click()
    page.wait_for_url("**q=status*")
    expect(page.locator("#search-q")).to_have_value("status:failed code:550 code:5.1.1 domain:gone.example")
    expect(page.locator("#rows li.row")).to_have_count(2)

    page.locator("#view-upcoming").click()
    hours = page.locator("#upcoming-hours tbody tr")
    expect(hours).to_have_count(24)
    busy = page.locator("#upcoming-hours tbody tr[data-count='3']")
    expect(busy).to_have_count(1)
    expect(busy).to_contain_text("Backlog coming: a user's limit: 3 > 2")
    expect(page.locator("#upcoming-hours tbody tr[data-over]")).to_have_count(1)
    expect(page.locator("#limits")).to_contain_text("each user 2/hour, 48/day")
    expect(page.locator("#upcoming-days tbody tr")).to_have_count(7)
    page.screenshot(path=str(output_dir / "upcoming.png"), full_page=True)
