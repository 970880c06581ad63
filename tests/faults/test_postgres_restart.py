"""PostgreSQL restarted while emails are being sent (scenario 3)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core import db
from tasks.core.db import Conn
from tasks.delivery import send
from tests.faults import guarantees
from tests.support import invariants
from tests.support.procs import wait_until
from tests.support.servers import PrivatePostgres
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow


def test_3_postgres_restart_mid_send_the_worker_recovers_by_itself(
    private_pg: PrivatePostgres,
    fault_db: str,
    fault_conn: Conn,
    sink: Sink,
    schedule: Callable[..., Any],
    fault_workers: Any,
) -> None:
    """Restart PostgreSQL mid-burst: the same worker process reconnects and sends the rest; nothing doubled."""
    sink.data_delay = 0.05
    schedule(300)
    started_at = time.time()
    worker = fault_workers()
    wait_until(lambda: len(sink.messages) >= 50, timeout=60, what="the first deliveries")
    wait_until(lambda: invariants.counts(fault_conn).get("sending", 0) > 0, timeout=10, what="emails in flight")
    fault = guarantees.inject(fault_conn, lambda: private_pg.restart("fast", down_for=3.0))

    with db.connect(fault_db) as conn:
        figures = guarantees.check(
            conn,
            sink,
            scenario="3. restart PostgreSQL mid-send",
            promise="the worker reconnects by itself; every email sent once or marked uncertain",
            deadline_s=120,
            started_at=started_at,
            faults=[fault],
        )
    assert worker.proc.poll() is None, "the worker process survived the restart:\n" + worker.output()[-3000:]
    assert figures.emails == 300


def sink_answers_during_outage(
    private_pg: PrivatePostgres, fault_conn: Conn, sink: Sink, schedule: Callable[..., Any], down_for: float
) -> guarantees.Fault:
    """Stop PostgreSQL while DATA is in progress, so the 250 arrives while it is down."""
    sink.data_delay = 1.5
    schedule(3)
    assert sink.data_started.wait(30), "DATA never began"
    wait_until(
        lambda: fault_conn.execute("SELECT 1 FROM emails WHERE data_started_at IS NOT NULL").fetchone(),
        timeout=5,
        what="data_started_at to be committed",
    )
    return guarantees.inject(fault_conn, lambda: private_pg.restart("fast", down_for=down_for))


def test_a_send_whose_outcome_cannot_be_written_is_recorded_when_postgres_returns(
    private_pg: PrivatePostgres,
    fault_db: str,
    fault_conn: Conn,
    sink: Sink,
    schedule: Callable[..., Any],
    fault_workers: Any,
) -> None:
    """The provider said 250 while PostgreSQL was down: the email ends sent, delivered once."""
    worker = fault_workers()
    started_at = time.time()
    fault = sink_answers_during_outage(private_pg, fault_conn, sink, schedule, down_for=3.0)
    assert fault.in_flight

    with db.connect(fault_db) as conn:
        figures = guarantees.check(
            conn, sink, scenario="", promise="", deadline_s=60, started_at=started_at, expect=("sent",), record=False
        )
        late = conn.execute(
            """
            SELECT count(*) AS n FROM email_events
             WHERE kind = 'sent' AND email_id = ANY(%s) AND at > to_timestamp(%s)
            """,
            (list(fault.in_flight), fault.at),
        ).fetchone()
    assert figures.sent == 3 and set(sink.by_message_id().values()) == {1}
    assert late["n"] == len(fault.in_flight), "the outcomes were written after the outage"
    assert worker.proc.poll() is None


def test_a_send_whose_outcome_is_lost_to_a_long_outage_ends_uncertain_never_resent(
    private_pg: PrivatePostgres,
    fault_db: str,
    fault_conn: Conn,
    sink: Sink,
    schedule: Callable[..., Any],
    fault_workers: Any,
) -> None:
    """PostgreSQL stays down longer than an attempt waits to record its 250: uncertain, not sent twice."""
    fault_workers()
    started_at = time.time()
    fault = sink_answers_during_outage(private_pg, fault_conn, sink, schedule, down_for=send.OUTCOME_RETRY + 3)
    in_data = list(fault.in_data)

    with db.connect(fault_db) as conn:
        figures = guarantees.check(
            conn, sink, scenario="", promise="", deadline_s=90, started_at=started_at, record=False
        )
        states = conn.execute(
            "SELECT status, count(*) AS n FROM emails WHERE id = ANY(%s) GROUP BY 1", (in_data,)
        ).fetchall()
    # The attempts past DATA end uncertain; any caught before it are retried and sent.
    assert in_data and {r["status"]: r["n"] for r in states} == {"uncertain": len(in_data)}
    assert figures.uncertain >= len(in_data) and set(sink.by_message_id().values()) == {1}


def test_a_worker_started_while_postgres_is_down_waits_for_it_then_sends(
    private_pg: PrivatePostgres, fault_db: str, sink: Sink, schedule: Callable[..., Any], fault_workers: Any
) -> None:
    """`python -m tasks worker` with PostgreSQL down says so, keeps trying, and works once it is up."""
    schedule(20)
    private_pg.stop("fast")
    worker = fault_workers(wait=False)
    wait_until(lambda: "database unavailable" in worker.output(), timeout=30, what="the worker to report the outage")
    assert "Connection refused" in worker.output() and worker.proc.poll() is None
    private_pg.start()
    started_at = time.time()

    with db.connect(fault_db) as conn:
        figures = guarantees.check(
            conn, sink, scenario="", promise="", deadline_s=60, started_at=started_at, expect=("sent",), record=False
        )
    assert figures.sent == 20 and worker.proc.poll() is None
