"""Oversize requests: a 50 MB body is 413 before the database is touched (on every route
that takes a body, with or without a length), and 10,000 recipients are 422, nothing stored."""

from __future__ import annotations

import io
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.security.conftest import Owned, snapshot
from tests.security.test_routes import SAFE, routes, url

Conn = Any
FIFTY_MB = b"x" * (50 * 1024 * 1024)


def borrowed(app: Flask) -> int:
    """Count the connections requests have taken from the web's pool (every query needs one)."""
    return app.extensions["reachdbox"].pool.get_stats().get("requests_num", 0)


def test_a_50_mb_body_is_413_on_every_route_before_the_database_is_touched(
    app: Flask, alice_client: FlaskClient, conn: Conn, alices: Owned
) -> None:
    """Signed in by cookie, and again by bearer token: neither is even looked up."""
    before, taken = snapshot(conn), borrowed(app)
    answers = {}
    for rule, method in routes(app):
        if method in SAFE:
            continue
        target = url(rule, alices.ids())
        for who, client, headers in (
            ("session", alice_client, {}),
            ("token", app.test_client(), {"Authorization": f"Bearer {alices.secret}"}),
        ):
            response = client.open(
                target, method=method, data=FIFTY_MB, headers=headers | {"Content-Type": "application/json"}
            )
            answers[f"{who} {method} {rule.rule}"] = response.status_code

    assert answers and set(answers.values()) == {413}, answers
    assert borrowed(app) == taken
    assert snapshot(conn) == before
    app.test_client().get("/api/v1/emails", headers={"Authorization": f"Bearer {alices.secret}"})
    assert borrowed(app) > taken  # the control: a normal request does borrow one


def test_a_50_mb_body_without_a_length_is_413_before_the_database_is_touched(
    app: Flask, conn: Conn, alices: Owned
) -> None:
    """Chunked transfer encoding: the size is known only by reading, and reading comes first."""
    before, taken = snapshot(conn), borrowed(app)

    response = app.test_client().post(
        "/api/v1/emails",
        input_stream=io.BytesIO(FIFTY_MB),
        headers={"Authorization": f"Bearer {alices.secret}", "Transfer-Encoding": "chunked"},
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn says of a chunked body
    )

    assert response.status_code == 413
    assert borrowed(app) == taken
    assert snapshot(conn) == before


def test_a_body_without_a_length_exactly_at_the_limit_goes_through(
    web_env: dict[str, str], conn: Conn, alices: Owned
) -> None:
    from tests.support.web import make_app

    body = b'{"to": ["a@example.com"], "subject": "S", "send_now": true, "body_text": "%s"}' % (b"B" * 2000)
    app = make_app(web_env | {"WEB_MAX_REQUEST_BYTES": str(len(body))})
    try:
        response = app.test_client().post(
            "/api/v1/emails",
            input_stream=io.BytesIO(body),
            headers={"Authorization": f"Bearer {alices.secret}", "Transfer-Encoding": "chunked"},
            content_type="application/json",
            environ_overrides={"wsgi.input_terminated": True},
        )

        assert response.status_code == 201, response.get_json()
    finally:
        app.extensions["reachdbox"].close()


def test_10000_recipients_are_422_and_nothing_is_stored(app: Flask, conn: Conn, alices: Owned) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {alices.secret}"}
    many = [f"r{i}@example.com" for i in range(10_000)]
    new = {"to": ["a@example.com"], "subject": "S", "body_text": "B", "send_now": True}
    before = snapshot(conn)

    answers = {
        field: client.post("/api/v1/emails", json=new | {field: many}, headers=headers).get_json()["error"]["field"]
        for field in ("to", "cc", "bcc")
    }
    edit = client.patch(f"/api/v1/emails/{alices.email}", json={"bcc": many}, headers=headers)

    assert answers == {"to": "to", "cc": "to", "bcc": "to"}  # the limit is on all recipients together
    assert edit.status_code == 422
    assert snapshot(conn) == before


def test_a_list_over_the_batch_limit_is_422_and_nothing_is_stored(
    web_env: dict[str, str], conn: Conn, alices: Owned
) -> None:
    from tests.support.web import make_app

    app = make_app(web_env | {"BATCH_MAX_RECIPIENTS": "9999"})
    try:
        before = snapshot(conn)
        body = {"addresses": "\n".join(f"r{i}@example.com" for i in range(10_000)), "subject": "S", "body_text": "B"}

        response = app.test_client().post(
            "/api/v1/batches", json=body, headers={"Authorization": f"Bearer {alices.secret}"}
        )

        assert response.status_code == 422
        assert response.get_json()["error"]["field"] == "addresses"
        assert snapshot(conn) == before
    finally:
        app.extensions["reachdbox"].close()
