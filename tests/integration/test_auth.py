"""Sign-in through a real (local) OAuth provider, sessions and sign-out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tasks.core import config, db, errors
from tasks.core.db import Conn
from tests.support.oauth_provider import Account, OAuthProvider
from tests.support.web import csrf_token, make_app, start_oauth


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


def test_a_page_sends_visitors_to_sign_in_and_back(client: FlaskClient) -> None:
    response = client.get("/batches/new")

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=/batches/new"


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
    with pytest.raises(errors.ConfigError) as half:
        make_app(production | {"GOOGLE_OAUTH_CLIENT_ID": "id"})  # the secret is missing
    assert half.value.field == "GOOGLE_OAUTH_CLIENT_SECRET"
    # A worker or the CLI would start: only the web signs people in.
    config.load(production | {"GOOGLE_OAUTH_CLIENT_ID": "id"})


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
