"""Every route of the app, enumerated from its url_map: sign-in required, CSRF on every
state-changing one, and another user's ids answered 404 everywhere.

A new route is covered automatically, and this file fails until a route that is
neither reachable by these tests nor listed below as public has been thought about.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from tests.security.conftest import BOBS_SECRET, Owned, snapshot
from tests.support.web import csrf_token, make_app
from webapp import ext

Conn = Any
SAFE = {"GET", "HEAD", "OPTIONS"}
_ARG = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

#: Routes anyone may call signed out, and why that is safe.
PUBLIC = {
    "static": "stylesheet, scripts and icon",
    "health.healthz": "liveness: says only 'ok'",
    "ops.readyz": "readiness: says only which dependency is down",
    "ops.prometheus_metrics": "aggregate counts; behind OPS_TOKEN when it is set",
    "ops.status": "aggregate counts; behind OPS_TOKEN when it is set",
    "ops.alerts_now": "the operators' alerts (what is down, since when); behind OPS_TOKEN when it is set",
    "api.openapi": "the API's description",
    "apidocs.reference": "the API's description drawn as a page; trying it needs a session or a token",
    "auth.login": "the sign-in page",
    "auth.dev_login": "the dev login: 404 when Google is configured, and CSRF-checked like every POST",
    "google.login": "starts the OAuth flow",
    "google.authorized": "the OAuth callback: state-checked (test_oauth.py)",
    "feedback.sendgrid": "providers' events: 404 until configured, then refused without SendGrid's signature",
    "feedback.ses": "providers' events: 404 until configured, then refused without AWS's signature and topic",
    "feedback.webhook": "relays' events: 404 until configured, then refused without the Standard Webhooks signature",
    "feedback.unsubscribe_page": "an unsubscribe link's confirmation page: 404 unless the link is signed",
    "feedback.unsubscribe": "an unsubscribe link's one-click POST (RFC 8058): 404 unless the link is signed",
}
#: Routes authenticated by a signature, not by the cookie: no CSRF token (webapp/security.py's CSRF_EXEMPT).
CSRF_EXEMPT = {"feedback.sendgrid", "feedback.ses", "feedback.webhook", "feedback.unsubscribe"}
#: Routes whose argument is an address, not an id: removing one that is not on the caller's own
#: list changes nothing and says so (200, removed: false), whosever list it is on.
ADDRESSES = {"api.remove_suppression"}
#: Routes that take an id in the query string instead of the path: what Alice adds to reach Bob's.
QUERY_IDS = {
    "api.list_emails": "?batch_id={batch_id}",
    "live.stream": "?email_id={email_id}",
}
#: Routes that hold the connection open (Server-Sent Events): only their refusals are checked here.
STREAMS = {"live.stream"}
#: Routes whose id is a signed link given to one address (an invitation): someone else holding
#: another organization's link is told it is not theirs (403), and nothing changes.
LINKS = {"orgs.invitation", "orgs.accept"}
#: Routes only operators may see; anyone else gets 404, as if they did not exist.
OPERATORS_ONLY = {
    "operators.index",
    "charts.operators",
    "devmail.index",
    "devmail.message",
    "devmail.html_body",
    "devmail.raw",
    "devmail.attachment",
    "devmail.check_links",
    "devmail.delete",
}


def routes(app: Flask) -> Iterator[tuple[Rule, str]]:
    """Yield every (rule, method) the app serves, HEAD and OPTIONS aside."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule, method


def url(rule: Rule, ids: dict[str, str]) -> str:
    """Fill a rule's arguments with ``ids`` (and the query ids it takes)."""
    path = _ARG.sub(lambda m: ids[m[1]], rule.rule)
    return path + QUERY_IDS.get(rule.endpoint, "").format(**ids)


def _call(client: FlaskClient, method: str, target: str, **kwargs: Any) -> Any:
    if method == "PATCH":
        kwargs.setdefault("json", {"subject": "changed"})
    elif method == "POST" and target.startswith("/api/"):
        kwargs.setdefault("json", {})
    elif method == "POST":
        kwargs.setdefault("data", {"send_at": "2031-01-01T00:00:00Z", "name": "changed"})
    return client.open(target, method=method, buffered=True, **kwargs)


def test_every_route_is_either_public_or_refuses_a_visitor_who_is_not_signed_in(
    app: Flask, client: FlaskClient, conn: Conn, alices: Owned
) -> None:
    """Alice's ids are real, so a route that forgot its sign-in check would act on them."""
    visitor = app.test_client()
    before = snapshot(conn)
    answers = {}
    for rule, method in routes(app):
        if rule.endpoint in PUBLIC:
            continue
        token = csrf_token(visitor, "/auth/login")  # afresh: signing out clears the session
        headers = {} if method in SAFE else {"X-CSRF-Token": token}
        data = {"csrf_token": token} if method == "POST" and not rule.rule.startswith("/api/") else None
        response = _call(visitor, method, url(rule, alices.ids()), headers=headers, data=data)
        answers[f"{method} {rule.rule}"] = response.status_code, response.headers.get("Location", "")

    for route, (status, location) in answers.items():
        assert status == 401 or (status == 302 and location.startswith("/auth/login")), (route, status)
    assert snapshot(conn) == before


@pytest.mark.parametrize("forged", [None, "forged-token"])
def test_every_state_changing_route_refuses_a_session_request_without_its_csrf_token(
    app: Flask, alice_client: FlaskClient, conn: Conn, alices: Owned, forged: str | None
) -> None:
    """Alice is signed in and the ids are her own: only the missing token stops the change."""
    before = snapshot(conn)
    answers = {}
    for rule, method in routes(app):
        if method in SAFE or rule.endpoint in CSRF_EXEMPT:
            continue
        headers = {"X-CSRF-Token": forged} if forged else {}
        response = _call(alice_client, method, url(rule, alices.ids()), headers=headers)
        answers[f"{method} {rule.rule}"] = response.status_code

    assert answers and set(answers.values()) == {403}, answers
    assert snapshot(conn) == before
    assert alice_client.get("/").status_code == 200  # still signed in


def test_the_csrf_token_in_the_header_or_the_form_lets_a_change_through(
    alice_client: FlaskClient, conn: Conn, alices: Owned
) -> None:
    """The control for the test above: the same requests with the token do change things."""
    token = csrf_token(alice_client)

    by_form = alice_client.post(f"/emails/{alices.email}/cancel", data={"csrf_token": token})
    by_header = alice_client.post(f"/api/v1/batches/{alices.batch}/cancel", headers={"X-CSRF-Token": token})

    assert (by_form.status_code, by_header.status_code) == (302, 200)
    assert {r["status"] for r in conn.execute("SELECT status FROM emails").fetchall()} == {"cancelled"}


def test_a_bearer_token_request_needs_no_csrf_token(app: Flask, conn: Conn, alices: Owned) -> None:
    new = {"to": ["bob@example.com"], "subject": "Hi", "body_text": "B", "send_now": True}

    response = app.test_client().post("/api/v1/emails", json=new, headers={"Authorization": f"Bearer {alices.secret}"})

    assert response.status_code == 201


def _answer(client: FlaskClient, method: str, target: str, headers: dict[str, str]) -> tuple[int, str]:
    """Call a route (a stream only until its status is known); return its status and where it redirects."""
    if target.split("?")[0] == "/live/stream":
        response = client.open(target, method=method, headers=headers, buffered=False)
        response.close()
    else:
        response = _call(client, method, target, headers=headers)
    return response.status_code, urllib.parse.urlsplit(response.headers.get("Location", "")).path


@pytest.fixture
def operators_app(web_env: dict[str, str]) -> Iterator[Flask]:
    """The app with Alice as an operator, so a token that opened pages would open the operators' ones too."""
    application = make_app(web_env | {"OPERATOR_EMAILS": "alice@example.com"})
    yield application
    application.extensions[ext.KEY].close()


def test_a_token_is_no_credential_outside_the_api(operators_app: Flask, conn: Conn, alices: Owned) -> None:
    """A leaked token must not mint a token that outlives its revocation, revoke the others, sign the
    owner out everywhere or open any page: every route outside /api/v1 answers it as it answers a
    visitor who is not signed in, and nothing changes."""
    bearer = {"Authorization": f"Bearer {alices.secret}"}
    before = snapshot(conn)
    with_token, anonymous = {}, {}
    for rule, method in routes(operators_app):
        if rule.endpoint.startswith("api.") or rule.endpoint == "static":
            continue
        target = url(rule, alices.ids())
        with_token[f"{method} {rule.rule}"] = _answer(operators_app.test_client(), method, target, bearer)
        anonymous[f"{method} {rule.rule}"] = _answer(operators_app.test_client(), method, target, {})

    assert with_token == anonymous
    for route in ("POST /tokens/", "POST /tokens/<int:token_id>/revoke", "POST /auth/logout"):
        assert with_token[route][0] == 403, route  # the CSRF check: a token is no excuse here
    for route in ("GET /", "GET /devmail/", "GET /operators", "GET /tokens/"):
        assert with_token[route] == (302, "/auth/login"), route
    assert with_token["GET /live/stream"][0] == with_token["GET /live/snapshot"][0] == 401
    assert snapshot(conn) == before


def test_on_a_page_the_cookie_alone_counts_and_needs_its_csrf_token(
    alice_client: FlaskClient, conn: Conn, alices: Owned
) -> None:
    """A token beside the cookie neither replaces it nor excuses the missing CSRF token."""
    bearer = {"Authorization": f"Bearer {alices.secret}"}
    before = snapshot(conn)

    answers = [
        alice_client.post("/auth/logout", headers=bearer).status_code,
        alice_client.post("/tokens/", data={"name": "minted"}, headers=bearer).status_code,
        alice_client.post(f"/tokens/{alices.token}/revoke", headers=bearer).status_code,
    ]

    assert answers == [403, 403, 403]
    assert snapshot(conn) == before
    assert alice_client.get("/", headers=bearer).status_code == 200  # the cookie still signs her in


def test_pages_forbid_inline_scripts_framing_and_sniffing(alice_client: FlaskClient) -> None:
    """The second line behind escaping (tests/security/test_markup_in_browser.py bypasses it)."""
    headers = alice_client.get("/").headers

    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def test_credentials_in_the_request_replace_the_cookie(alice_client: FlaskClient, conn: Conn, alices: Owned) -> None:
    """A request carrying an Authorization header needs no CSRF token, so it must never ride on the cookie."""
    before = snapshot(conn)
    new = {"to": ["bob@example.com"], "subject": "Hi", "body_text": "B", "send_now": True}
    for header in ("Basic YWxpY2U6cHc=", "Bearer not-a-personal-token", "Bearer rdbx_revoked", "Bearer "):
        response = alice_client.post("/api/v1/emails", json=new, headers={"Authorization": header})

        assert response.status_code == 401, header
    assert snapshot(conn) == before


def test_every_route_answers_404_for_another_users_ids_and_changes_nothing(
    app: Flask, alice_client: FlaskClient, conn: Conn, alices: Owned, bobs: Owned
) -> None:
    """Bob's rows are in his organization, Alice's session and token in hers: through the session (with a
    valid CSRF token) and, for the API, Alice's own bearer token, every id of his is unknown."""
    token = csrf_token(alice_client)
    bearer = {"Authorization": f"Bearer {alices.secret}"}
    before = snapshot(conn)
    answers = {}
    for rule, method in routes(app):
        if not (rule.arguments or rule.endpoint in QUERY_IDS) or rule.endpoint == "static":
            continue
        target = url(rule, bobs.ids())
        extra: dict[str, Any] = {} if method in SAFE else {"headers": {"X-CSRF-Token": token}}
        if method == "POST" and not target.startswith("/api/"):
            extra["data"] = {"csrf_token": token, "send_at": "2031-01-01T00:00:00Z"}
        status = _call(alice_client, method, target, **extra).status_code
        if rule.endpoint in LINKS:
            assert status == 403, (method, rule.rule)
            continue
        if rule.endpoint in ADDRESSES:
            assert status == 200, (method, rule.rule)  # and nothing removed: the snapshot below
            continue
        answers[f"session {method} {rule.rule}"] = status
        if target.startswith("/api/"):
            by_token = _call(app.test_client(), method, target, headers=bearer)
            answers[f"token {method} {rule.rule}"] = by_token.status_code

    assert len(answers) >= 16 and set(answers.values()) == {404}, answers
    assert snapshot(conn) == before


def test_no_page_or_answer_shows_another_users_data(
    app: Flask, alice_client: FlaskClient, alices: Owned, bobs: Owned
) -> None:
    """Every GET route, with Alice's own ids where it takes some: Bob's marker never appears."""
    bearer = {"Authorization": f"Bearer {alices.secret}"}
    seen = {}
    for rule, method in routes(app):
        if method != "GET" or rule.endpoint in STREAMS or rule.endpoint == "static":
            continue
        target = url(rule, alices.ids()).split("?")[0]
        if rule.endpoint == "live.snapshot":
            target += f"?ids={bobs.email},{alices.email}&batches={bobs.batch},{alices.batch}"
        for who, client, headers in (("session", alice_client, {}), ("token", app.test_client(), bearer)):
            if who == "token" and not target.startswith("/api/"):
                continue
            response = client.get(target, headers=headers)
            seen[f"{who} {target}"] = response.status_code
            assert BOBS_SECRET not in response.get_data(as_text=True), target
            assert bobs.email not in response.get_data(as_text=True), target
            if rule.endpoint in OPERATORS_ONLY:
                assert response.status_code == 404, target

    assert len(seen) >= 15, seen


def test_the_tables_above_name_only_routes_that_exist(app: Flask) -> None:
    """A route renamed or removed must leave these lists too, so they never cover nothing."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}

    assert set(PUBLIC) | set(QUERY_IDS) | STREAMS | OPERATORS_ONLY | LINKS <= endpoints
