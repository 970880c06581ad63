"""/readyz, /metrics and /ops/status: real PostgreSQL, real Redis (a private one to stop), real workers."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from scripts import services
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models
from tasks.domain.models import Email, User
from tasks.queue import retention
from tests.support.flow import attempt
from tests.support.procs import wait_until
from tests.support.smtp_sink import Sink, free_port
from webapp import create_app

TOKEN = "ops-token-0123456789abcdef"


def client(env: dict[str, str], **overrides: str) -> FlaskClient:
    return create_app({"ENV": env | overrides, "TESTING": True}).test_client()


def scrape(web: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Fetch /metrics and index every sample by name and labels."""
    response = web.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def private_redis() -> Iterator[tuple[str, services.Started]]:
    """A Redis of this test's own, which it may stop."""
    started = services.Started()
    data = services.DATA / f"test-readyz-{os.getpid()}"
    url = services.start_private_redis(started, data)
    yield url, started
    started.stop_all()
    shutil.rmtree(data, ignore_errors=True)


def test_readyz_is_200_while_both_answer_and_503_while_redis_is_down(
    env: dict[str, str], private_redis: tuple[str, services.Started]
) -> None:
    url, started = private_redis
    web = client(env, REDIS_URL=url)

    up = web.get("/readyz")
    started.stop_all()
    down = web.get("/readyz")

    assert up.status_code == 200 and up.get_json() == {
        "status": "ready",
        "checks": {"postgres": "ok", "redis": "ok"},
    }
    assert down.status_code == 503
    assert down.get_json()["checks"]["postgres"] == "ok"
    assert down.get_json()["checks"]["redis"].startswith("unavailable")


def test_readyz_metrics_and_status_answer_503_while_postgres_is_down(env: dict[str, str]) -> None:
    web = client(env, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")

    ready, scrape, status = web.get("/readyz"), web.get("/metrics"), web.get("/ops/status")

    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {"postgres": "unavailable: OperationalError", "redis": "ok"}
    assert scrape.status_code == 503 and status.status_code == 503
    assert status.get_json()["error"]["code"] == "unavailable"


def test_metrics_and_ops_status_require_the_ops_token_when_one_is_set(env: dict[str, str]) -> None:
    web = client(env, OPS_TOKEN=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    denied = [web.get(path).status_code for path in ("/metrics", "/ops/status")]
    wrong = web.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code
    allowed = [web.get(path, headers=bearer).status_code for path in ("/metrics", "/ops/status")]

    assert denied == [401, 401] and wrong == 401 and allowed == [200, 200]
    assert web.get("/readyz").status_code == 200  # orchestrators need no token


@pytest.mark.slow
def test_metrics_move_as_emails_are_sent_fail_and_the_breaker_opens(
    conn: Conn,
    env: dict[str, str],
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    workers: Any,
) -> None:
    web = client(env, BREAKER_THRESHOLD="1")
    workers(extra_env={"BREAKER_THRESHOLD": "1"})

    def send(**fields: Any) -> Email:
        email = emails.schedule(
            conn, owner=owner, draft=make_draft(send_at=dt.datetime.now(dt.UTC), **fields), settings=settings
        )[0]
        return wait_until(
            lambda: (e := emails.get(conn, models.OPERATOR, email.id)).status in models.TERMINAL and e,
            timeout=30,
            what="a final status",
        )

    before = scrape(web)
    send()
    after_sent = scrape(web)
    sink.data_replies.append("550 5.7.1 Rejected")
    send()
    after_failed = scrape(web)
    sink.stop()
    emails.schedule(conn, owner=owner, draft=make_draft(send_at=dt.datetime.now(dt.UTC)), settings=settings)
    wait_until(
        lambda: value(scrape(web), "reachdbox_transport_breaker_state", transport="smtp", state="open") == 1,
        timeout=30,
        what="the breaker to open in /metrics",
    )
    after_outage = scrape(web)

    attempts = "reachdbox_send_attempts_total"
    assert value(before, attempts, transport="smtp", outcome="sent") == 0
    assert value(after_sent, attempts, transport="smtp", outcome="sent") == 1
    assert value(after_sent, "reachdbox_emails", status="sent") == 1
    assert value(after_sent, "reachdbox_send_lateness_seconds_count") == 1
    assert value(after_sent, "reachdbox_send_lateness_seconds_bucket", le="+Inf") == 1
    assert value(after_failed, attempts, transport="smtp", outcome="failed") == 1
    assert value(after_failed, "reachdbox_emails", status="failed") == 1
    assert value(after_outage, attempts, transport="smtp", outcome="deferred") >= 1
    assert value(after_outage, "reachdbox_transport_breaker_opened_total", transport="smtp") == 1
    assert value(after_outage, "reachdbox_transport_breaker_state", transport="smtp", state="closed") == 0
    assert value(after_outage, "reachdbox_workers") == 1
    assert value(before, "reachdbox_transport_breaker_state", transport="smtp", state="closed") == 1


def test_counters_do_not_go_down_when_old_events_are_pruned(
    conn: Conn, env: dict[str, str], owner: User, settings: Settings, make_draft: Callable[..., Any]
) -> None:
    for i in range(3):
        email = emails.schedule(conn, owner=owner, draft=make_draft(subject=f"#{i}"), settings=settings)[0]
        attempt(conn, email, "sent" if i else "failed", transport="smtp", error=None if i else "550 no")
    web = client(env)
    before = scrape(web)

    deleted = retention.prune_events(conn, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    after = scrape(web)

    assert deleted == 3 * 3  # scheduled, claimed, outcome
    assert conn.execute("SELECT count(*) AS n FROM email_events").fetchone() == {"n": 0}
    counters = [k for k in before if k[0].endswith(("_total", "_count", "_sum", "_bucket"))]
    assert {k: after.get(k) for k in counters} == {k: before[k] for k in counters}
    assert value(after, "reachdbox_send_attempts_total", transport="smtp", outcome="sent") == 2
    assert value(after, "reachdbox_send_lateness_seconds_count") == 3


def test_ops_status_is_the_operators_overview_as_json(conn: Conn, env: dict[str, str], tmp_path: pathlib.Path) -> None:
    conn.execute(
        "INSERT INTO transport_breakers (label, state, failures, retry_at, opened_count, last_error) "
        "VALUES ('primary', 'open', 3, now() + interval '30 s', 1, 'cannot connect')"
    )
    conn.execute("INSERT INTO procrastinate_workers DEFAULT VALUES")
    web = client(env, MAIL_TRANSPORTS=f"primary=smtp://127.0.0.1:1 jsonl://{tmp_path}/offline.jsonl")

    data = web.get("/ops/status").get_json()

    assert data["emails"] == {status: 0 for status in models.Status}
    primary, log = data["transports"]
    assert (primary["label"], primary["state"], primary["failures"], primary["last_error"]) == (
        "primary",
        "open",
        3,
        "cannot connect",
    )
    assert 25 < primary["retry_in_seconds"] <= 30
    assert log == {"label": "jsonl", "name": f"jsonl://{tmp_path}/offline.jsonl", "offline_log": True}
    assert len(data["workers"]) == 1
