"""A 500 is a plain page with an error id that the log line also has; and the web's logs,
through a whole session of ordinary and abusive requests, never show a secret, a token
or a body. A real gunicorn with production-style JSON logs at DEBUG."""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.oauth_provider import CLIENT_SECRET, OAuthProvider
from tests.support.web import Server, page_csrf, signed_in_session

pytestmark = pytest.mark.slow
SECRET_KEY = "secret-key-never-logged-0123456789abcdef"
OPS_TOKEN = "ops-token-never-logged-0123456789"
BODY = "BODY-MARKER-5e1f the confidential body"


@pytest.fixture
def boom_server(web_env: dict[str, str], tmp_path: pathlib.Path) -> Iterator[Server]:
    environ = web_env | {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "SECRET_KEY": SECRET_KEY, "OPS_TOKEN": OPS_TOKEN}
    running = Server(environ, tmp_path, app="tests.security.boom_app:create_app()")
    yield running
    running.stop()


def _log_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_a_500_is_a_plain_page_with_an_id_the_log_line_has_too(
    boom_server: Server, oauth_provider: OAuthProvider
) -> None:
    session = signed_in_session(boom_server, oauth_provider, "ada@example.com")
    token = page_csrf(session, f"{boom_server.url}/")

    page = session.post(f"{boom_server.url}/boom", data={"csrf_token": token, "body": BODY}, timeout=10)
    # A program's request (JSON wanted) with a token beside the cookie: a page route takes the
    # cookie alone (and its CSRF token), but the header is still in the request that failed.
    api = session.post(
        f"{boom_server.url}/boom",
        json={"body_text": BODY},
        headers={"Authorization": "Bearer rdbx_not-a-real-token", "Accept": "application/json", "X-CSRF-Token": token},
        timeout=10,
    )
    boom_server.stop()

    assert page.status_code == 500 and page.headers["Content-Type"].startswith("text/html")
    match = re.search(r'<code class="error-id">([0-9a-f]{12})</code>', page.text)
    assert match, page.text
    assert api.status_code == 500
    assert api.json()["error"]["code"] == "internal" and re.fullmatch(r"[0-9a-f]{12}", api.json()["error"]["error_id"])
    for shown in (page.text, api.text):
        for leak in ("Traceback", "RuntimeError", 'File "', "boom_app", BODY, "rdbx_not-a-real-token"):
            assert leak not in shown, leak
    lines = [line for line in _log_lines(boom_server.proc.output()) if line.get("event") == "unhandled error"]
    assert {line["error_id"] for line in lines} == {match[1], api.json()["error"]["error_id"]}
    assert all(line["path"] == "/boom" and "RuntimeError" in line["exception"] for line in lines)


def test_the_webs_logs_never_show_a_secret_a_token_or_a_body(
    boom_server: Server, oauth_provider: OAuthProvider
) -> None:
    """Sign-in (code and state in the URL), tokens, bodies, refusals of every kind, a 500."""
    session = signed_in_session(boom_server, oauth_provider, "ada@example.com")
    codes = list(oauth_provider.codes)
    cookie = session.cookies["reachdbox_session"]
    csrf = page_csrf(session, f"{boom_server.url}/tokens/")
    created = session.post(f"{boom_server.url}/tokens/", data={"csrf_token": csrf, "name": "ci"}, timeout=10).text
    secret = re.search(r"rdbx_[A-Za-z0-9_-]{20,}", created)
    assert secret
    bearer = {"Authorization": f"Bearer {secret[0]}"}
    new: dict[str, Any] = {"to": ["bob@example.com"], "subject": "Hi", "body_text": BODY, "body_html": f"<p>{BODY}</p>"}
    new["send_now"] = True
    url, metrics, boom = f"{boom_server.url}/api/v1/emails", f"{boom_server.url}/metrics", f"{boom_server.url}/boom"
    answers = [
        requests.post(url, json=new, headers=bearer, timeout=10).status_code,
        requests.post(url, json=new | {"to": [BODY]}, headers=bearer, timeout=10).status_code,
        requests.post(url, data=BODY.encode() * 600_000, headers=bearer, timeout=30).status_code,
        requests.post(url, json=new, headers={"Authorization": f"Bearer {secret[0]}x"}, timeout=10).status_code,
        session.post(url, json=new, headers={"X-CSRF-Token": "forged"}, timeout=10).status_code,
        requests.get(metrics, headers={"Authorization": f"Bearer {OPS_TOKEN}"}, timeout=10).status_code,
        requests.get(metrics, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code,
        requests.post(boom, json=new, headers=bearer, timeout=10).status_code,
        session.post(boom, json=new, headers=bearer | {"X-CSRF-Token": csrf}, timeout=10).status_code,
        requests.get(f"{boom_server.url}/boom?token={secret[0]}", headers=bearer, timeout=10).status_code,
        session.post(f"{boom_server.url}/auth/logout", data={"csrf_token": csrf}, timeout=10).status_code,
    ]
    boom_server.stop()
    output = boom_server.proc.output()

    # A token alone on a page route is no credential (403: no CSRF token); with the cookie it fails (500).
    assert answers == [201, 422, 413, 401, 403, 200, 401, 403, 500, 500, 200]
    assert "GET /auth/google/authorized" in output  # the callback was logged, without its query
    for leak in (secret[0], secret[0][5:], cookie, csrf, CLIENT_SECRET, SECRET_KEY, OPS_TOKEN, "BODY-MARKER", *codes):
        assert leak not in output, f"{leak[:12]}... leaked into the logs"
