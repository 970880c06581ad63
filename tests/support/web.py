"""Fixtures for the web app: the app on a test database, a local OAuth provider
to sign in through, and a real gunicorn for tests that need a server.

Loaded by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import pathlib
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterator

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tasks.core import db
from tasks.domain.models import User
from tests.support import procs
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.smtp_sink import free_port
from webapp import create_app, ext

_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture(scope="session")
def oauth_provider() -> Iterator[OAuthProvider]:
    """The stand-in for Google's OAuth endpoints, shared by the session."""
    provider = OAuthProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def web_env(env: dict[str, str], oauth_provider: OAuthProvider) -> dict[str, str]:
    """The test environment with Google sign-in pointed at the local provider."""
    return env | oauth_provider.env() | {"API_RATE_LIMIT": "100000/minute"}


def make_app(environ: dict[str, str]) -> Flask:
    return create_app({"ENV": environ, "TESTING": True})


@pytest.fixture
def app(web_env: dict[str, str]) -> Iterator[Flask]:
    application = make_app(web_env)
    yield application
    application.extensions[ext.KEY].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def start_oauth(client: FlaskClient, provider: OAuthProvider, account: Account, next_path: str | None = None) -> str:
    """Go from the sign-in page to the provider and back; return the callback path it redirects to."""
    provider.account = account
    client.get("/auth/login" + (f"?next={urllib.parse.quote(next_path, safe='')}" if next_path else ""))
    to_provider = client.get("/auth/google")
    assert to_provider.status_code == 302, to_provider.data
    back = requests.get(to_provider.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    parts = urllib.parse.urlsplit(back.headers["Location"])
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def sign_in(oauth_provider: OAuthProvider, database_url: str) -> Callable[..., User]:
    """Sign ``client`` in as ``email`` through the whole OAuth flow; return the user."""

    def do(client: FlaskClient, email: str, name: str = "Test User") -> User:
        callback = start_oauth(client, oauth_provider, Account(email=email, name=name))
        response = client.get(callback)
        assert response.status_code == 302, response.data
        with db.connect(database_url) as c:
            row = db.one(c, "user_by_email", email=email)
        assert row is not None
        return User.from_row(row)

    return do


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """Return the CSRF token a page gives the signed-in browser."""
    page = client.get(path)
    match = _META_CSRF.search(page.get_data(as_text=True))
    assert match, page.get_data(as_text=True)[:500]
    return match[1]


class Server:
    """A real gunicorn serving the app (as `make run` does)."""

    def __init__(self, environ: dict[str, str], log_dir: pathlib.Path, app: str = "webapp:create_app()"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = procs.Process(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "gunicorn.conf.py",
                "--workers",
                "1",
                "--threads",
                "8",
                app,
            ],
            environ | {"WEB_BIND": f"127.0.0.1:{self.port}"},
            log_dir / "gunicorn.log",
        )
        procs.wait_until(self._answers, timeout=30, what="gunicorn to answer")

    def _answers(self) -> bool:
        if self.proc.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.proc.output()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or slow on a loaded machine
            return False

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture
def server(web_env: dict[str, str], tmp_path: pathlib.Path) -> Iterator[Server]:
    """A real gunicorn on a free port, configured for this test."""
    running = Server(web_env, tmp_path)
    yield running
    running.stop()


def signed_in_session(server: Server, provider: OAuthProvider, email: str) -> requests.Session:
    """Return a ``requests`` session signed in to ``server`` through the OAuth flow."""
    provider.account = Account(email=email, name=email.split("@")[0].title())
    session = requests.Session()
    response = session.get(f"{server.url}/auth/google", timeout=10)
    assert response.status_code == 200 and response.url.rstrip("/") == server.url, response.url
    return session


def page_csrf(session: requests.Session, url: str) -> str:
    match = _META_CSRF.search(session.get(url, timeout=10).text)
    assert match
    return match[1]
