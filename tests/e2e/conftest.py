"""A real headless Chromium (Debian's package) driven by Playwright; no browser download."""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Screenshots and other artefacts of a test run (gitignored).
OUTPUT = ROOT / "test-output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("Debian's chromium is required for browser tests: apt-get install -y chromium")
    return found


# Module-scoped, not session-scoped: Playwright's sync API runs an event loop in this
# thread while it is open, and later tests call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def server_first(request: pytest.FixtureRequest) -> None:
    """Start the test's server (if it has one) before its page, so that the page closes first.

    A gunicorn stopped while the browser still holds connections waits for them (2 s for
    kept-alive ones, up to a second for a live stream): closed first, the browser has let
    them go, and each browser test's teardown is that much shorter.
    """
    if "server" in request.fixturenames:
        request.getfixturevalue("server")


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context in a zone that is not the server's, so time handling is tested."""
    server_first(request)
    context = browser.new_context(viewport={"width": 1200, "height": 800}, timezone_id="Europe/Paris")
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


@pytest.fixture
def output_dir() -> pathlib.Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


def sign_in_with_google(page: Any, server: Any) -> None:
    """Sign in through the local OAuth provider and wait for the live stream to be open."""
    page.goto(f"{server.url}/")
    page.get_by_role("link", name="Sign in with Google").click()
    page.wait_for_selector("#live-status[data-state=live]")
