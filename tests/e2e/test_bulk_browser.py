"""A bulk cancel of 1,000 emails in a real browser: "select all matching", the confirmation page
(its count, sample and typed count; screenshot ``test-output/bulk.png``), the progress page to done
with a real worker running the job (``test-output/bulk-progress.png``; both copied to ``docs/`` by
hand), then Undo: all back."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from playwright.sync_api import expect

from tasks.core import db
from tasks.domain import orgs
from tests.e2e.conftest import sign_in_with_google
from tests.support import procs
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow

N = 1000


def test_a_bulk_cancel_of_1000_emails_is_confirmed_followed_and_undone(
    page: Any,
    server: Server,
    workers: procs.Workers,
    oauth_provider: OAuthProvider,
    conn: Any,
    output_dir: pathlib.Path,
) -> None:
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    sign_in_with_google(page, server)
    user = db.one(conn, "user_by_email", email="ada@example.com")
    assert user is not None
    org = orgs.personal_org_id(conn, user["id"])
    # 1,000 scheduled emails (due in two hours: beyond the horizon, so no job yet), and one that the
    # search does not match.
    conn.execute(
        """INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                               message_id)
           SELECT %(org)s, %(owner)s, 'ada@example.com', ARRAY['reader' || i || '@example.com'],
                  CASE WHEN i <= %(n)s THEN 'Spring sale ' || i ELSE 'Invoice' END, 'b',
                  now() + interval '2 hours', now() + interval '2 hours', '<bulk-' || i || '@t>'
             FROM generate_series(1, %(n)s + 1) i""",
        {"org": org, "owner": user["id"], "n": N},
    )
    workers()

    page.goto(f"{server.url}/?view=scheduled&q=sale")
    expect(page.locator("#rows li.row input.pick")).to_have_count(25)
    page.get_by_label(f"Select all {N} matching this search").check()
    page.locator("#bulk-cancel").click()

    page.wait_for_url("**/bulk/new?*")
    expect(page.locator("#bulk-count")).to_have_text(str(N))
    expect(page.locator("#bulk-sample tbody tr")).to_have_count(10)
    expect(page.locator("#bulk-go")).to_have_text(f"Cancel {N} emails")
    page.screenshot(path=str(output_dir / "bulk.png"), full_page=True)
    page.locator("#confirm-count").fill("999")
    page.locator("#bulk-go").click()
    expect(page.locator("#confirm-count-error")).to_have_text(f"999 is not the number of emails ({N})")
    page.locator("#confirm-count").fill(str(N))
    page.locator("#bulk-go").click()

    page.wait_for_url("**/bulk/*")
    expect(page.locator("#bulk-state")).to_have_text("done", timeout=20_000)
    expect(page.locator("#bulk-applied")).to_have_text(str(N))
    expect(page.locator("#bulk-status")).to_have_text(f"Done: {N} applied, 0 skipped")
    counts = {r["status"]: r["n"] for r in conn.execute("SELECT status, count(*) AS n FROM emails GROUP BY 1")}
    assert counts == {"cancelled": N, "scheduled": 1}
    expect(page.locator("#bulk-undo")).to_be_visible()
    page.screenshot(path=str(output_dir / "bulk-progress.png"))
    page.locator("#bulk-undo").click()

    expect(page.locator(".flash.ok")).to_contain_text(f"Undone: {N} restored, 0 left as they were.")
    expect(page.locator("#bulk-state")).to_have_text("undone")
    counts = {r["status"]: r["n"] for r in conn.execute("SELECT status, count(*) AS n FROM emails GROUP BY 1")}
    assert counts == {"scheduled": N + 1}
