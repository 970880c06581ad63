"""A whole day at the dashboard, in a real browser: keyboard shortcuts that never take a key
from a field, dark mode that follows the system and remembers a choice (set before the first
paint), live changes said to screen readers, every page at 390 px, and an axe-core scan of
every page, light and dark, with no serious or critical violation.

One server and one signed-in dev user for the module (development mode: every page,
the dev mailbox and Operators included); each test opens its own browser context.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tasks.core import config, db
from tasks.core.config import Settings
from tasks.domain import unsubscribe
from tests.e2e.test_dashboard_ui import populate, user_named
from tests.support import procs
from tests.support.web import Server

pytestmark = pytest.mark.slow
#: The page background of each theme (app.css --bg).
BACKGROUNDS = {"light": "rgb(246, 247, 251)", "dark": "rgb(17, 20, 24)"}
#: The axe-core impacts that fail the scan.
BLOCKING = {"serious", "critical"}


@dataclasses.dataclass
class Site:
    server: Server
    settings: Settings
    database_url: str
    state: dict[str, Any]  # the signed-in browser's cookies (Playwright storage state)
    pages: dict[str, str]  # a name for each page scanned -> its path


@pytest.fixture(scope="module")
def site(module_database_url: str, browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The app as `make run` serves it, with the dev user signed in and a dashboard in use."""
    env = procs.process_env(
        database_url=module_database_url,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=f"rdbx-test-{os.getpid()}-ux:",
        smtp_port=1,  # unused: mail goes to the dev mailbox
        mail_domain="test.reachdbox.localhost",
    ) | {"APP_ENV": "development", "MAIL_TRANSPORTS": "devmail://"}
    settings = config.load(env)
    server = Server(env, tmp_path_factory.mktemp("ux"))
    context = browser.new_context(viewport={"width": 1200, "height": 800}, timezone_id="Europe/Paris")
    try:
        page = context.new_page()
        page.goto(f"{server.url}/")
        page.click("#dev-login")
        page.wait_for_selector("#live-status[data-state=live]")
        with db.connect(module_database_url) as conn:
            user = user_named(conn, settings.dev_user_email)
            populate(conn, user, settings)
            email = conn.execute(
                "SELECT id FROM emails WHERE status = 'failed' AND batch_id IS NULL LIMIT 1"
            ).fetchone()["id"]
            batch = conn.execute("SELECT id FROM batches LIMIT 1").fetchone()["id"]
            message = (
                "From: app@test.reachdbox.localhost\r\nTo: grace@example.com\r\nSubject: Hello\r\n\r\nHi Grace\r\n"
            )
            captured = db.one(
                conn,
                "insert_devmail",
                mail_from="app@test.reachdbox.localhost",
                rcpt_tos=["grace@example.com"],
                message_id="<1@test.reachdbox.localhost>",
                subject="Hello",
                raw=message.encode(),
            )
            assert captured is not None
            bulk_id = conn.execute(
                """INSERT INTO bulk_actions (org_id, actor_id, action, query, total, applied, skipped, state,
                                           finished_at)
                   SELECT org_id, user_id, 'cancel', 'status:scheduled', 3, 2, 1, 'done', now()
                     FROM memberships WHERE user_id = %s LIMIT 1 RETURNING id""",
                (user.id,),
            ).fetchone()["id"]
        created = page.evaluate(
            """async () => (await window.reach.api('POST', '/api/v1/recurrences', {
                 to: ['team@example.com'], subject: 'Standup notes', body_text: 'Notes',
                 preset: {kind: 'weekdays', time: '09:00'}, time_zone: 'Europe/Paris'}))"""
        )
        assert created["status"] == 201, created
        state = context.storage_state()
    finally:
        context.close()
    pages = {
        "dashboard": "/?view=all",
        "compose": "/?view=all#compose",
        "email": f"/emails/{email}",
        "batch": f"/batches/{batch}",
        "recurring": "/recurring/",
        "recurrence": f"/recurring/{created['data']['id']}",
        "operators": "/operators",
        "org settings": "/org/settings",
        "members": "/members",
        "api docs": "/api/docs",
        "dev mailbox": "/devmail/",
        "a captured message": f"/devmail/{captured['id']}",
        "send to a list": "/batches/new",
        "recurrence edit": f"/recurring/{created['data']['id']}/edit",
        "api tokens": "/tokens/",
        "audit log": "/org/audit",
        "suppression list": "/suppressions/",
        "failures": "/failures",
        "upcoming": "/upcoming",
        "lateness": "/lateness",
        "webhooks": "/webhooks/",
        "bulk confirm": "/bulk/new?action=reschedule&view=scheduled&all=1",
        "bulk progress": f"/bulk/{bulk_id}",
        "unsubscribe": unsubscribe.PATH + unsubscribe.Links(settings.public_url, settings.secret_key).token(email),
    }
    yield Site(server, settings, module_database_url, state, pages)
    server.stop()


@pytest.fixture
def signed_in(browser: Any, site: Site) -> Iterator[Any]:
    """A page of a fresh context, signed in as the dev user (light system theme unless a test says)."""
    context = browser.new_context(
        viewport={"width": 1200, "height": 800}, timezone_id="Europe/Paris", storage_state=site.state
    )
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


def open_page(page: Any, site: Site, path: str) -> None:
    response = page.goto(site.server.url + path.removesuffix("#compose"))
    assert response is not None and response.ok, (path, response and response.status)
    if page.locator("#live-status").count():  # a page for signed-in users: its live stream opens
        page.wait_for_selector("#live-status[data-state=live]")
    if path.endswith("#compose"):
        page.get_by_role("button", name="Compose").first.click()
        expect(page.locator("#compose")).to_be_visible()
    if path == "/api/docs":
        page.wait_for_selector(".opblock")


def focused(page: Any) -> str:
    """What has the focus: its id, else its tag, class and text."""
    return str(
        page.evaluate(
            """() => { const a = document.activeElement;
                       return a.id || (a.tagName + '.' + a.className + ':' + a.textContent.trim()); }"""
        )
    )


# ---- keyboard ---------------------------------------------------------------------------------


def test_j_k_x_enter_move_select_and_open_rows(signed_in: Any, site: Site) -> None:
    page = signed_in
    open_page(page, site, "/?view=all")
    rows = page.locator("ul.rows > li.row")
    expect(rows).to_have_count(8)  # 7 emails and the batch

    page.keyboard.press("j")
    expect(rows.nth(0)).to_contain_class("current")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(rows.nth(1)).to_contain_class("current")
    expect(page.locator("li.row.current")).to_have_count(1)
    assert page.evaluate(
        "document.activeElement === document.querySelectorAll('ul.rows > li.row')[1].querySelector('a')"
    )

    # x: a batch's row, which has no checkbox, gets the focus; an email's row is ticked by it (its
    # checkbox, for bulk actions).
    batch_at = page.evaluate("[...document.querySelectorAll('ul.rows > li.row')].findIndex(r => r.matches('.batch'))")
    assert batch_at >= 0
    for _ in range(abs(batch_at - 1)):
        page.keyboard.press("j" if batch_at > 1 else "k")
    expect(rows.nth(batch_at)).to_contain_class("current")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("x")
    assert page.evaluate("document.activeElement === document.querySelector('li.row.current a')")
    page.keyboard.press("k" if batch_at > 0 else "j")
    expect(page.locator("li.row.current input.pick")).to_have_count(1)
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("x")
    expect(page.locator("li.row.current input.pick")).to_be_checked()
    page.keyboard.press("x")
    expect(page.locator("li.row.current input.pick")).not_to_be_checked()

    # Enter opens the current row, from the page itself too (nothing focused).
    href = page.locator("li.row.current a.row-link").get_attribute("href")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{href}")

    # With a modifier held a key is the browser's: Alt+j moves nothing.
    page.go_back()
    page.wait_for_selector("#live-status[data-state=live]")
    page.keyboard.press("Alt+j")
    expect(page.locator("li.row.current")).to_have_count(0)

    # The dev mailbox's messages are rows too, with their checkboxes.
    open_page(page, site, "/devmail/")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.locator(".mail-row.current input[type=checkbox]")).to_be_checked()


def test_slash_searches_and_a_field_keeps_its_keys(signed_in: Any, site: Site) -> None:
    page = signed_in
    open_page(page, site, "/?view=all")
    search = page.locator('form[role="search"] input[type="search"]').first

    page.keyboard.press("/")

    expect(search).to_be_focused()
    page.keyboard.type("jkxcg?/")
    expect(search).to_have_value("jkxcg?/")  # every key typed, none taken
    expect(page.locator("li.row.current")).to_have_count(0)
    expect(page.locator("#compose")).to_be_hidden()
    expect(page.locator("#shortcuts")).to_be_hidden()

    page.keyboard.press("Escape")  # leaves the search box, keeping its text
    expect(search).not_to_be_focused()
    expect(search).to_have_value("jkxcg?/")
    page.keyboard.press("c")
    expect(page.locator("#compose")).to_be_visible()
    expect(page.locator("#c-to")).to_be_focused()
    page.keyboard.type("j")
    expect(page.locator("#c-to")).to_have_value("j")
    page.locator("#c-body").fill("")
    page.locator("#c-body").press_sequentially("jk")
    expect(page.locator("#c-body")).to_have_value("jk")
    page.keyboard.press("Escape")
    expect(page.locator("#compose")).to_be_hidden()

    # A page without a search box: "/" goes to the list's, focused.
    page.goto(site.server.url + site.pages["recurring"])
    page.wait_for_selector("#live-status[data-state=live]")
    page.keyboard.press("/")
    page.wait_for_url("**/#search")
    expect(page.locator('form[role="search"] input[type="search"]').first).to_be_focused()


def test_question_mark_opens_an_accessible_help_and_g_goes_places(signed_in: Any, site: Site) -> None:
    page = signed_in
    open_page(page, site, "/?view=all")
    page.keyboard.press("j")
    before = focused(page)
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")

    page.keyboard.press("?")

    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Go to Failures")
    expect(help_dialog.get_by_role("button", name="Close")).to_be_focused()
    for _ in range(4):  # focus stays inside, whichever way Tab goes
        page.keyboard.press("Tab")
        assert page.evaluate("document.getElementById('shortcuts').contains(document.activeElement)")
        page.keyboard.press("Shift+Tab")
        assert page.evaluate("document.getElementById('shortcuts').contains(document.activeElement)")
    page.keyboard.press("j")  # keys are the dialog's while it is open
    expect(page.locator("li.row.current")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    assert focused(page) == before

    page.keyboard.press("g")
    page.keyboard.press("f")
    page.wait_for_url("**/failures")  # the Failures view, linked from the list's page
    expect(page.locator("h1")).to_have_text("Failures by cause")
    page.keyboard.press("g")
    page.keyboard.press("s")
    page.wait_for_url("**/?view=scheduled")


# ---- dark mode --------------------------------------------------------------------------------

#: The theme <html> had when <body> was first parsed, i.e. before anything could be painted.
THEME_AT_BODY = """
new MutationObserver((records, observer) => {
  if (document.body) { window.__themeAtBody = document.documentElement.dataset.theme || "none"; observer.disconnect(); }
}).observe(document, {childList: true, subtree: true});
"""


def background(page: Any) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


def test_dark_mode_follows_the_system_and_a_choice_persists_before_the_first_paint(
    browser: Any, site: Site, output_dir: pathlib.Path
) -> None:
    context = browser.new_context(
        viewport={"width": 1200, "height": 640},
        timezone_id="Europe/Paris",
        storage_state=site.state,
        color_scheme="dark",
    )
    try:
        context.add_init_script(THEME_AT_BODY)
        page = context.new_page()
        open_page(page, site, "/?view=all")
        toggle = page.locator("#theme-toggle")
        assert page.evaluate("window.__themeAtBody") == "dark"
        assert background(page) == BACKGROUNDS["dark"]
        expect(toggle).to_have_accessible_name("Theme: Auto")
        page.screenshot(path=str(output_dir / "dashboard-dark.png"))

        # Following the system as it changes, without a reload.
        page.emulate_media(color_scheme="light")
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        assert background(page) == BACKGROUNDS["light"]

        # A choice: Auto -> Light -> Dark, kept over the system's, on the next page and in another tab.
        toggle.click()
        expect(toggle).to_have_accessible_name("Theme: Light")
        toggle.click()
        expect(toggle).to_have_accessible_name("Theme: Dark")
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        page.reload()
        page.wait_for_selector("#live-status[data-state=live]")
        assert page.evaluate("window.__themeAtBody") == "dark"  # before the first paint: no flash of light
        assert background(page) == BACKGROUNDS["dark"]
        other = context.new_page()
        other.emulate_media(color_scheme="light")
        other.goto(site.server.url + site.pages["recurring"])
        assert other.evaluate("window.__themeAtBody") == "dark"

        # Back to Auto: the system's again.
        page.locator("#theme-toggle").click()
        expect(page.locator("#theme-toggle")).to_have_accessible_name("Theme: Auto")
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        page.reload()
        assert page.evaluate("window.__themeAtBody") == "light"
    finally:
        context.close()


# ---- screen readers, axe, phones ----------------------------------------------------------------


def test_a_live_change_is_said_to_screen_readers(signed_in: Any, site: Site) -> None:
    page = signed_in
    open_page(page, site, "/?view=scheduled")
    announcer = page.locator("#announcer")
    expect(announcer).to_have_attribute("aria-live", "polite")
    with db.connect(site.database_url) as conn:
        row = conn.execute(
            "SELECT id FROM emails WHERE subject = 'Happy birthday, Alan!' AND status = 'scheduled'"
        ).fetchone()
    assert row is not None
    expect(page.locator(f'li.row[data-email-id="{row["id"]}"]')).to_be_visible()
    # Cancelled elsewhere (another tab, through the API): this page hears it on its live stream.
    other = page.context.new_page()
    other.goto(site.server.url + "/recurring/")
    cancelled = other.evaluate(
        "async (id) => (await window.reach.api('POST', `/api/v1/emails/${id}/cancel`)).status", str(row["id"])
    )
    assert cancelled == 200

    expect(announcer).to_have_text("“Happy birthday, Alan!” is now Cancelled.", timeout=15_000)


def blocking(results: Any) -> list[str]:
    """The serious and critical violations, each with the elements it found."""
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> " + "; ".join(str(n["target"]) for n in v["nodes"][:5])
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_page_passes_axe_and_fits_a_390_px_screen(
    browser: Any, site: Site, theme: str, output_dir: pathlib.Path
) -> None:
    context = browser.new_context(
        viewport={"width": 1200, "height": 800},
        timezone_id="Europe/Paris",
        storage_state=site.state,
        color_scheme=theme,
    )
    axe = Axe()
    found: dict[str, list[str]] = {}
    too_wide: dict[str, int] = {}
    try:
        page = context.new_page()
        for name, path in site.pages.items():
            open_page(page, site, path)
            assert page.evaluate("document.documentElement.dataset.theme") == theme
            violations = blocking(axe.run(page))
            if theme == "dark":  # for a look: test-output/dark-<page>.png
                page.screenshot(path=str(output_dir / f"dark-{name.replace(' ', '-')}.png"))
            if violations:
                found[name] = violations
            page.set_viewport_size({"width": 390, "height": 844})
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > 390:
                too_wide[name] = width
            page.set_viewport_size({"width": 1200, "height": 800})
        # Signed out: the sign-in page.
        context.clear_cookies()
        open_page(page, site, "/auth/login")
        violations = blocking(axe.run(page))
        if violations:
            found["sign-in"] = violations
    finally:
        context.close()
    assert found == {}, "\n".join(f"{name}: {v}" for name, vs in found.items() for v in vs)
    assert too_wide == {}  # nothing scrolls sideways on a phone
