"""Recurring emails in a real browser: a weekly one composed with its preview, then edited
(the new summary and next five shown before saving), and an
every-minute one watched sending two occurrences live (its rule's clock sped up by
RECURRENCE_TIME_SCALE, so the test takes seconds, not minutes)."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in_with_google
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.smtp_sink import Sink
from tests.support.web import Server

pytestmark = pytest.mark.slow


def test_a_weekly_recurrence_shows_its_summary_and_next_five_before_saving(
    page: Any, server: Server, oauth_provider: OAuthProvider, conn: Any, output_dir: pathlib.Path
) -> None:
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    sign_in_with_google(page, server)
    page.goto(f"{server.url}/recurring/")
    page.get_by_role("button", name="New recurring email").click()
    page.fill("#c-to", "team@example.com")
    page.fill("#c-subject", "Weekly report {{occurrence_date}}")
    page.fill("#c-body", "Numbers for {{occurrence_date}}")
    # Monday and Thursday at 08:30 (whatever day was ticked first).
    for box in page.locator('input[name="repeat_day"]').all():
        if box.is_checked():
            box.uncheck()
    page.locator('input[name="repeat_day"][value="mon"]').check()
    page.locator('input[name="repeat_day"][value="thu"]').check()
    page.fill("#c-repeat-time", "08:30")
    summary = page.locator("#c-repeat-summary")
    expect(summary).to_have_text("Every week on Monday and Thursday at 08:30, Europe/Paris")
    expect(page.locator("#c-repeat-preview li")).to_have_count(5)
    shown = [t.get_attribute("datetime") for t in page.locator("#c-repeat-preview time").all()]
    instants = [dt.datetime.fromisoformat(s) for s in shown]
    assert all(i.hour == 8 and i.minute == 30 and i.isoweekday() in (1, 4) for i in instants), shown
    assert instants == sorted(instants) and instants[0] > dt.datetime.now(dt.UTC)
    assert conn.execute("SELECT count(*) AS n FROM recurrences").fetchone()["n"] == 0  # a preview stores nothing
    page.screenshot(path=str(output_dir / "recurring-compose.png"))

    page.click("#c-submit")
    page.wait_for_url("**/recurring/*")
    expect(page.locator("#recurrence-summary")).to_have_text("Every week on Monday and Thursday at 08:30, Europe/Paris")
    expect(page.locator("#upcoming li")).to_have_count(5)
    assert [t.get_attribute("datetime") for t in page.locator("#upcoming time").all()] == [
        i.astimezone(dt.UTC).isoformat() for i in instants
    ]

    # Edit: the same "Repeat" fields, prefilled, with the summary and the next five as they change.
    page.click("#recurrence-edit")
    page.wait_for_url("**/edit")
    expect(page.locator("#e-repeat-kind")).to_have_value("weekly")
    expect(page.locator("#e-repeat-time")).to_have_value("08:30")
    expect(page.locator("#e-repeat-summary")).to_have_text("Every week on Monday and Thursday at 08:30, Europe/Paris")
    expect(page.locator("#e-repeat-preview li")).to_have_count(5)
    page.select_option("#e-repeat-kind", "weekdays")
    page.fill("#e-repeat-time", "07:15")
    expect(page.locator("#e-repeat-summary")).to_have_text("Every weekday at 07:15, Europe/Paris")
    edited = [
        dt.datetime.fromisoformat(t.get_attribute("datetime")) for t in page.locator("#e-repeat-preview time").all()
    ]
    assert len(edited) == 5 and all(i.hour == 7 and i.minute == 15 and i.isoweekday() <= 5 for i in edited), edited
    page.screenshot(path=str(output_dir / "recurring-edit.png"))
    detail = page.url.removesuffix("/edit")
    page.click("#e-submit")
    page.wait_for_url(detail)
    expect(page.locator("#recurrence-summary")).to_have_text("Every weekday at 07:15, Europe/Paris")
    assert [t.get_attribute("datetime") for t in page.locator("#upcoming time").all()] == [
        i.astimezone(dt.UTC).isoformat() for i in edited
    ]

    page.goto(f"{server.url}/recurring/")
    expect(page.locator("li.recurrence")).to_have_count(1)
    expect(page.locator("li.recurrence .to")).to_have_text("Every weekday at 07:15, Europe/Paris")


def test_an_every_minute_recurrence_sends_two_occurrences_live(
    page: Any,
    web_env: dict[str, str],
    oauth_provider: OAuthProvider,
    workers: Any,
    sink: Sink,
    tmp_path: pathlib.Path,
    conn: Any,
    output_dir: pathlib.Path,
) -> None:
    # A rule minute lasts 3 s; occurrences are created 30 s ahead.
    fast = {"RECURRENCE_TIME_SCALE": "20", "SCHEDULE_HORIZON": "30"}
    server = Server(web_env | fast, tmp_path)
    try:
        workers(extra_env=fast)
        oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
        sign_in_with_google(page, server)
        page.get_by_role("button", name="Compose").first.click()
        page.fill("#c-to", "grace@example.com")
        page.fill("#c-subject", "Tick {{occurrence_time}}")
        page.fill("#c-body", "Every minute")
        page.select_option("#c-repeat-kind", "cron")
        page.fill("#c-repeat-cron", "* * * * *")
        page.fill("#c-repeat-count", "2")
        expect(page.locator("#c-repeat-summary")).to_have_text("On the cron schedule * * * * *, Europe/Paris, 2 times")
        expect(page.locator("#c-repeat-preview li")).to_have_count(2)
        page.click("#c-submit")
        page.wait_for_url("**/recurring/*")
        page.wait_for_selector("#live-status[data-state=live]")
        page.evaluate("window.__notReloaded = true")

        # Both occurrences appear in the history and turn Sent, without reloading the page.
        page.wait_for_selector('#history li[data-status="sent"] >> nth=1', timeout=30_000)
        expect(page.locator('#history li[data-status="sent"]')).to_have_count(2)
        assert page.evaluate("window.__notReloaded") is True
        received = sink.wait_for(2, timeout=10)
        assert sorted(r.rcpt_tos for r in received) == [("grace@example.com",), ("grace@example.com",)]
        assert all(r.subject.startswith("Tick ") and "{{" not in r.subject for r in received)
        assert len({r.subject for r in received}) == 2  # each its own occurrence time
        rows = conn.execute("SELECT status, occurrence_at FROM emails ORDER BY occurrence_at").fetchall()
        assert [r["status"] for r in rows] == ["sent", "sent"]
        assert (rows[1]["occurrence_at"] - rows[0]["occurrence_at"]).total_seconds() == 3
        expect(page.locator("[data-recurrence-status]")).to_have_text("ended")
        page.screenshot(path=str(output_dir / "recurring-sent.png"), full_page=True)
    finally:
        server.stop()
