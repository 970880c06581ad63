"""What one send-to-a-list request may cost the web worker. The templates are capped (1 MB of
body, 1,000 placeholders each), and so is everything the batch renders (256 MB by default):
a request over a cap is 422 naming it before anything is rendered. Below the caps, emails
are rendered when needed (a preview renders five, the insert a chunk at a time), so the
worker's memory stays a few MB whatever the batch's size.

Memory is measured with ``tracemalloc`` around one in-process request: its peak counts every
Python allocation the request made (deterministic, unlike timings or RSS)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.security.conftest import Owned, snapshot

Conn = Any
MB = 1024 * 1024
#: A body template of a million characters, personalised: each email renders to just under 1 MB.
BIG_BODY = "x" * 1_000_000 + "\n{{email}}"


def addresses(n: int) -> str:
    return "\n".join(f"r{i}@example.com" for i in range(n))


@pytest.fixture
def api(app: Flask, alices: Owned) -> Callable[..., Any]:
    client: FlaskClient = app.test_client()

    def post(**body: Any) -> Any:
        return client.post("/api/v1/batches", json=body, headers={"Authorization": f"Bearer {alices.secret}"})

    return post


@pytest.fixture
def peak() -> Iterator[Callable[[], int]]:
    """Trace allocations from here; the fixture returns the peak so far, in bytes."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_batch_that_would_render_over_the_limit_is_422_before_anything_is_rendered(
    api: Callable[..., Any], conn: Conn, peak: Callable[[], int]
) -> None:
    """The review's case, scaled down: a 1 MB body to 300 rows would be 300 MB of email."""
    before = snapshot(conn)

    previewed = api(addresses=addresses(300), subject="S", body_text=BIG_BODY, dry_run=True)
    stored = api(addresses=addresses(300), subject="S", body_text=BIG_BODY)

    for response in (previewed, stored):
        assert response.status_code == 422, response.get_data(as_text=True)[:300]
        error = response.get_json()["error"]
        assert error["field"] == "body_text"
        assert "256 MB" in error["message"] and "BATCH_MAX_RENDERED_BYTES" in error["message"]
    assert peak() < 16 * MB  # the request (1 MB, twice over), never one rendered email more
    assert snapshot(conn) == before


def test_a_large_batch_under_the_limit_is_previewed_and_stored_in_bounded_memory(
    api: Callable[..., Any], conn: Conn, alices: Owned, peak: Callable[[], int]
) -> None:
    previewed = api(addresses=addresses(200), subject="S {{email}}", body_text=BIG_BODY, dry_run=True)
    preview_peak = peak()
    tracemalloc.reset_peak()
    stored = api(addresses=addresses(64), subject="S {{email}}", body_text=BIG_BODY)
    insert_peak = peak()

    assert previewed.status_code == 200, previewed.get_data(as_text=True)[:300]
    assert previewed.get_json()["accepted"] == 200
    assert [p["to"] for p in previewed.get_json()["preview"]] == [f"r{i}@example.com" for i in range(5)]
    assert all(p["body_text"].endswith(f"x\n{p['to']}") for p in previewed.get_json()["preview"])
    assert preview_peak < 48 * MB, preview_peak  # 200 MB of email; the five previewed are 5 MB
    assert stored.status_code == 201, stored.get_data(as_text=True)[:300]
    assert insert_peak < 48 * MB, insert_peak  # 64 MB of email
    rows = conn.execute(
        "SELECT to_addrs[1] AS to, subject, right(body_text, 40) AS tail, octet_length(body_text) AS size"
        " FROM emails WHERE batch_id = %s ORDER BY send_at, to_addrs[1]",
        (stored.get_json()["batch"]["id"],),
    ).fetchall()
    assert len(rows) == 64
    assert all(r["subject"] == f"S {r['to']}" and r["tail"].endswith(f"x\n{r['to']}") for r in rows)
    assert sum(r["size"] for r in rows) == sum(1_000_001 + len(r["to"]) for r in rows)


def test_a_body_template_over_1_mb_is_422(api: Callable[..., Any]) -> None:
    response = api(addresses=addresses(2), subject="S", body_text="x" * (MB + 1), dry_run=True)

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "body_text"
    assert "1 MB" in response.get_json()["error"]["message"]


def test_a_subject_template_over_998_characters_is_422(api: Callable[..., Any]) -> None:
    response = api(addresses=addresses(2), subject="{{email}}" * 200, body_text="B", dry_run=True)

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "subject"
    assert "998" in response.get_json()["error"]["message"]


def test_a_template_of_placeholders_is_422_before_any_row_is_rendered(
    api: Callable[..., Any], conn: Conn, peak: Callable[[], int]
) -> None:
    """The review's case: ``{{email}}`` 110,000 times (under 1 MB) cost 40 ms of CPU per row,
    each row then refused as over 1 MB. Now the template is refused, at once, for any list."""
    before = snapshot(conn)

    response = api(addresses=addresses(3_000), subject="S", body_text="{{email}}" * 110_000)

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "body_text"
    assert "1000 placeholders" in error["message"]
    assert peak() < 16 * MB  # no row rendered: one would be 1.8 MB
    assert snapshot(conn) == before
