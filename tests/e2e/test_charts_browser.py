"""The charts in a real browser: drawn with data, refreshed live, and fitting a phone's screen.

Screenshots go to test-output/ (operators-charts*.png, my-chart*.png, lateness*.png, operators-lateness.png).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.ops import charts
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow
PHONE = {"width": 375, "height": 740}
#: Colours of the series (app.css's --sent and --failed), as the canvas holds them.
SENT_RGB = (0x23, 0x70, 0x32)

#: How much of a canvas is painted in a colour (0..1), within a small tolerance for antialiasing.
SHARE_OF_COLOUR = """(canvas, rgb) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const near = (i) => [0, 1, 2].every((c) => Math.abs(data[i + c] - rgb[c]) < 12);
  let hits = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 200 && near(i)) hits++;
  return hits / (data.length / 4);
}"""


@pytest.fixture
def ops_server(web_env: dict[str, str], tmp_path: pathlib.Path) -> Iterator[Server]:
    running = Server(web_env | {"OPERATOR_EMAILS": "ops@example.com"}, tmp_path)
    yield running
    running.stop()


def sign_in(page: Any, server: Server, provider: OAuthProvider, email: str) -> None:
    provider.account = Account(email=email, name=email.split("@")[0].title())
    page.goto(f"{server.url}/")
    page.get_by_role("link", name="Sign in with Google").click()
    page.wait_for_selector("#live-status[data-state=live]")


def rollup(database_url: str) -> None:
    """Run the periodic task's body once, as a worker would (in a thread of its own:
    Playwright's sync API keeps an event loop running in this one)."""

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as c:
            await charts.rollup(c)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, go()).result(timeout=60)


def new_email(conn: db.Conn, owner_email: str) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO users (email) VALUES (%s)"
        " ON CONFLICT ((lower(email))) DO UPDATE SET name = users.name RETURNING id",
        [owner_email],
    ).fetchone()
    assert row is not None
    email_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO emails (id, org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at,"
        " next_attempt_at, message_id) VALUES (%s, (SELECT org_id FROM memberships WHERE user_id = %s), %s,"
        " 'noreply@example.com', ARRAY['bob@example.com'], 's', 'b', now(),"
        " now() + interval '5 minutes', %s)",
        [email_id, row["id"], row["id"], f"<{email_id}@test>"],
    )
    return email_id


def events(conn: db.Conn, email_id: uuid.UUID, kind: str, ago: list[dt.timedelta], **detail: Any) -> None:
    for delta in ago:
        conn.execute(
            "INSERT INTO email_events (org_id, email_id, kind, at, detail)"
            " SELECT org_id, id, %s, now() - %s, %s FROM emails WHERE id = %s",
            [kind, delta, Jsonb(detail), email_id],
        )


def minutes(*values: float) -> list[dt.timedelta]:
    return [dt.timedelta(minutes=v) for v in values]


def canvases_drawn(page: Any, selector: str) -> list[dict[str, float]]:
    """The size of every chart canvas under ``selector``, as laid out on the page."""
    boxes = [c.bounding_box() for c in page.locator(f"{selector} canvas").all()]
    assert boxes and all(b is not None for b in boxes)
    return boxes


def fits_the_screen(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_the_operators_charts_draw_the_events_refresh_live_and_fit_a_phone(
    page: Any,
    ops_server: Server,
    oauth_provider: OAuthProvider,
    conn: db.Conn,
    database_url: str,
    output_dir: pathlib.Path,
) -> None:
    email_id = new_email(conn, "alice@example.com")
    events(conn, email_id, "sent", minutes(50, 40, 40, 30, 20, 12, 12, 12, 5, 1), transport="primary")
    events(conn, email_id, "failed", minutes(35, 8), transport="primary")
    events(conn, email_id, "retry_scheduled", minutes(25), transport="primary")
    events(conn, email_id, "rate_limited", minutes(15, 15, 14), transport="primary")
    for late, ago in ((4, 45), (30, 45), (12, 20), (250, 20), (8, 3)):
        events(conn, email_id, "claimed", minutes(ago), attempt=1, late_ms=late)
    rollup(database_url)  # a worker's run: the rollup, and the queue's depth now
    sign_in(page, ops_server, oauth_provider, "ops@example.com")

    script_errors: list[str] = []
    page.on("pageerror", lambda e: script_errors.append(str(e)))
    page.goto(f"{ops_server.url}/operators")
    page.wait_for_selector("#charts[data-loads]")

    charts_section = page.locator("#charts")
    assert charts_section.get_attribute("data-sent") == "10"
    assert charts_section.get_attribute("data-failed") == "2"
    assert charts_section.get_attribute("data-rate-limited") == "3"
    figures = page.locator("#charts figure[data-chart]")
    assert figures.count() == 5
    for box in canvases_drawn(page, "#charts figure"):
        assert box["width"] > 300 and box["height"] > 100
    throughput = page.locator('figure[data-chart="throughput"] canvas')
    assert throughput.evaluate(SHARE_OF_COLOUR, list(SENT_RGB)) > 0.001  # the sent line is drawn
    assert "sent 10 · failed 2 · retried 1" in page.locator('figure[data-chart="throughput"] figcaption').inner_text()
    assert "p99" in page.locator('figure[data-chart="lateness"] figcaption').inner_text()
    assert "primary 3" in page.locator('figure[data-chart="rate_limited"] figcaption').inner_text()
    assert (
        "0 sent over a minute late this hour"
        in page.locator('figure[data-chart="sent_lateness"] figcaption').inner_text()
    )
    page.screenshot(path=str(output_dir / "operators-charts.png"), full_page=True)

    # New events arrive: the next refresh (every 10 s) draws them, without a reload.
    page.evaluate("window.__notReloaded = true")
    events(conn, email_id, "sent", [dt.timedelta(0)] * 3, transport="primary")
    page.wait_for_selector('#charts[data-sent="13"]', timeout=30_000)
    assert page.evaluate("window.__notReloaded") is True
    assert "sent 13" in page.locator('figure[data-chart="throughput"] figcaption').inner_text()

    page.set_viewport_size(PHONE)
    page.goto(f"{ops_server.url}/operators?range=24h")
    page.wait_for_selector("#charts[data-loads]")
    assert page.locator("#charts").get_attribute("data-sent") == "13"
    for box in canvases_drawn(page, "#charts figure"):
        assert 200 < box["width"] <= PHONE["width"] and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert fits_the_screen(page)
    page.screenshot(path=str(output_dir / "operators-charts-phone.png"), full_page=True)
    assert script_errors == []


def test_a_users_chart_shows_their_own_week_and_fits_a_phone(
    page: Any,
    ops_server: Server,
    oauth_provider: OAuthProvider,
    conn: db.Conn,
    database_url: str,
    output_dir: pathlib.Path,
) -> None:
    mine, theirs = new_email(conn, "ada@example.com"), new_email(conn, "grace@example.com")
    events(conn, mine, "sent", [dt.timedelta(days=d, minutes=3) for d in (0, 1, 1, 3, 3, 3, 5)])
    events(conn, mine, "failed", [dt.timedelta(days=3)])
    events(conn, theirs, "sent", [dt.timedelta(days=1)] * 20)
    rollup(database_url)
    script_errors: list[str] = []
    page.on("pageerror", lambda e: script_errors.append(str(e)))
    sign_in(page, ops_server, oauth_provider, "ada@example.com")

    page.wait_for_selector("#my-chart[data-loads]")

    chart = page.locator("#my-chart")
    assert (chart.get_attribute("data-sent"), chart.get_attribute("data-failed")) == ("7", "1")  # never Grace's 20
    [box] = canvases_drawn(page, "#my-chart")
    assert box["width"] > 300 and box["height"] > 50
    assert page.locator("#my-chart canvas").evaluate(SHARE_OF_COLOUR, list(SENT_RGB)) > 0.005  # the bars
    assert "sent 7 · failed 1" in chart.inner_text()
    page.screenshot(path=str(output_dir / "my-chart.png"))

    page.set_viewport_size(PHONE)
    page.reload()
    page.wait_for_selector("#my-chart[data-loads]")
    [box] = canvases_drawn(page, "#my-chart")
    assert 200 < box["width"] <= PHONE["width"]
    assert fits_the_screen(page)
    page.screenshot(path=str(output_dir / "my-chart-phone.png"), full_page=True)
    assert script_errors == []


def test_the_operators_alerts_show_what_to_do_and_fit_a_phone(
    page: Any,
    ops_server: Server,
    oauth_provider: OAuthProvider,
    conn: db.Conn,
    env: dict[str, str],
    output_dir: pathlib.Path,
) -> None:
    from tasks.core import config
    from tasks.ops import monitor

    m = monitor.Monitor(config.load(env), name="browser-test", grace=0)  # no Slack: recorded only
    try:
        db.run(conn, "ensure_breakers", labels=["primary"])
        error = "cannot connect to smtp://mail-relay.internal.example.com:587: " + "x" * 200
        db.one(conn, "breaker_failure", label="primary", trial=None, threshold=1, cooldown=60, error=error)
        m.round()
    finally:
        m.close()
    sign_in(page, ops_server, oauth_provider, "ops@example.com")
    page.set_viewport_size(PHONE)

    page.goto(f"{ops_server.url}/operators")

    alerts = page.locator("#alerts")
    assert alerts.locator('[data-alert="no_worker"][data-state="raised"]').count() == 1
    assert "What to do: Check that provider" in alerts.locator('[data-alert="breaker:primary"]').inner_text()
    assert fits_the_screen(page)
    page.screenshot(path=str(output_dir / "operators-alerts-phone.png"), full_page=True)


def sent_late(conn: db.Conn, owner_email: str, at: dt.datetime, late: dt.timedelta) -> None:
    """An email of ``owner_email``'s scheduled for ``at - late`` and sent at ``at``."""
    email_id = new_email(conn, owner_email)
    conn.execute("UPDATE emails SET send_at = %s WHERE id = %s", [at - late, email_id])  # (no worker runs)
    conn.execute(
        "INSERT INTO email_events (org_id, email_id, kind, at, detail)"
        " SELECT org_id, id, 'sent', %s, '{}' FROM emails WHERE id = %s",
        [at, email_id],
    )


def test_the_lateness_view_draws_a_users_own_percentiles_in_light_dark_and_on_a_phone(
    page: Any,
    ops_server: Server,
    oauth_provider: OAuthProvider,
    conn: db.Conn,
    database_url: str,
    output_dir: pathlib.Path,
) -> None:
    row = conn.execute("SELECT date_trunc('minute', now()) AS m").fetchone()
    assert row is not None
    base: dt.datetime = row["m"] + dt.timedelta(seconds=30)
    # Seconds late, by minutes ago: 20 emails, 5 of them more than a minute late.
    lates = {50: [1, 2, 3], 40: [2, 5, 70], 30: [1, 1, 2, 3], 20: [4, 9, 30, 65, 90], 10: [2, 4, 6, 80, 200]}
    for ago, seconds in lates.items():
        for late in seconds:
            sent_late(conn, "ada@example.com", base - dt.timedelta(minutes=ago), dt.timedelta(seconds=late))
    sent_late(conn, "grace@example.com", base - dt.timedelta(minutes=10), dt.timedelta(seconds=500))  # not Ada's
    rollup(database_url)
    script_errors: list[str] = []
    page.on("pageerror", lambda e: script_errors.append(str(e)))
    sign_in(page, ops_server, oauth_provider, "ada@example.com")

    page.goto(f"{ops_server.url}/lateness?mine=1")
    page.wait_for_selector("#lateness[data-loads]")

    section = page.locator("#lateness")
    assert (section.get_attribute("data-sent"), section.get_attribute("data-over1m")) == ("20", "5")
    for box in canvases_drawn(page, "#lateness figure"):
        assert box["width"] > 300 and box["height"] > 100
    assert "5 of 20 sent more than a minute late" in page.locator('figure[data-chart="over"] figcaption').inner_text()
    # The text alternative, newest minute first: 2, 4, 6, 80, 200 s: p50 6 s, p95 176 s, p99 195.2 s.
    cells = page.locator("#lateness-minutes tbody tr").first.locator("td").all_inner_texts()
    assert cells[1:] == ["5", "6 s", "2.9 min", "3.3 min", "⚠ 2"]
    assert page.locator("#lateness-minutes tbody tr").count() == 5
    assert page.locator("#view-lateness[aria-current=page]").count() == 1
    page.screenshot(path=str(output_dir / "lateness.png"), full_page=True)

    page.emulate_media(color_scheme="dark")
    page.reload()
    page.wait_for_selector("#lateness[data-loads]")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.screenshot(path=str(output_dir / "lateness-dark.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 800})
    page.reload()
    page.wait_for_selector("#lateness[data-loads]")
    for box in canvases_drawn(page, "#lateness figure"):
        assert 200 < box["width"] <= 390 and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert fits_the_screen(page)
    page.screenshot(path=str(output_dir / "lateness-phone.png"), full_page=True)
    assert script_errors == []

    # The operators' chart of the same measure: everyone's, Grace's too.
    ops = page.context.browser.new_page(viewport={"width": 1200, "height": 900})
    sign_in(ops, ops_server, oauth_provider, "ops@example.com")
    ops.goto(f"{ops_server.url}/operators")
    ops.wait_for_selector("#charts[data-loads]")
    assert ops.locator("#charts").get_attribute("data-sent-late-over1m") == "6"
    figure = ops.locator('figure[data-chart="sent_lateness"]')
    caption = figure.locator("figcaption").inner_text()
    # The latest minute: Ada's 2, 4, 6, 80, 200 s and Grace's 500 s.
    assert "p50 43 s · p95 7.1 min · p99 8.1 min · 6 sent over a minute late this hour" in caption
    figure.screenshot(path=str(output_dir / "operators-lateness.png"))
    ops.close()
