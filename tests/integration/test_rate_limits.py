"""Shared rate limits with real workers, a real SMTP server and real (private) Redis servers."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from scripts import services
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models
from tasks.domain.models import User
from tests.support import invariants
from tests.support.procs import run_cli, wait_until
from tests.support.smtp_sink import Sink, free_port

pytestmark = pytest.mark.slow
_dirs = itertools.count()


def max_in_window(times: list[float], window: float) -> int:
    """The most messages any window of ``window`` seconds holds."""
    ordered, best, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def schedule_at(conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], n: int, at: Any) -> None:
    for i in range(n):
        emails.schedule(conn, owner=owner, draft=make_draft(send_at=at, subject=f"#{i}"), settings=settings)


class PrivateRedis:
    """A redis-server of this test's own, to stop, restart and flush."""

    def __init__(self) -> None:
        self.dir = services.DATA / f"test-redis-{os.getpid()}-{next(_dirs)}"
        self.port = free_port()
        self.started = services.Started()
        self.url = services.start_private_redis(self.started, self.dir, self.port)

    def stop(self) -> None:
        self.started.stop_all()

    def start(self) -> None:
        services.start_private_redis(self.started, self.dir, self.port)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    yield server
    server.close()


#: Emails due at once in the test below: 15 windows of 20. The 5% allowance over the ideal drain leaves
#: 14 x (0.5 - 0.2 margin) = 4.2 s for the last window's sends (500 emails took four minutes, for 7.2 s).
BURST = 300


def test_four_workers_never_exceed_20_per_10s_and_drain_in_ideal_time(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """300 emails due at once, four workers, 20/10s: no 10 s window over 20, done within 5% of ideal."""
    limits = {"RATE_LIMITS": "smtp=20/10s"}
    for _ in range(4):
        workers(extra_env=limits)
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    schedule_at(conn, owner, settings, make_draft, BURST, due)

    received = sink.wait_for(BURST, timeout=300)

    times = [m.at for m in received]
    ideal = (math.ceil(BURST / 20) - 1) * 10  # the last 20 may leave 140 s after the first 20
    drain = max(times) - due.timestamp()
    print(
        f"20/10s, {BURST} emails: busiest 10 s window {max_in_window(times, 10)}, drain {drain:.1f}s (ideal {ideal}s)"
    )
    assert max_in_window(times, 10.0) <= 20
    assert drain <= ideal * 1.05
    wait_until(lambda: invariants.counts(conn) == {"sent": BURST}, timeout=20, what="every email sent")
    assert set(sink.by_message_id().values()) == {1}
    # Waiting for a slot is neither an attempt nor polling: one attempt each, at most two claims,
    # and most emails only one: the burst is queued at its turns in bulk (gate.spread).
    claims = conn.execute(
        "SELECT max(n) AS most, count(*) FILTER (WHERE n = 2) AS twice FROM "
        "(SELECT count(*) AS n FROM email_events WHERE kind = 'claimed' GROUP BY email_id) c"
    ).fetchone()
    assert claims["most"] <= 2 and claims["twice"] < (BURST - 20) / 4, claims
    assert conn.execute("SELECT max(attempts) AS a FROM emails").fetchone() == {"a": 1}


def test_redis_down_sends_nothing_fails_nothing_and_the_limit_holds_across(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    workers: Any,
    private_redis: PrivateRedis,
) -> None:
    """Stopped mid-drain: nothing goes out while it is down; after it is back (empty), all go within 5/2s."""
    for _ in range(2):
        workers(extra_env={"RATE_LIMITS": "smtp=5/2s", "REDIS_URL": private_redis.url})
    schedule_at(conn, owner, settings, make_draft, 30, dt.datetime.now(dt.UTC))
    sink.wait_for(8, timeout=20)

    private_redis.stop()
    stopped = time.time()
    waiting = wait_until(
        lambda: conn.execute(
            "SELECT count(*) AS n FROM emails WHERE waiting_reason = 'rate limiter unavailable'"
        ).fetchone()["n"],
        timeout=20,
        what="emails waiting for the rate limiter",
    )
    time.sleep(3)  # an outage of a few seconds, during which the workers keep trying
    sent_during = [m for m in sink.messages if m.at > stopped + 0.5]
    statuses = invariants.counts(conn)
    private_redis.start()

    assert waiting > 0 and sent_during == []
    assert "failed" not in statuses
    received = sink.wait_for(30, timeout=60)
    assert max_in_window([m.at for m in received], 2.0) <= 5
    wait_until(lambda: invariants.counts(conn) == {"sent": 30}, timeout=20, what="every email sent")
    assert set(sink.by_message_id().values()) == {1}
    assert conn.execute("SELECT max(attempts) AS a FROM emails").fetchone() == {"a": 1}


def test_a_flushed_redis_is_rebuilt_and_no_window_is_overspent(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    workers: Any,
    private_redis: PrivateRedis,
) -> None:
    """FLUSHALL after the first 10 sends: the buckets come back from PostgreSQL, reservations included."""
    for _ in range(2):
        workers(extra_env={"RATE_LIMITS": "smtp=10/4s", "REDIS_URL": private_redis.url})
    schedule_at(conn, owner, settings, make_draft, 40, dt.datetime.now(dt.UTC))
    sink.wait_for(10, timeout=20)
    wait_until(
        lambda: conn.execute("SELECT count(*) AS n FROM emails WHERE rate_slot IS NOT NULL").fetchone()["n"] == 30,
        timeout=20,
        what="30 reserved slots",
    )

    redis.Redis.from_url(private_redis.url).flushall()

    received = sink.wait_for(40, timeout=60)
    assert max_in_window([m.at for m in received], 4.0) <= 10
    wait_until(lambda: invariants.counts(conn) == {"sent": 40}, timeout=20, what="every email sent")
    # Each waiting email found its slot again in the rebuilt bucket: sent in it, not re-queued.
    late = conn.execute(
        "SELECT count(*) AS n FROM emails WHERE rate_slot IS NOT NULL AND sent_at > rate_slot + interval '1 second'"
    ).fetchone()
    assert late == {"n": 0}


def test_a_rate_limited_email_shows_its_slot_in_inspect_and_is_sent_then(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    workers: Any,
    env: dict[str, str],
) -> None:
    """1 per 6 s: the second email waits for its reserved slot, visible in `inspect`, and goes at it."""
    workers(extra_env={"RATE_LIMITS": "smtp=1/6s"})
    now = dt.datetime.now(dt.UTC)
    first = emails.schedule(conn, owner=owner, draft=make_draft(send_at=now), settings=settings)[0]
    second = emails.schedule(conn, owner=owner, draft=make_draft(send_at=now), settings=settings)[0]
    waiting = wait_until(
        lambda: next(
            (e for e in (emails.get(conn, models.OPERATOR, x.id) for x in (first, second)) if e.rate_slot), None
        ),
        timeout=15,
        what="a reserved slot",
    )

    shown = run_cli(env, "inspect", str(waiting.id))

    assert shown.returncode == 0, shown.stderr
    inspected = json.loads(shown.stdout)
    slot = dt.datetime.fromisoformat(inspected["email"]["rate_slot"])
    assert inspected["email"]["status"] == "scheduled"
    assert inspected["email"]["waiting_reason"] == "waiting for a rate-limit slot"
    assert dt.datetime.fromisoformat(inspected["email"]["next_attempt_at"]) == slot
    [event] = [e for e in inspected["events"] if e["kind"] == "rate_limited"]
    assert dt.datetime.fromisoformat(event["detail"]["slot"]) == slot
    assert event["detail"]["limit"] == "smtp: 1/6s (your share)"  # it waits in its own lane (fair share)
    received = {m.message_id: m.at for m in sink.wait_for(2, timeout=20)}
    assert 0 <= received[waiting.message_id] - slot.timestamp() < 1.0
    assert received[waiting.message_id] - min(received.values()) >= 6.0
    sent = wait_until(
        lambda: (e := emails.get(conn, models.OPERATOR, waiting.id)).status == "sent" and e, timeout=10, what="sent"
    )
    assert sent.attempts == 1
