"""The dashboard's pages: lists with counts, search, pagination, batches grouped, detail and actions."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.core import db
from tasks.core.db import Conn
from tasks.domain import batch_plan, batches, emails, models, orgs, tokens
from tasks.domain.models import User
from tests.support import flow, procs
from tests.support.web import csrf_token


@pytest.fixture
def alice(client: FlaskClient, sign_in: Callable[..., Any]) -> User:
    return sign_in(client, "alice@example.com", name="Alice")


def _ids(page: str) -> list[str]:
    return re.findall(r'<li class="row" data-email-id="([0-9a-f-]+)"', page)


def _schedule(conn: Conn, owner: User, settings: Any, make_draft: Callable[..., Any], **fields: Any) -> Any:
    return emails.schedule(conn, owner=owner, draft=make_draft(**fields), settings=settings)[0]


def test_the_lists_show_counts_per_status_and_badges(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    kept = _schedule(conn, alice, settings, make_draft, subject="Kept")
    dropped = _schedule(conn, alice, settings, make_draft, subject="Dropped")
    emails.cancel(conn, orgs.personal_scope(conn, alice.id), dropped.id)

    scheduled = client.get("/").get_data(as_text=True)
    cancelled = client.get("/?view=cancelled").get_data(as_text=True)

    assert _ids(scheduled) == [str(kept.id)]
    assert _ids(cancelled) == [str(dropped.id)]
    assert 'data-count-for="scheduled">1<' in scheduled and 'data-count-for="cancelled">1<' in scheduled
    assert 'data-count-for="all">2<' in scheduled
    assert 'class="badge badge-cancelled"' in cancelled and "⊘" in cancelled


def test_search_matches_recipient_or_subject(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    invoice = _schedule(conn, alice, settings, make_draft, subject="Invoice", to=["ann@example.com"])
    lunch = _schedule(conn, alice, settings, make_draft, subject="Lunch", to=["zed@example.org"])

    assert _ids(client.get("/?view=all&q=invoice").get_data(as_text=True)) == [str(invoice.id)]
    assert _ids(client.get("/?view=all&q=example.org").get_data(as_text=True)) == [str(lunch.id)]
    assert "No email matches" in client.get("/?view=all&q=nothing").get_data(as_text=True)


def test_the_list_is_newest_first_and_paginated(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    created = [str(_schedule(conn, alice, settings, make_draft, subject=f"n{i}").id) for i in range(30)]

    first = client.get("/").get_data(as_text=True)
    older = re.search(r'href="(/\?view=scheduled&amp;cursor=[^"]+)"', first)
    assert older is not None
    second = client.get(older[1].replace("&amp;", "&")).get_data(as_text=True)

    assert _ids(first) + _ids(second) == list(reversed(created))
    assert "Older »" not in second


def test_a_batch_is_one_row_with_its_progress(client: FlaskClient, alice: User, conn: Conn, settings: Any) -> None:
    plan = batch_plan.prepare(
        settings=settings,
        addresses="a@example.com\nb@example.com\nc@example.com",
        subject="Hi",
        body_text="B",
        name="Spring outreach",
        min_delay_seconds=60,
    )
    batch, _ = batches.create(conn, owner=alice, plan=plan, settings=settings)
    conn.execute("UPDATE emails SET status = 'sending' WHERE to_addrs = '{a@example.com}'")
    conn.execute("UPDATE emails SET status = 'sent', sent_at = now() WHERE to_addrs = '{a@example.com}'")

    page = client.get("/").get_data(as_text=True)
    detail = client.get(f"/batches/{batch.id}").get_data(as_text=True)

    assert page.count(f'data-batch-id="{batch.id}"') == 1 and _ids(page) == []
    assert "Spring outreach" in page and "1 of 3 sent" in page
    assert "Cancel the rest (2)" in detail and len(_ids(detail)) == 3


def test_the_batch_page_cancels_the_rest(client: FlaskClient, alice: User, conn: Conn, settings: Any) -> None:
    plan = batch_plan.prepare(settings=settings, addresses="a@example.com, b@example.com", subject="S", body_text="B")
    batch, _ = batches.create(conn, owner=alice, plan=plan, settings=settings)

    response = client.post(
        f"/batches/{batch.id}/cancel", data={"csrf_token": csrf_token(client)}, follow_redirects=True
    )

    assert "Cancelled 2 email(s)" in response.get_data(as_text=True)
    assert {r["status"] for r in conn.execute("SELECT status FROM emails")} == {"cancelled"}


def test_the_detail_says_why_it_has_not_gone_and_offers_what_is_possible(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    email = _schedule(
        conn, alice, settings, make_draft, send_at=dt.datetime(2030, 1, 7, 8, 0, tzinfo=dt.UTC), send_tz="Europe/Paris"
    )

    page = client.get(f"/emails/{email.id}").get_data(as_text=True)

    assert "Waiting for its time: it goes out at Mon 7 Jan 2030 09:00:00 CET" in page
    for action in ("send-now", "reschedule", "cancel"):
        assert f'action="/emails/{email.id}/{action}"' in page
    assert "/resend" not in page
    assert '<li class="ev ev-scheduled">' in page


def test_the_detail_shows_the_providers_message_id_with_the_email_and_on_its_timeline(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    email = _schedule(conn, alice, settings, make_draft, send_at=dt.datetime.now(dt.UTC))
    flow.attempt(conn, email, "sent", transport="ses", provider_message_id="0102018f-ses-message-id")

    page = client.get(f"/emails/{email.id}").get_data(as_text=True)

    assert "<dt>Provider's message id</dt><dd><code>0102018f-ses-message-id</code></dd>" in page
    assert '<span class="kv">provider_message_id: 0102018f-ses-message-id</span>' in page


def test_a_failed_email_offers_only_resend_and_says_why(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    email = _schedule(conn, alice, settings, make_draft)
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", (email.id,))
    conn.execute(
        "UPDATE emails SET status = 'failed', last_error = '550 5.1.1 no such user' WHERE id = %s", (email.id,)
    )

    page = client.get(f"/emails/{email.id}").get_data(as_text=True)
    response = client.post(f"/emails/{email.id}/resend", data={"csrf_token": csrf_token(client)})

    assert "Failed: 550 5.1.1 no such user" in page
    assert f'action="/emails/{email.id}/resend"' in page and "/cancel" not in page
    assert response.status_code == 302
    assert emails.get(conn, models.OPERATOR, email.id).status == "scheduled"


def test_reschedule_from_the_page_reads_the_time_in_the_browsers_zone(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    email = _schedule(conn, alice, settings, make_draft)

    client.post(
        f"/emails/{email.id}/reschedule",
        data={"csrf_token": csrf_token(client), "local": "2031-07-01T09:30", "time_zone": "America/New_York"},
    )

    row = emails.get(conn, models.OPERATOR, email.id)
    assert row.send_at == dt.datetime(2031, 7, 1, 13, 30, tzinfo=dt.UTC)
    assert row.send_tz == "America/New_York"


def test_a_page_scripts_late_answer_does_not_undo_the_flash_a_post_just_set(
    app: Any, client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    """The page's snapshot left with the cookie of before the POST; answered after the POST, it must
    not write that cookie back (the browser keeps the last one it is sent), or the flash is lost."""
    email = _schedule(conn, alice, settings, make_draft)
    before = client.get_cookie("reachdbox_session").value
    token = csrf_token(client, f"/emails/{email.id}")
    late = app.test_client()
    late.set_cookie("reachdbox_session", before)

    posted = client.post(
        f"/emails/{email.id}/reschedule",
        data={"csrf_token": token, "time_zone": "Mars/Olympus", "local": "2031-01-01T09:00"},
    )
    snapshot = late.get(f"/live/snapshot?ids={email.id}", headers={"Sec-Fetch-Mode": "cors"})
    for cookie in snapshot.headers.getlist("Set-Cookie"):  # what the browser would then keep
        name, _, value = cookie.split(";")[0].partition("=")
        client.set_cookie(name, value)

    assert (posted.status_code, snapshot.status_code) == (302, 200)
    shown = client.get(posted.headers["Location"]).get_data(as_text=True)
    assert '<p class="flash error" role="status">Must be an IANA time zone' in shown
    assert snapshot.headers.getlist("Set-Cookie") == []
    # A page the browser navigates to still sends the cookie back: the 14 days start again.
    assert "reachdbox_session=" in late.get("/", headers={"Sec-Fetch-Mode": "navigate"}).headers["Set-Cookie"]


def test_an_action_that_is_too_late_is_explained_not_an_error_page(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    email = _schedule(conn, alice, settings, make_draft)
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", (email.id,))

    response = client.post(f"/emails/{email.id}/cancel", data={"csrf_token": csrf_token(client)}, follow_redirects=True)

    assert response.status_code == 200
    assert "Cannot cancel: the email is already sending" in response.get_data(as_text=True)


def test_tokens_are_created_once_shown_and_revoked_in_the_dashboard(
    client: FlaskClient, alice: User, conn: Conn
) -> None:
    created = client.post("/tokens/", data={"csrf_token": csrf_token(client, "/tokens/"), "name": "deploy"})
    secret = re.search(r'<code id="new-token">([^<]+)</code>', created.get_data(as_text=True))
    assert secret is not None
    assert client.get("/api/v1/emails", headers={"Authorization": f"Bearer {secret[1]}"}).status_code == 200
    listing = client.get("/tokens/").get_data(as_text=True)
    assert secret[1] not in listing and "deploy" in listing
    token_id = conn.execute("SELECT id FROM api_tokens").fetchone()["id"]

    client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(client, "/tokens/")})

    assert tokens.authenticate(conn, secret[1]) is None


def test_the_cli_creates_a_token_that_the_api_accepts(env: dict[str, str], client: FlaskClient, conn: Conn) -> None:
    result = procs.run_cli(env, "token", "create", "--user", "ops@example.com", "--name", "cron")

    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert client.get("/api/v1/emails", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert procs.run_cli(env, "token", "create", "--user", "not an address").returncode == 2
    listed = procs.run_cli(env, "token", "list", "--user", "ops@example.com")
    assert '"name": "cron"' in listed.stdout and secret not in listed.stdout


def test_the_dev_mailbox_shows_captured_mail_newest_first(
    web_env: dict[str, str], sign_in: Callable[..., Any], conn: Conn
) -> None:
    """Operators only (everyone's mail is there): tests/security/test_routes.py checks the 404."""
    from tests.support.web import make_app

    app = make_app(web_env | {"OPERATOR_EMAILS": "ops@example.com"})
    client = app.test_client()
    sign_in(client, "ops@example.com")
    for n in (1, 2):
        raw = (
            f"From: a@example.com\r\nTo: b@example.com\r\nSubject: Mail {n}\r\nMessage-ID: <m{n}@x>\r\n"
            f"Content-Type: text/plain\r\n\r\nBody number {n} <b>bold</b>\r\n"
        ).encode()
        db.one(
            conn,
            "insert_devmail",
            mail_from="a@example.com",
            rcpt_tos=["b@example.com"],
            message_id=f"<m{n}@x>",
            subject=f"Mail {n}",
            raw=raw,
        )

    try:
        page = client.get("/devmail/").get_data(as_text=True)
    finally:
        app.extensions["reachdbox"].close()

    assert page.index("Mail 2") < page.index("Mail 1")
    assert "Body number 1 &lt;b&gt;bold&lt;/b&gt;" in page and "&lt;m1@x&gt;" in page


def test_there_is_no_dev_mailbox_in_production(env: dict[str, str], oauth_provider: Any) -> None:
    from tests.support.web import make_app

    production = (
        env
        | oauth_provider.env()
        | {
            "APP_ENV": "production",
            "SECRET_KEY": "k" * 40,
            "ALLOWED_EMAIL_DOMAINS": "example.com",
            "GOOGLE_OAUTH_AUTHORIZE_URL": "https://accounts.example/authorize",
            "GOOGLE_OAUTH_TOKEN_URL": "https://accounts.example/token",
            "GOOGLE_OAUTH_USERINFO_URL": "https://accounts.example/userinfo",
        }
    )
    app = make_app(production)
    try:
        assert "devmail.index" not in app.view_functions
        assert "Dev login" not in app.test_client().get("/auth/login").get_data(as_text=True)
    finally:
        app.extensions["reachdbox"].close()


def test_an_email_logged_offline_has_its_own_tab_badge_explanation_and_can_be_cancelled(
    client: FlaskClient, alice: User, conn: Conn, settings: Any, make_draft: Callable[..., Any]
) -> None:
    """Offline is a visible outcome of its own, not 'sent', and the user can still cancel it."""
    email = _schedule(conn, alice, settings, make_draft, subject="Written down", send_at=dt.datetime.now(dt.UTC))
    flow.attempt(conn, email, "offline", transport="offline")

    listed = client.get("/?view=offline").get_data(as_text=True)
    page = client.get(f"/emails/{email.id}").get_data(as_text=True)
    response = client.post(f"/emails/{email.id}/cancel", data={"csrf_token": csrf_token(client)})

    assert _ids(listed) == [str(email.id)]
    assert 'class="badge badge-offline"' in listed and 'data-count-for="offline">1<' in listed
    assert "Logged offline" in page and "replay-offline" in page
    assert response.status_code == 302
    assert emails.get(conn, models.OPERATOR, email.id).status == "cancelled"
