"""The operators' page: breakers, counts and workers, for operators only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from tasks.core import db
from tests.support.web import make_app


@pytest.fixture
def operator_app(web_env: dict[str, str]) -> Iterator[Flask]:
    app = make_app(
        web_env
        | {
            "OPERATOR_EMAILS": "ops@example.com",
            "MAIL_TRANSPORTS": "primary=smtp://127.0.0.1:1 backup=smtp://127.0.0.1:2",
        }
    )
    yield app
    app.extensions["reachdbox"].close()


def test_an_operator_sees_each_transports_breaker_in_chain_order(
    operator_app: Flask, sign_in: Callable[..., Any], database_url: str
) -> None:
    with db.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO transport_breakers (label, state, failures, retry_at, opened_count, last_error)"
            " VALUES ('primary', 'open', 5, now() + interval '40 seconds', 1, 'cannot connect')"
        )
    client = operator_app.test_client()
    sign_in(client, "ops@example.com")

    page = client.get("/operators").get_data(as_text=True)

    assert page.index('data-transport="primary"') < page.index('data-transport="backup"')
    primary = page[page.index('data-transport="primary"') : page.index('data-transport="backup"')]
    assert "breaker-open" in primary and "cannot connect" in primary and "trial in" in primary
    assert "breaker-closed" in page[page.index('data-transport="backup"') :]
    assert "No worker is running" in page
    assert 'href="/operators"' in client.get("/").get_data(as_text=True)


def test_anyone_else_gets_404_and_no_link(operator_app: Flask, sign_in: Callable[..., Any]) -> None:
    client = operator_app.test_client()
    sign_in(client, "alice@example.com")

    assert client.get("/operators").status_code == 404
    assert 'href="/operators"' not in client.get("/").get_data(as_text=True)
