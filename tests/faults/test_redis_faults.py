"""Scenario 4: Redis stops for 30 s during a rate-limited burst, comes back empty, and is
flushed once more after some sends.

Redis holds only the rate-limit buckets (and live status): while it is down the
workers must fail closed (nothing sent, nothing failed, the emails wait), and
after each loss of its data the buckets are rebuilt from PostgreSQL, so the
provider's limit is never exceeded and nothing is sent twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.db import Conn
from tests.faults import guarantees, measures
from tests.support import invariants, procs
from tests.support.servers import PrivateRedis
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow

EMAILS = 50
# RATE_LIMITS smtp=10/5s: its window gets the whole RATE_LIMIT_MARGIN (0.2 s). With a
# 2 s window the margin is capped at 5% (0.1 s), less than the spread measured below
# between a slot and the provider seeing the message on a busy 2-core machine (up to
# ~0.2 s for the first sends, which also connect): that limit was exceeded by one
# email in one run of four. See the measures and docs/how-it-works.md ("Rate limits").
LIMIT = (10, 5.0)
OUTAGE = 30.0


def waiting_for_redis(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) AS n FROM emails WHERE waiting_reason = 'rate limiter unavailable'").fetchone()
    return row["n"] if row else 0


def test_redis_down_30s_then_flushed_mid_burst_never_exceeds_the_limit_nor_sends_twice(
    fault_conn: Conn,
    fault_workers: Any,
    schedule: Callable[..., Any],
    private_redis: PrivateRedis,
    sink: Sink,
) -> None:
    """Down: nothing goes out and nothing fails; back (empty) and flushed: the rest go, within 10/5s."""
    for _ in range(2):
        fault_workers(extra_env={"RATE_LIMITS": "smtp=10/5s"})
    started = time.time()
    schedule(EMAILS)
    sink.wait_for(15, timeout=30)

    stop = guarantees.inject(fault_conn, private_redis.stop)
    procs.wait_until(lambda: waiting_for_redis(fault_conn), timeout=20, what="emails waiting for Redis")
    during = invariants.counts(fault_conn)
    time.sleep(max(0.0, stop.at + OUTAGE - time.time()))  # the outage itself: 30 s, as the issue says
    sent_while_down = [m for m in sink.messages if m.at > stop.at + 0.5]
    back = guarantees.inject(fault_conn, private_redis.start)
    sink.wait_for(len(sink.messages) + 10, timeout=30)
    flush = guarantees.inject(fault_conn, private_redis.flush)

    figures = guarantees.check(
        fault_conn,
        sink,
        scenario="4. Redis down 30 s, then flushed",
        promise="fail closed while Redis is down; buckets rebuilt from PostgreSQL: the limit holds, nothing twice",
        deadline_s=OUTAGE + 90,
        started_at=started,
        faults=[back, flush],
        limit=LIMIT,
        expect=("sent",),
    )

    spread = fault_conn.execute(
        "SELECT e.message_id, extract(epoch FROM max(v.at))::float AS claimed FROM emails e"
        " JOIN email_events v ON v.email_id = e.id AND v.kind = 'claimed' GROUP BY 1"
    ).fetchall()
    arrived = {m.message_id: m.at for m in sink.messages}
    measures.note(
        figures.scenario,
        limit="10/5s",
        redis_down_s=OUTAGE,
        claim_to_provider=measures.spread([arrived[r["message_id"]] - r["claimed"] for r in spread]),
    )
    assert sent_while_down == []
    assert "failed" not in during
    # Waiting for Redis or for a slot never spends an attempt.
    retried = fault_conn.execute(
        "SELECT e.id, e.attempts, array_agg(v.kind || ' ' || v.detail::text ORDER BY v.id) AS events"
        "  FROM emails e JOIN email_events v ON v.email_id = e.id WHERE e.attempts > 1 GROUP BY 1, 2"
    ).fetchall()
    assert retried == []
    assert figures.sent == EMAILS
