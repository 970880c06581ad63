"""Sign-in through a real (local) OAuth provider, sessions and sign-out."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tasks import config, db, errors
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import csrf_token, make_app, start_oauth

Conn = Any


def test_the_full_sign_in_creates_the_user_from_the_verified_email_and_name(
    client: FlaskClient, oauth_provider: OAuthProvider, conn: Conn
) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="Ada@Example.com", name="Ada Lovelace", sub="g-42"))

    response = client.get(callback)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    row = db.one(conn, "user_by_email", email="ada@example.com")
    assert (row["email"], row["name"], row["google_sub"]) == ("Ada@Example.com", "Ada Lovelace", "g-42")
    assert client.get("/").status_code == 200


def test_signing_in_again_updates_the_name(
    client: FlaskClient, oauth_provider: OAuthProvider, conn: Conn, sign_in: Callable[..., Any]
) -> None:
    sign_in(client, "ada@example.com", name="Ada")
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})

    user = sign_in(client, "ada@example.com", name="Ada King")

    assert user.name == "Ada King"


def test_a_tampered_state_is_refused(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"))
    parts = urllib.parse.urlsplit(callback)
    query = dict(urllib.parse.parse_qsl(parts.query)) | {"state": "forged-state"}

    response = client.get(f"{parts.path}?{urllib.parse.urlencode(query)}")

    assert response.status_code == 400
    assert "Sign-in failed" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still signed out


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


def test_a_user_outside_the_allowed_domains_sees_a_clear_refusal(
    web_env: dict[str, str], oauth_provider: OAuthProvider, conn: Conn
) -> None:
    app = make_app(web_env | {"ALLOWED_EMAIL_DOMAINS": "example.com", "ALLOWED_EMAILS": "guest@partner.org"})
    try:
        client = app.test_client()
        callback = start_oauth(client, oauth_provider, Account(email="mallory@evil.test"))

        response = client.get(callback)

        assert response.status_code == 403
        assert "mallory@evil.test is not allowed" in response.get_data(as_text=True)
        assert db.one(conn, "user_by_email", email="mallory@evil.test") is None
        assert client.get("/").status_code == 302
        guest = app.test_client()
        assert guest.get(start_oauth(guest, oauth_provider, Account(email="guest@partner.org"))).status_code == 302
    finally:
        app.extensions["reachdbox"].close()


def test_an_unverified_google_email_is_refused(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com", email_verified=False))

    response = client.get(callback)

    assert response.status_code == 403
    assert "has not verified" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "target", ["https://evil.test/phish", "//evil.test/x", "/\\evil.test", "javascript:alert(1)", "http:/evil.test"]
)
def test_an_off_site_next_is_ignored(client: FlaskClient, oauth_provider: OAuthProvider, target: str) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"), next_path=target)

    response = client.get(callback)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_a_same_site_next_is_followed(client: FlaskClient, oauth_provider: OAuthProvider) -> None:
    callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"), next_path="/tokens/?x=1")

    assert client.get(callback).headers["Location"] == "/tokens/?x=1"


def test_a_page_sends_visitors_to_sign_in_and_back(client: FlaskClient) -> None:
    response = client.get("/batches/new")

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=/batches/new"


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


def test_sign_out_needs_the_csrf_token(client: FlaskClient, sign_in: Callable[..., Any]) -> None:
    sign_in(client, "ada@example.com")

    assert client.post("/auth/logout").status_code == 403
    assert client.get("/").status_code == 200


def test_the_dev_login_signs_in_the_local_user_without_google(env: dict[str, str], conn: Conn) -> None:
    app = make_app(env | {"APP_ENV": "development", "DEV_USER_EMAIL": "me@localhost"})
    try:
        client = app.test_client()
        page = client.get("/auth/login").get_data(as_text=True)
        assert "Dev login as me@localhost" in page and "Development mode" in page

        response = client.post("/auth/dev", data={"csrf_token": csrf_token(client, "/auth/login")})

        assert response.status_code == 302
        assert client.get("/").status_code == 200
        assert db.one(conn, "user_by_email", email="me@localhost") is not None
    finally:
        app.extensions["reachdbox"].close()


def test_there_is_no_dev_login_when_google_is_configured(client: FlaskClient) -> None:
    assert "Dev login" not in client.get("/auth/login").get_data(as_text=True)
    assert client.post("/auth/dev", data={"csrf_token": csrf_token(client, "/auth/login")}).status_code == 404


def test_production_without_a_google_client_refuses_to_start(env: dict[str, str]) -> None:
    production = env | {"APP_ENV": "production", "SECRET_KEY": "s" * 40, "ALLOWED_EMAIL_DOMAINS": "example.com"}

    with pytest.raises(errors.ConfigError) as info:
        make_app(production)

    assert info.value.field == "GOOGLE_OAUTH_CLIENT_ID"
    with pytest.raises(errors.ConfigError):
        config.load(production | {"GOOGLE_OAUTH_CLIENT_ID": "id"})  # the secret is missing
    config.load(production)  # a worker or the CLI would start: only the web signs people in


def test_the_provider_being_down_is_a_clear_page(web_env: dict[str, str], oauth_provider: OAuthProvider) -> None:
    app = make_app(web_env | {"GOOGLE_OAUTH_TOKEN_URL": "http://127.0.0.1:9/token"})
    try:
        client = app.test_client()
        callback = start_oauth(client, oauth_provider, Account(email="ada@example.com"))

        response = client.get(callback)

        assert response.status_code == 502
        assert "could not be reached" in response.get_data(as_text=True)
    finally:
        app.extensions["reachdbox"].close()


def test_the_provider_is_real_http(oauth_provider: OAuthProvider) -> None:
    """The stand-in refuses a token request with a wrong client secret, like Google."""
    response = requests.post(
        f"{oauth_provider.url}/token",
        data={"grant_type": "authorization_code", "code": "x"},
        auth=("a", "b"),
        timeout=5,
    )

    assert response.status_code == 401
