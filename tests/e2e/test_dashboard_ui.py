"""The dashboard as a newcomer meets it, in a real browser: what the compose form asks and
warns, confirmations, lists and counts that follow live changes, and the phone layout.

One Chromium per module (tests/e2e/conftest.py); everything is awaited, nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import batch_plan, batches, emails, models, orgs, validation
from tasks.domain.models import User
from tests.e2e.conftest import sign_in_with_google
from tests.support import flow
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow
Conn = Any
#: The colour of an invalid field's border (app.css --danger).
DANGER = "rgb(201, 42, 42)"


@pytest.fixture
def ada(server: Server, oauth_provider: OAuthProvider, conn: Conn, page: Any) -> User:
    """Ada, signed in through the OAuth flow in ``page``, which shows her (empty) Scheduled list."""
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    sign_in_with_google(page, server)
    return user_named(conn, "ada@example.com")


def user_named(conn: Conn, email: str) -> User:
    row = db.one(conn, "user_by_email", email=email)
    assert row is not None
    return User.from_row(row)


def schedule(conn: Conn, user: User, settings: Settings, *, subject: str, after: dt.timedelta) -> models.Email:
    draft = validation.validate(
        to=["grace@example.com"],
        subject=subject,
        body_text="Hello",
        send_at=dt.datetime.now(dt.UTC) + after,
        send_tz="Europe/Paris",
    )
    return emails.schedule(conn, owner=user, draft=draft, settings=settings)[0]


def emails_in_db(conn: Conn) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = conn.execute("SELECT id, subject, status FROM emails ORDER BY created_at").fetchall()
    return rows


def test_an_empty_subject_is_asked_about_once_and_the_api_still_takes_it(page: Any, ada: User, conn: Conn) -> None:
    page.get_by_role("button", name="Compose").first.click()
    page.fill("#c-to", "grace@example.com")
    page.fill("#c-body", "No subject on purpose.")
    page.check("#c-now")

    page.click("#c-submit")

    expect(page.locator("#c-subject-warn")).to_contain_text("This email has no subject")
    expect(page.locator("#c-submit")).to_have_text("Schedule without subject")
    expect(page.locator("#compose")).to_be_visible()
    assert emails_in_db(conn) == []

    page.click("#c-submit")

    expect(page.locator("#compose")).to_be_hidden()
    page.locator("li.row .subject", has_text="(no subject)").wait_for()
    assert [e["subject"] for e in emails_in_db(conn)] == [""]
    # Typing a subject drops the question; the API, for scripts, never asks.
    page.get_by_role("button", name="Compose").first.click()
    expect(page.locator("#c-submit")).to_have_text("Schedule")
    status = page.evaluate(
        """async () => (await window.reach.api('POST', '/api/v1/emails',
            {to: ['x@example.com'], subject: '', body_text: 'B', send_now: true})).status"""
    )
    assert status == 201


def test_the_batch_page_follows_its_last_send(
    page: Any, ada: User, server: Server, conn: Conn, settings: Settings, workers: Any
) -> None:
    """After the last email goes: nothing left to send, nothing left to cancel, without a reload."""
    workers()
    plan = batch_plan.prepare(
        settings=settings,
        addresses="ann@example.com\nbob@example.com",
        subject="Hi",
        body_text="B",
        name="Two of them",
        start_at=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(),
    )
    batch, _ = batches.create(conn, owner=ada, plan=plan, settings=settings)
    page.goto(f"{server.url}/batches/{batch.id}")
    page.wait_for_selector("#live-status[data-state=live]")
    page.evaluate("window.__notReloaded = true")
    card = page.locator("article[data-batch-id]")
    expect(card.get_by_role("button")).to_have_text("Cancel the rest (2)")

    for row in conn.execute("SELECT id FROM emails WHERE batch_id = %s", (batch.id,)).fetchall():
        emails.send_now(conn, orgs.personal_scope(conn, ada.id), row["id"], settings=settings)

    expect(card.locator("[data-batch-progress]")).to_have_text("2 of 2 sent", timeout=30_000)
    expect(card.locator("[data-batch-next]")).to_have_text("Nothing left to send.")
    expect(card.get_by_role("button")).to_have_count(0)
    expect(page.locator('li.row[data-status="sent"]')).to_have_count(2)
    assert page.evaluate("window.__notReloaded") is True


def test_counts_and_lists_follow_live_changes(
    page: Any, ada: User, server: Server, conn: Conn, settings: Settings, workers: Any
) -> None:
    """The counts move with the badge, the sent email leaves Scheduled and joins Sent, in another tab too."""
    workers()
    email = schedule(conn, ada, settings, subject="On its way", after=dt.timedelta(hours=1))
    sent_tab = page.context.new_page()
    for tab, view in ((page, "scheduled"), (sent_tab, "sent")):
        tab.goto(f"{server.url}/?view={view}")
        tab.wait_for_selector("#live-status[data-state=live]")
        tab.evaluate("window.__notReloaded = true")
    row = page.locator(f'li.row[data-email-id="{email.id}"]')
    expect(row).to_be_visible()
    expect(sent_tab.locator("li.row")).to_have_count(0)
    # What the tabs say at the very moment the badge turns Sent.
    page.evaluate(
        """(id) => {
          const row = document.querySelector(`li.row[data-email-id="${id}"]`);
          const count = (view) => document.querySelector(`[data-count-for="${view}"]`).textContent;
          new MutationObserver(() => {
            if (row.dataset.status === "sent" && !document.body.dataset.atSent)
              document.body.dataset.atSent = JSON.stringify(
                {scheduled: count("scheduled"), sent: count("sent"), all: count("all")});
          }).observe(row, {attributes: true, attributeFilter: ["data-status"]});
        }""",
        str(email.id),
    )

    emails.send_now(conn, orgs.personal_scope(conn, ada.id), email.id, settings=settings)

    page.wait_for_selector("body[data-at-sent]", state="attached", timeout=30_000)  # (CSP: no wait_for_function)
    assert json.loads(page.get_attribute("body", "data-at-sent")) == {"scheduled": "0", "sent": "1", "all": "1"}
    row.wait_for(state="detached")
    expect(page.locator("#empty")).to_be_visible()
    arrived = sent_tab.locator(f'li.row[data-email-id="{email.id}"][data-status="sent"]')
    expect(arrived).to_be_visible()
    expect(arrived.locator(".subject")).to_have_text("On its way")
    expect(sent_tab.locator('[data-count-for="sent"]')).to_have_text("1")
    expect(sent_tab.locator('[data-count-for="scheduled"]')).to_have_text("0")
    assert page.evaluate("window.__notReloaded") is True and sent_tab.evaluate("window.__notReloaded") is True


def test_a_past_time_is_warned_at_once_then_refused_beside_the_outlined_field(
    page: Any, ada: User, conn: Conn, output_dir: pathlib.Path
) -> None:
    page.get_by_role("button", name="Compose").first.click()
    page.fill("#c-to", "grace@example.com")
    page.fill("#c-subject", "Too late")
    page.fill("#c-body", "B")

    page.fill("#c-when", page.evaluate("window.reach.toLocalInput(new Date(Date.now() - 86400000))"))

    hint = page.locator("#c-when-hint")
    expect(hint).to_have_text(re.compile(r"^This time is in the past \(yesterday\)\. Pick a later time or Send now\.$"))
    expect(page.locator("#c-when")).to_have_attribute("aria-invalid", "true")

    page.click("#c-submit")

    error = page.locator('[data-error-for="send_at"]')
    # The server's sentence, with the time as read in the browser's zone (Europe/Paris).
    moment = r"\w{3} \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d CES?T"  # Mon 1 Dec 2026 09:00:00 CET
    expect(error).to_have_text(re.compile(rf"^This time is in the past: {moment}\. Pick a later time or send now\.$"))
    assert not re.search(r"\d{4}-\d\d-\d\dT", error.inner_text())
    field = page.locator("#c-when")
    expect(field).to_have_attribute("aria-invalid", "true")
    assert field.evaluate("(el) => getComputedStyle(el).borderTopColor") == DANGER
    assert emails_in_db(conn) == []
    page.screenshot(path=str(output_dir / "compose-past-time.png"))


def test_cancel_asks_first_and_the_page_then_says_it_once(
    page: Any, ada: User, server: Server, conn: Conn, settings: Settings, output_dir: pathlib.Path
) -> None:
    email = schedule(conn, ada, settings, subject="Maybe not", after=dt.timedelta(minutes=7, seconds=30))
    page.goto(f"{server.url}/emails/{email.id}")
    expect(page.locator("#detail .facts")).to_contain_text("in 7 minutes")
    confirm = page.locator("#confirm-dialog")

    page.get_by_role("button", name="Cancel", exact=True).click()

    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Cancel this email? It will not be sent.")
    page.screenshot(path=str(output_dir / "cancel-confirm.png"))
    page.get_by_role("button", name="Keep it").click()
    expect(confirm).to_be_hidden()
    assert [e["status"] for e in emails_in_db(conn)] == ["scheduled"]

    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_role("button", name="Yes, cancel it").click()

    page.wait_for_selector('#detail[data-status="cancelled"]')
    assert [e["status"] for e in emails_in_db(conn)] == ["cancelled"]
    assert page.locator("main").inner_text().count("Cancelled: it will not be sent.") == 1
    facts = page.locator("#detail .facts").inner_text()
    assert "Was due" in facts and not re.search(r"\bin \d+ (minute|hour|second|day)", facts), facts
    page.screenshot(path=str(output_dir / "cancelled.png"))


@pytest.fixture
def dev_server(env: dict[str, str], tmp_path: pathlib.Path) -> Iterator[Server]:
    """The web app as ``make run`` serves it: development mode, the dev login, every nav link."""
    running = Server(env | {"APP_ENV": "development", "MAIL_TRANSPORTS": "devmail://"}, tmp_path)
    yield running
    running.stop()


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A phone-sized page (375 × 740)."""
    context = browser.new_context(viewport={"width": 375, "height": 740}, timezone_id="Europe/Paris")
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


#: Where each element of a list sits and whether its text fits in it.
BOXES = """(selector) => [...document.querySelectorAll(selector)].map((el) => {
  const r = el.getBoundingClientRect();
  return {text: el.innerText, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
          fits: el.scrollWidth <= el.clientWidth};
})"""


def test_on_a_phone_the_header_is_two_lines_every_tab_fits_and_the_picker_is_to_the_minute(
    phone: Any, dev_server: Server, output_dir: pathlib.Path
) -> None:
    # Three-digit counts, the widest the tabs get in practice, kept there: no snapshot overwrites them.
    phone.route("**/live/snapshot*", lambda route: route.abort())
    phone.goto(f"{dev_server.url}/")
    phone.click("#dev-login")
    phone.wait_for_selector("#live-status[data-state=live]")
    phone.evaluate("document.querySelectorAll('[data-count-for]').forEach((el) => { el.textContent = '123'; })")
    width = phone.evaluate("window.innerWidth")

    links = phone.evaluate(BOXES, "header .nav a")
    header = phone.locator("header.top").bounding_box()
    line = phone.evaluate("parseFloat(getComputedStyle(document.querySelector('header .nav a')).lineHeight)")
    tabs = phone.evaluate(BOXES, "nav.tabs[aria-label=Lists] .tab")
    whose = phone.evaluate(BOXES, "nav.mine-filter .tab")
    phone.screenshot(path=str(output_dir / "phone-list.png"))

    assert len(links) == 7  # Emails, Recurring, Send to a list, API tokens, Members, Dev mailbox, Operators
    assert len({round(link["top"]) for link in links}) == 1, links  # the navigation is one line
    assert all(link["left"] >= 0 and link["right"] <= width for link in links), links
    assert header["height"] <= 2 * line + 60, header  # that line, and the one with Compose
    labels = ["Scheduled", "Sent", "Failed", "Uncertain", "Offline", "Cancelled", "All"]
    assert [t["text"].split()[0] for t in tabs] == labels
    assert all(t["fits"] and t["left"] >= 0 and t["right"] <= width for t in tabs), tabs
    assert [t["text"] for t in whose] == ["Everyone's", "Mine"]
    assert all(t["fits"] and t["left"] >= 0 and t["right"] <= width for t in whose), whose
    assert phone.evaluate("document.documentElement.scrollWidth") <= width

    phone.get_by_role("button", name="Compose").first.click()

    picker = phone.locator("#c-when")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", picker.input_value()), picker.input_value()
    assert picker.get_attribute("step") is None
    head = phone.locator("#compose .modal-head").bounding_box()
    first = phone.locator("#compose .field").first.bounding_box()
    assert first["y"] - (head["y"] + head["height"]) >= 12, (head, first)
    phone.screenshot(path=str(output_dir / "phone-compose.png"))


def populate(conn: Conn, user: User, settings: Settings) -> None:
    """A dashboard in use: sent, failed and uncertain emails, a batch on its way, emails to come."""
    now = dt.datetime.now(dt.UTC)

    def add(subject: str, to: list[str], after: dt.timedelta, outcome: str = "", error: str | None = None) -> None:
        draft = validation.validate(
            to=to, subject=subject, body_text="Hello", send_at=now + after, send_tz="Europe/Paris"
        )
        email = emails.schedule(conn, owner=user, draft=draft, settings=settings)[0]
        if outcome:
            flow.attempt(conn, email, outcome, error=error)

    add("Board meeting notes", ["board@acme.example"], dt.timedelta(0), "sent")
    add("Welcome aboard, Grace!", ["grace@example.com"], dt.timedelta(0), "sent")
    add("Invoice #2041", ["billing@client.example"], dt.timedelta(0), "failed", "550 5.1.1 no such user")
    add("Weekly report", ["team@acme.example", "cto@acme.example"], dt.timedelta(0), "uncertain", "connection lost")
    plan = batch_plan.prepare(
        settings=settings,
        addresses="\n".join(f"reader{i}@example.com" for i in range(40)),
        subject="Spring is here",
        body_text="Hello",
        name="Spring outreach",
        min_delay_seconds=40,  # the first 13 within the scheduling horizon: they have jobs, so may be "sending"
    )
    batch, _ = batches.create(conn, owner=user, plan=plan, settings=settings)
    first = [
        r["id"]
        for r in conn.execute(
            "SELECT id FROM emails WHERE batch_id = %s ORDER BY send_at LIMIT 13", (batch.id,)
        ).fetchall()
    ]
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = ANY(%s)", (first,))
    conn.execute("UPDATE emails SET status = 'sent', sent_at = now() WHERE id = ANY(%s)", (first,))
    add("Lunch on Friday?", ["ada@example.com"], dt.timedelta(minutes=4, seconds=30))
    add("Quarterly numbers", ["cfo@acme.example"], dt.timedelta(hours=15, minutes=1))
    add("Happy birthday, Alan!", ["alan@example.com"], dt.timedelta(days=3))


def test_the_readme_screenshots_desktop_and_phone(
    browser: Any, dev_server: Server, conn: Conn, settings: Settings, output_dir: pathlib.Path
) -> None:
    """test-output/dashboard.png and dashboard-phone.png are the README's docs/ images (copied by hand)."""
    context = browser.new_context(viewport={"width": 1200, "height": 640}, timezone_id="Europe/Paris")
    page = context.new_page()
    try:
        page.goto(f"{dev_server.url}/")
        page.click("#dev-login")
        page.wait_for_selector("#live-status[data-state=live]")
        populate(conn, user_named(conn, settings.dev_user_email), settings)
        page.goto(f"{dev_server.url}/?view=all")
        page.wait_for_selector("#live-status[data-state=live]")
        expect(page.locator('[data-count-for="all"]')).to_have_text("47")
        page.screenshot(path=str(output_dir / "dashboard.png"))

        page.set_viewport_size({"width": 375, "height": 740})
        page.reload()
        page.wait_for_selector("#live-status[data-state=live]")
        tabs = page.evaluate(BOXES, ".tabs .tab")
        page.screenshot(path=str(output_dir / "dashboard-phone.png"))
    finally:
        context.close()

    assert all(t["fits"] and t["left"] >= 0 and t["right"] <= 375 for t in tabs), tabs
