"""Organizations in a real browser: the switcher in the header changes the outbox shown (and
keeps the choice), and the members page; their screenshots are the docs' (test-output/
org-switcher.png and members.png, copied to docs/ by hand)."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import pytest
from playwright.sync_api import expect

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import emails, orgs, validation
from tasks.domain.models import User
from tests.e2e.conftest import sign_in_with_google
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow
Conn = Any


def _schedule(conn: Conn, user: User, settings: Settings, org_id: int, subject: str, to: str) -> None:
    draft = validation.validate(
        to=[to], subject=subject, body_text="Hello", send_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    )
    emails.schedule(conn, owner=user, draft=draft, settings=settings, org_id=org_id)


def test_the_switcher_changes_the_outbox_and_the_members_page_shows_roles(
    server: Server, oauth_provider: OAuthProvider, conn: Conn, settings: Settings, page: Any, output_dir: pathlib.Path
) -> None:
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    sign_in_with_google(page, server)
    ada = User.from_row(db.one(conn, "user_by_email", email="ada@example.com") or {})
    team = orgs.create(conn, "Support team", ada)
    for address, name, role in (
        ("grace@example.com", "Grace Hopper", orgs.Role.ADMIN),
        ("linus@example.com", "Linus", orgs.Role.MEMBER),
        ("vic@example.com", "Vic", orgs.Role.VIEWER),
    ):
        member = emails.ensure_user(conn, email=address, name=name)
        orgs.add_member(conn, team.id, member, role)
        if role == orgs.Role.MEMBER:
            _schedule(conn, member, settings, team.id, "Your ticket #4521 is resolved", "customer@example.org")
    me = orgs.membership(conn, team.id, ada.id)
    assert me is not None
    orgs.invite(conn, me, "alan@example.com", orgs.Role.MEMBER)
    _schedule(conn, ada, settings, team.id, "Reminder: renewal in 7 days", "client@example.org")
    _schedule(conn, ada, settings, orgs.personal_org_id(conn, ada.id), "Dinner on Friday?", "friend@example.net")

    page.goto(f"{server.url}/")
    expect(page.locator("#rows")).to_contain_text("Dinner on Friday?")  # her personal organization first
    page.select_option("#org-switch select", label="Support team (owner)")
    page.locator("#org-switch button").click()
    expect(page.locator("#rows")).to_contain_text("Your ticket #4521 is resolved")
    expect(page.locator("#rows")).not_to_contain_text("Dinner on Friday?")
    page.wait_for_selector("#live-status[data-state=live]")
    page.screenshot(path=str(output_dir / "org-switcher.png"), clip={"x": 0, "y": 0, "width": 1200, "height": 420})

    page.get_by_role("link", name="Mine").click()
    expect(page.locator("#rows")).to_contain_text("Reminder: renewal")
    expect(page.locator("#rows")).not_to_contain_text("Your ticket #4521")

    page.get_by_role("link", name="Members").click()
    rows = page.locator("table.members tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("table.invitations")).to_contain_text("alan@example.com")
    page.fill("#i-email", "katherine@example.com")
    page.select_option("#i-role", "viewer")
    page.get_by_role("button", name="Create invitation link").click()
    expect(page.locator("#invitation-link")).to_contain_text("/invitations/")
    page.wait_for_selector("#live-status[data-state=live]")
    page.screenshot(path=str(output_dir / "members.png"), full_page=True)

    page.reload()  # the choice is the session's: still the team
    expect(page.locator("h1")).to_have_text("Members of Support team")
