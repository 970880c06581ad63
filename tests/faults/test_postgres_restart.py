"""PostgreSQL restarted while emails are being sent (issue 6, scenario 3)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tasks import db
from tests.faults import guarantees
from tests.support import invariants
from tests.support.procs import wait_until
from tests.support.servers import PrivatePostgres
from tests.support.smtp_sink import Sink

Conn = psycopg.Connection[dict[str, Any]]
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
            scenario="3 restart PostgreSQL mid-send",
            promise="the worker reconnects by itself; every email sent once or marked uncertain",
            deadline_s=120,
            started_at=started_at,
            faults=[fault],
        )
    assert worker.proc.poll() is None, "the worker process survived the restart:\n" + worker.output()[-3000:]
    assert figures.emails == 300
