"""Sign-in abuse: a tampered OAuth state, a reused code, an off-site ``next``,
the session cookie's flags, fixation, and replaying a cookie after sign-out."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import csrf_token, start_oauth


def test_a_tampered_state_is_refused(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"))
    parts = urllib.parse.urlsplit(callback)
    query = dict(urllib.parse.parse_qsl(parts.query)) | {"state": "forged-state"}

    response = client.get(f"{parts.path}?{urllib.parse.urlencode(query)}")

    assert response.status_code == 400
    assert "Sign-in failed" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still signed out


@pytest.mark.parametrize("drop", ["state", "code"])
def test_a_callback_without_its_state_or_code_is_refused(
    client: FlaskClient, oauth_provider: OAuthProvider, drop: str
) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"))
    parts = urllib.parse.urlsplit(callback)
    query = {k: v for k, v in urllib.parse.parse_qsl(parts.query) if k != drop}

    response = client.get(f"{parts.path}?{urllib.parse.urlencode(query)}")

    assert response.status_code in (400, 403)
    assert client.get("/").status_code == 302


def test_a_state_issued_to_another_browser_is_refused(app: Any, oauth_provider: OAuthProvider) -> None:
    """A login CSRF: the attacker's own callback URL (code and state) opened in the victim's browser."""
    attacker = app.test_client()
    callback = start_oauth(attacker, oauth_provider, Account(email="mallory@example.com"))
    victim = app.test_client()
    start_oauth(victim, oauth_provider, Account(email="ada@example.com"))  # the victim has a sign-in of their own

    response = victim.get(callback)

    assert response.status_code == 400
    assert victim.get("/").status_code == 302


def test_the_same_callback_opened_twice_signs_in_once(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    """The state is spent by the first use, so the replay never even reaches the provider."""
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"))
    assert client.get(callback).status_code == 302
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    exchanges = oauth_provider.token_requests

    replayed = client.get(callback)

    assert replayed.headers.get("Location") in ("/auth/google", None)  # back to the start, or refused
    assert client.get("/").status_code == 302
    assert oauth_provider.token_requests == exchanges


def test_a_reused_code_is_refused(app: Any, oauth_provider: OAuthProvider) -> None:
    """A code already exchanged is refused by the provider, even with a state valid for this browser."""
    first = app.test_client()
    used = dict(
        urllib.parse.parse_qsl(
            urllib.parse.urlsplit(start_oauth(first, oauth_provider, Account(email="ada@example.com"))).query
        )
    )
    assert first.get(f"/auth/google/authorized?{urllib.parse.urlencode(used)}").status_code == 302
    # Another browser starts its own sign-in, then presents the stolen code with its own state.
    second = app.test_client()
    own = dict(
        urllib.parse.parse_qsl(
            urllib.parse.urlsplit(start_oauth(second, oauth_provider, Account(email="x@example.com"))).query
        )
    )

    response = second.get(
        f"/auth/google/authorized?{urllib.parse.urlencode({'code': used['code'], 'state': own['state']})}"
    )

    assert response.status_code == 400
    assert "invalid_grant" in response.get_data(as_text=True)
    assert second.get("/").status_code == 302


OFF_SITE = [
    "https://evil.test/phish",
    "//evil.test/x",
    "/\\evil.test",
    "\\\\evil.test",
    "/\t/evil.test",
    " //evil.test",
    "javascript:alert(1)",
    "http:/evil.test",
    "https:evil.test",
    "/\r\nSet-Cookie: x=1",
]


def test_an_off_site_next_is_ignored(app: Any, oauth_provider: OAuthProvider) -> None:
    """Kept through the OAuth round trip, the target is checked when the user comes back."""
    for target in OFF_SITE:
        client = app.test_client()
        callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"), next_path=target)

        response = client.get(callback)

        assert (response.status_code, response.headers["Location"]) == (302, "/"), target


def test_an_off_site_next_is_ignored_when_already_signed_in(client: FlaskClient, sign_in: Callable[..., Any]) -> None:
    sign_in(client, "ada@example.com")

    for target in OFF_SITE:
        response = client.get("/auth/login", query_string={"next": target})

        assert (response.status_code, response.headers["Location"]) == (302, "/"), target


def test_a_same_site_next_is_followed(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"), next_path="/tokens/?x=1")

    assert client.get(callback).headers["Location"] == "/tokens/?x=1"


def test_the_session_cookie_is_httponly_and_samesite_lax(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"))

    cookie = client.get(callback).headers["Set-Cookie"]

    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http in this test


def test_the_session_cookie_is_secure_over_https(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"))

    cookie = client.get(callback, base_url="https://localhost").headers.get("Set-Cookie", "")

    assert "; Secure" in cookie


def test_sign_in_starts_a_new_session(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    """Nothing planted in the cookie before sign-in survives it (no session fixation)."""
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
    before = csrf_token(client, "/auth/login")
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"))

    client.get(callback)

    with client.session_transaction() as sess:
        assert "planted" not in sess
    assert csrf_token(client) != before


def test_signing_out_makes_an_old_cookie_useless(client: FlaskClient, app: Any, sign_in: Callable[..., Any]) -> None:
    sign_in(client, "ada@example.com")
    stolen = client.get_cookie("reachdbox_session")
    assert stolen is not None

    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    replay = app.test_client()
    replay.set_cookie("reachdbox_session", stolen.value)

    assert replay.get("/").status_code == 302
    assert replay.get("/api/v1/emails").status_code == 401


def test_in_production_the_session_cookie_is_secure_even_behind_plain_http(
    env: dict[str, str], oauth_provider: OAuthProvider
) -> None:
    """Behind a TLS-terminating proxy the app may see http: the cookie must still be Secure."""
    from flask import session

    from tests.support.web import make_app

    production = env | {
        "APP_ENV": "production",
        "SECRET_KEY": "k" * 40,
        "ALLOWED_EMAIL_DOMAINS": "example.com",
        "GOOGLE_OAUTH_CLIENT_ID": "id",
        "GOOGLE_OAUTH_CLIENT_SECRET": "secret",
    }
    app = make_app(production)
    try:

        @app.get("/set-session")
        def set_session() -> str:
            session["probe"] = 1
            return "ok"

        cookie = app.test_client().get("/set-session", base_url="http://localhost").headers["Set-Cookie"]

        assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        app.extensions["reachdbox"].close()
