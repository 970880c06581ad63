"""Markup stored in every user-controlled field stays inert in a real browser (Debian's
chromium): subject, bodies, list columns and rejected lines, batch and token names, the
search box, the Google name, error messages and the dev mailbox.

The page's Content-Security-Policy would stop inline handlers by itself, so these
pages are opened with the CSP bypassed: what is checked is that the markup is
escaped (and HTML bodies sandboxed), not only that the policy caught it.
"""

from __future__ import annotations

import email.message
import pathlib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tasks.core import db
from tasks.domain import tokens
from tasks.domain.models import User
from tests.e2e.conftest import server_first
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server

pytestmark = pytest.mark.slow
Conn = Any
#: Breaks out of text, of a quoted attribute and of a tag: each way sets window.__pwned.
XSS = "\"'><img src=x onerror=window.__pwned=1><script>window.__pwned=1</script><svg onload=window.__pwned=1>"
SHOWN = "onerror=window.__pwned=1"
#: Run in every page: anything the markup made in the document itself (not in a sandboxed iframe).
PROBE = """() => ({
  pwned: window.__pwned,
  images: document.querySelectorAll('img[src="x"], img[src$="/x"]').length,
  svgs: document.querySelectorAll('svg[onload]').length,
  scripts: [...document.scripts].filter((s) => s.text.includes('__pwned')).length,
  frames: [...document.querySelectorAll('iframe')].map((f) => f.getAttribute('sandbox')),
  text: document.body.innerText,
})"""


@pytest.fixture
def web_env(web_env: dict[str, str]) -> dict[str, str]:
    """Ada is an operator here, so the dev mailbox page is hers to see."""
    return web_env | {"OPERATOR_EMAILS": "ada@example.com"}


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    server_first(request)
    context = browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    opened.on("dialog", on_dialog)
    opened.dialogs = dialogs
    yield opened
    context.close()


def inert(page: Any, where: str, *, shows_markup: bool = True) -> dict[str, Any]:
    """Assert nothing the markup could do happened on this page."""
    page.wait_for_load_state("load")
    seen = page.evaluate(PROBE)

    assert seen["pwned"] is None, f"script ran on {where}"
    assert (seen["images"], seen["svgs"], seen["scripts"]) == (0, 0, 0), (where, seen)
    assert all(sandbox == "" for sandbox in seen["frames"]), (where, seen["frames"])
    if shows_markup:
        assert SHOWN in seen["text"], f"{where} does not show the stored text"
    assert page.dialogs == []
    return seen


def test_markup_in_every_user_field_is_inert_on_every_page(
    page: Any, server: Server, oauth_provider: OAuthProvider, conn: Conn, output_dir: pathlib.Path
) -> None:
    oauth_provider.account = Account(email="ada@example.com", name=XSS[:150])
    page.goto(f"{server.url}/auth/google")
    page.wait_for_selector("#live-status")
    ada = User.from_row(db.one(conn, "user_by_email", email="ada@example.com"))
    api = {"Authorization": f"Bearer {tokens.create(conn, ada)[1]}"}
    created = requests.post(
        f"{server.url}/api/v1/emails",
        json={
            "to": ["bob@example.com"],
            "subject": XSS,
            "body_text": XSS,
            "body_html": f"<p>Hi</p>{XSS}",
            "send_at": "2030-01-01T00:00:00Z",
        },
        headers=api,
        timeout=10,
    )
    batch = requests.post(
        f"{server.url}/api/v1/batches",
        json={
            "recipients": [{"email": "ann@example.com", "first_name": XSS}, {"email": XSS, "first_name": "x"}],
            "subject": "Hi {{first_name}}",
            "body_text": "Dear {{first_name}}",
            "name": XSS,
            "start_at": "2030-01-01T00:00:00Z",
        },
        headers=api,
        timeout=10,
    )
    assert (created.status_code, batch.status_code) == (201, 201), (created.text, batch.text)
    email_id, batch_id = created.json()["id"], batch.json()["batch"]["id"]
    captured = email.message.EmailMessage()
    captured["From"], captured["To"], captured["Subject"] = "a@example.com", "b@example.com", XSS
    captured.set_content(XSS)
    captured.add_alternative(f"<p>{XSS}</p>", subtype="html")
    kept = db.one(
        conn,
        "insert_devmail",
        mail_from="a@example.com",
        rcpt_tos=["b@example.com"],
        message_id="<x@test>",
        subject=XSS,
        raw=captured.as_bytes(),
    )
    assert kept is not None
    devmail_views = [f"/devmail/{kept['id']}?view={view}" for view in ("html", "text", "source", "headers", "links")]

    for path in ("/?view=all", f"/emails/{email_id}", f"/batches/{batch_id}", "/devmail/"):
        page.goto(f"{server.url}{path}")
        inert(page, path)
    page.goto(f"{server.url}/?view=all&q={urllib.parse.quote(XSS)}")
    assert page.input_value("input[name=q]") == XSS
    inert(page, "the search")

    page.goto(f"{server.url}/tokens/")
    page.fill("#t-name", XSS[:100])
    page.locator("#t-name").press("Enter")
    page.wait_for_selector("code >> text=rdbx_")
    inert(page, "the tokens page", shows_markup=False)
    assert page.locator("td", has_text="onerror=window").count() == 1

    page.goto(f"{server.url}/batches/new")
    page.fill("textarea[name=addresses]", f"ann@example.com\n{XSS}")
    page.fill("#b-subject", f"Hi {XSS}")
    page.fill("#b-body", XSS)
    page.click("#b-preview")
    page.wait_for_selector("#bp-rejected tr")
    inert(page, "the list preview")

    page.goto(f"{server.url}/?view=all")
    page.get_by_role("button", name="Compose").first.click()
    page.fill("#c-to", XSS.replace(" ", ""))
    page.fill("#c-subject", "S")
    page.fill("#c-body", "B")
    page.check("#c-now")
    page.click("#c-submit")
    page.wait_for_selector('[data-error-for="to"]:not(:empty)')
    inert(page, "the compose form's errors")

    page.goto(f"{server.url}/emails/{email_id}")
    page.evaluate(
        """(zone) => { const f = document.querySelector('form[action$="/reschedule"]');
        f.querySelector('[name=time_zone]').value = zone;
        f.querySelector('[name=send_at]').value = '2031-01-01T00:00:00Z';
        f.submit(); }""",
        XSS,
    )
    page.wait_for_selector(".flash.error")
    inert(page, "an error message")

    for path in devmail_views:  # a captured message's own page, in each of its views
        page.goto(f"{server.url}{path}")
        inert(page, path)
    page.screenshot(path=str(output_dir / "security-inert-markup.png"), full_page=True)
