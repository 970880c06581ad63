"""The API reference (/api/docs) in a real browser: it renders every operation from the
vendored Swagger UI under the site's strict CSP, asks no other host for anything, and
"Try it out" works as the signed-in user (session and CSRF token) and with a token."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tasks.core import db
from tasks.domain import emails, tokens
from tests.e2e.conftest import sign_in_with_google
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import Server
from webapp import security
from webapp.api import openapi

pytestmark = pytest.mark.slow
#: Swagger UI's element id of each operation: operations-<tag>-<operationId>.
BLOCKS = {
    op["operationId"]: f"operations-{op['tags'][0]}-{op['operationId']}"
    for item in openapi.document()["paths"].values()
    for k, op in item.items()
    if k != "parameters"
}
#: What the document's webhooks section (the events sent to endpoints) shows: one block each,
#: named by Swagger UI from its method and name.
EVENT_BLOCKS = [f"operations-webhooks-post{kind.replace('.', '_')}" for kind in openapi.document()["webhooks"]]
#: Collects what the page's Content-Security-Policy refused (none expected).
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def watch(page: Any, server: Server) -> list[str]:
    """Record what the CSP refuses and every request the reference makes to another host."""
    page.add_init_script(WATCH_CSP)
    elsewhere: list[str] = []

    def seen(request: Any) -> None:
        if "/api/docs" in request.frame.url and not request.url.startswith((server.url, "data:")):
            elsewhere.append(request.url)

    page.on("request", seen)
    return elsewhere


def open_operation(page: Any, operation_id: str) -> Any:
    """Expand an operation, press Try it out, and return its block."""
    block = page.locator(f"#{BLOCKS[operation_id]}")
    block.locator(".opblock-summary").first.click()
    block.get_by_role("button", name="Try it out").click()
    return block


def execute(block: Any, status: int) -> str:
    """Press Execute; wait for the live answer with ``status``; return its body."""
    block.get_by_role("button", name="Execute").click()
    live = block.locator(".live-responses-table .response")
    live.locator(f'.response-col_status:text-is("{status}")').wait_for()
    return str(live.locator(".response-col_description pre").first.inner_text())


def test_the_reference_lists_every_operation_and_tries_them_as_the_signed_in_user(
    page: Any, server: Server, oauth_provider: OAuthProvider, output_dir: pathlib.Path
) -> None:
    elsewhere = watch(page, server)
    oauth_provider.account = Account(email="ada@example.com", name="Ada Lovelace")
    sign_in_with_google(page, server)
    page.goto(f"{server.url}/tokens/")
    page.get_by_role("link", name="API reference").click()

    page.wait_for_selector(".opblock")
    assert page.url == f"{server.url}/api/docs"
    shown = page.locator(".opblock").evaluate_all("blocks => blocks.map(b => b.id)")
    assert sorted(shown) == sorted([*BLOCKS.values(), *EVENT_BLOCKS])
    # A session POST needs the CSRF token, which the page's script adds: the example is scheduled.
    created = execute(open_operation(page, "createEmail"), 201)
    assert '"status": "scheduled"' in created and '"subject": "Hello"' in created
    block = open_operation(page, "listEmails")
    listed = execute(block, 200)

    assert '"to": [\n        "ann@example.com"' in listed and '"next_cursor": null' in listed
    block.locator(".live-responses-table").scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / "api-docs-try-it.png"))
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(output_dir / "api-docs.png"))
    assert page.evaluate("window.__cspViolations") == []
    assert elsewhere == []


def test_try_it_out_with_a_token_from_the_authorize_button(
    page: Any, server: Server, database_url: str, oauth_provider: OAuthProvider
) -> None:
    """Signed out: without credentials the API refuses; with a pasted personal access token it answers."""
    elsewhere = watch(page, server)
    with db.connect(database_url) as conn:
        grace = emails.ensure_user(conn, email="grace@example.com", name="Grace")
        secret = tokens.create(conn, grace, "docs")[1]
    response = page.goto(f"{server.url}/api/docs")
    assert response.headers["content-security-policy"] == security.CSP  # the site's own, not loosened
    block = open_operation(page, "listEmails")
    execute(block, 401)

    page.locator(".auth-wrapper .authorize").click()
    bearer = page.locator(".dialog-ux form", has=page.locator("#auth-bearer-value"))
    bearer.locator("#auth-bearer-value").fill(secret)
    bearer.get_by_role("button", name="Apply credentials").click()
    page.locator(".dialog-ux .close-modal").click()
    listed = execute(block, 200)

    assert '"emails": []' in listed
    assert page.evaluate("window.__cspViolations") == []
    assert elsewhere == []
