"""Scenarios 5 and 6: the SMTP provider in trouble.

5. It refuses connections for 60 s, then answers 421 for a while, then recovers:
   the circuit breaker opens, emails wait without failing, and everything is
   delivered soon after the provider is back (measured).
6. It stalls after DATA until the client times out: the provider may have the
   email, so it must end ``uncertain`` and never be sent again; the window in
   which an email can become uncertain is measured.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.db import Conn
from tests.faults import guarantees, measures
from tests.support import procs
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow

REFUSED_FOR = 60.0  # the figure
UNAVAILABLE_FOR = 10.0
COOLDOWN = 10.0  # BREAKER_COOLDOWN: a trial every 10 s while the provider is down


def statuses(conn: Conn) -> dict[str, int]:
    return {r["status"]: r["n"] for r in conn.execute("SELECT status, count(*) AS n FROM emails GROUP BY 1")}


def test_provider_refusing_60s_then_421_then_back_delivers_everything_once(
    fault_conn: Conn, fault_workers: Any, schedule: Callable[..., Any], sink: Sink
) -> None:
    """Refused, then 421: nothing fails, nothing is lost; after recovery every email goes within a cool-down or two."""
    fault_workers(extra_env={"BREAKER_COOLDOWN": str(COOLDOWN)})
    started = time.time()
    now = dt.datetime.now(dt.UTC)
    schedule(10, prefix="before")
    sink.wait_for(10, timeout=30)

    outage = guarantees.inject(fault_conn, sink.stop)
    # Emails keep coming due all through the outage.
    for i in range(8):
        schedule(5, at=now + dt.timedelta(seconds=2 + 9 * i), prefix=f"during-{i}")
    time.sleep(max(0.0, outage.at + REFUSED_FOR - time.time()))
    sink.unavailable = "421 4.3.2 Service not available, closing transmission channel"
    sink.start()
    time.sleep(UNAVAILABLE_FOR)
    during = statuses(fault_conn)
    breaker = fault_conn.execute("SELECT state, opened_count FROM transport_breakers").fetchone()
    back = guarantees.inject(fault_conn, lambda: setattr(sink, "unavailable", None))
    received_before = len(sink.messages)

    figures = guarantees.check(
        fault_conn,
        sink,
        scenario="5. SMTP refused 60 s, then 421, then back",
        promise="nothing fails or is lost while the provider is down; all delivered once it is back",
        deadline_s=REFUSED_FOR + UNAVAILABLE_FOR + 90,
        started_at=started,
        faults=[back],
        expect=("sent",),
    )

    last = max(m.at for m in sink.messages)
    all_delivered = last - back.at
    measures.note(
        figures.scenario,
        refused_s=REFUSED_FOR,
        answered_421_s=UNAVAILABLE_FOR,
        breaker_cooldown_s=COOLDOWN,
        emails_waiting_at_recovery=figures.emails - received_before,
        seconds_to_first_delivery=round(min(m.at for m in sink.messages if m.at > back.at) - back.at, 1),
        seconds_to_deliver_all=round(all_delivered, 1),
        refused_commands=sink.refused_commands,
    )
    assert "failed" not in during
    assert breaker is not None and breaker["opened_count"] >= 1  # the breaker did its job
    assert received_before == 10  # nothing got through the outage
    # Back: the breaker's next trial succeeds within a cool-down; the backlog follows at once.
    assert all_delivered < 2 * COOLDOWN + 10, all_delivered
    assert figures.sent == 50


def test_a_stall_after_data_leaves_emails_uncertain_never_resent_and_the_rest_go(
    fault_conn: Conn, fault_workers: Any, schedule: Callable[..., Any], sink: Sink
) -> None:
    """The provider keeps the message but never answers: uncertain, received once, no new attempt."""
    fault_workers(extra_env={"SMTP_TIMEOUT": "2", "BREAKER_COOLDOWN": "3"})
    started = time.time()
    schedule(10, prefix="before")
    sink.wait_for(10, timeout=30)

    sink.stall_after_accept.set()
    schedule(10, prefix="stalled")
    procs.wait_until(lambda: statuses(fault_conn).get("uncertain", 0) >= 3, timeout=30, what="stalled emails")
    answering = guarantees.inject(fault_conn, sink.stall_after_accept.clear)
    schedule(10, prefix="after")

    figures = guarantees.check(
        fault_conn,
        sink,
        scenario="6. SMTP stalls after DATA",
        promise="a reply lost after DATA leaves the email uncertain, never re-sent",
        deadline_s=90,
        started_at=started,
        faults=[answering],
        expect=("sent", "uncertain"),
    )

    rows = fault_conn.execute(
        """
        SELECT e.status, e.message_id, e.attempts,
               extract(epoch FROM coalesce(e.sent_at, u.at) - e.data_started_at)::float AS window_s,
               (SELECT count(*) FROM procrastinate_jobs j
                 WHERE j.status IN ('todo', 'doing') AND j.args->>'email_id' = e.id::text) AS live_jobs
          FROM emails e
          LEFT JOIN LATERAL (SELECT max(at) AS at FROM email_events v
                              WHERE v.email_id = e.id AND v.kind = 'uncertain') u ON true
        """
    ).fetchall()
    received = sink.by_message_id()
    uncertain = [r for r in rows if r["status"] == "uncertain"]
    sent = [r for r in rows if r["status"] == "sent"]
    measures.note(
        figures.scenario,
        smtp_timeout_s=2,
        stalled_replies=sink.stalled,
        uncertain=len(uncertain),
        uncertain_window_when_stalled=measures.spread([r["window_s"] for r in uncertain]),
        uncertain_window_when_healthy=measures.spread([r["window_s"] for r in sent]),
    )
    assert len(uncertain) >= 3
    # The provider has each of them exactly once: no second attempt was made.
    assert [received[r["message_id"]] for r in uncertain] == [1] * len(uncertain)
    assert {(r["attempts"], r["live_jobs"]) for r in uncertain} == {(1, 0)}
    # Uncertain only after the client gave up waiting (SMTP_TIMEOUT), not before.
    assert all(1.9 <= r["window_s"] < 10 for r in uncertain), [r["window_s"] for r in uncertain]
    assert figures.sent + figures.uncertain == 30
