"""CSRF, header injection, inert user content and the response headers that back them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support import invariants
from tests.support.web import csrf_token

Conn = Any
XSS = "<img src=x onerror=alert(1)>"
NEW = {"to": ["bob@example.com"], "subject": "Hi", "body_text": "B", "send_at": "2030-01-01T00:00:00Z"}


@pytest.fixture
def alice(client: FlaskClient, sign_in: Callable[..., Any]) -> FlaskClient:
    sign_in(client, "alice@example.com")
    return client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/emails", NEW),
        ("POST", "/api/v1/batches", {"addresses": "a@example.com", "subject": "S", "body_text": "B"}),
        ("POST", "/tokens/", None),
        ("POST", "/auth/logout", None),
    ],
)
def test_a_state_changing_request_without_the_csrf_token_is_403(
    alice: FlaskClient, conn: Conn, method: str, path: str, body: Any
) -> None:
    response = alice.open(path, method=method, json=body)

    assert response.status_code == 403
    assert invariants.counts(conn) == {}
    assert conn.execute("SELECT count(*) AS n FROM api_tokens").fetchone()["n"] == 0
    assert alice.get("/").status_code == 200  # still signed in


def test_a_wrong_csrf_token_is_403(alice: FlaskClient, conn: Conn) -> None:
    response = alice.post("/api/v1/emails", json=NEW, headers={"X-CSRF-Token": "forged"})

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "csrf"


def test_the_csrf_header_or_form_field_lets_the_request_through(alice: FlaskClient, conn: Conn) -> None:
    token = csrf_token(alice)

    by_header = alice.post("/api/v1/emails", json=NEW, headers={"X-CSRF-Token": token})
    email_id = by_header.get_json()["id"]
    by_form = alice.post(f"/emails/{email_id}/cancel", data={"csrf_token": token})

    assert (by_header.status_code, by_form.status_code) == (201, 302)
    assert invariants.counts(conn) == {"cancelled": 1}


def test_a_patch_or_an_action_on_an_email_needs_the_token_too(alice: FlaskClient, conn: Conn) -> None:
    email_id = alice.post("/api/v1/emails", json=NEW, headers={"X-CSRF-Token": csrf_token(alice)}).get_json()["id"]

    answers = [
        alice.patch(f"/api/v1/emails/{email_id}", json={"subject": "x"}).status_code,
        alice.post(f"/api/v1/emails/{email_id}/cancel").status_code,
        alice.post(f"/emails/{email_id}/send-now").status_code,
    ]

    assert answers == [403, 403, 403]
    assert conn.execute("SELECT subject, status FROM emails").fetchone() == {"subject": "Hi", "status": "scheduled"}


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "Hello\r\nBcc: everyone@example.com"},
        {"subject": "Hello\nX-Injected: 1"},
        {"to": ["bob@example.com\r\nBcc: everyone@example.com"]},
        {"cc": ["carol@example.com\nbcc: x@example.com"]},
    ],
)
def test_header_injection_is_422(alice: FlaskClient, conn: Conn, change: dict[str, Any]) -> None:
    response = alice.post("/api/v1/emails", json=NEW | change, headers={"X-CSRF-Token": csrf_token(alice)})

    assert response.status_code == 422
    assert "line break" in response.get_json()["error"]["message"]
    assert invariants.counts(conn) == {}


def test_markup_in_subject_and_body_is_rendered_as_text(alice: FlaskClient) -> None:
    body = NEW | {"subject": XSS, "body_text": XSS, "body_html": f"<p>Hi</p>{XSS}<script>alert(2)</script>"}
    email_id = alice.post("/api/v1/emails", json=body, headers={"X-CSRF-Token": csrf_token(alice)}).get_json()["id"]

    listing = alice.get("/?view=all").get_data(as_text=True)
    detail = alice.get(f"/emails/{email_id}").get_data(as_text=True)

    for page in (listing, detail):
        assert XSS not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script>alert(2)" not in detail
    assert '<iframe class="html-body" sandbox=""' in detail


def test_pages_forbid_inline_scripts_framing_and_sniffing(alice: FlaskClient) -> None:
    headers = alice.get("/").headers

    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def test_a_bearer_token_request_needs_no_csrf_token(client: FlaskClient, conn: Conn) -> None:
    from tasks import emails, tokens

    user = emails.ensure_user(conn, email="alice@example.com")
    secret = tokens.create(conn, user)[1]

    response = client.post("/api/v1/emails", json=NEW, headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 201


def test_a_request_with_other_credentials_is_not_signed_in_by_its_cookie(alice: FlaskClient, conn: Conn) -> None:
    """Credentials in the request replace the cookie (so skipping CSRF for them is safe)."""
    for header in ("Basic YWxpY2U6cHc=", "Bearer not-a-personal-token", "Bearer rdbx_revoked"):
        response = alice.post("/api/v1/emails", json=NEW, headers={"Authorization": header})

        assert response.status_code == 401, header
    assert alice.get("/api/v1/emails", headers={"Authorization": "Basic eA=="}).status_code == 401
    assert invariants.counts(conn) == {}
