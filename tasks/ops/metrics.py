"""Prometheus metrics, computed from PostgreSQL at scrape time.

A custom collector rather than in-process counters: every number comes from the
database, so any web process answers the same for the whole fleet of workers
(and a restarted process loses nothing). Counters come from ``email_events``
plus ``email_event_totals`` (what ``prune`` removed), so they never go down.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain.models import Status
from tasks.ops import alerts
from tasks.queue import procrastinate_boundary

#: Upper bounds (seconds) of the claim-lateness histogram.
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Event kinds that end an attempt on a transport, and the outcome each stands for
#: (an attempt's final event is named after the email's new status).
OUTCOMES: dict[str, str] = {
    Status.SENT: "sent",
    Status.FAILED: "failed",
    Status.UNCERTAIN: "uncertain",
    Status.OFFLINE: "offline",
    "retry_scheduled": "deferred",
}
#: How the rate limiter marks its waits (``waiting_reason``, event kind).
RATE_LIMIT_REASON = "%rate%limit%"
RATE_LIMIT_EVENTS = ("rate_limited",)
NO_TRANSPORT_EVENT = "transport_unavailable"
BREAKER_STATES = ("closed", "half_open", "open")

Connect = Callable[[], contextlib.AbstractContextManager[db.Conn]]


class DatabaseCollector(Collector):
    """Collect every Reach D. Box metric with a handful of queries on one connection."""

    def __init__(self, connect: Connect, settings: Settings):
        self._connect = connect
        self._settings = settings

    def collect(self) -> Iterator[Any]:
        with self._connect() as conn:
            yield from self._emails(conn)
            yield from self._events(conn)
            yield self._lateness(conn)
            yield from self._breakers(conn)
            yield from self._queue(conn)
            yield from self._alerts(conn)

    def _emails(self, conn: db.Conn) -> Iterator[Any]:
        rows = {r["status"]: r for r in db.all_rows(conn, "metrics_emails", rate_limit_reason=RATE_LIMIT_REASON)}
        by_status = GaugeMetricFamily("reachdbox_emails", "Emails by status.", labels=["status"])
        for status in Status:
            by_status.add_metric([status], rows[status]["n"] if status in rows else 0)
        yield by_status
        scheduled = rows.get(Status.SCHEDULED)
        yield GaugeMetricFamily(
            "reachdbox_emails_due",
            "Scheduled emails whose time has come (the backlog).",
            value=scheduled["due"] if scheduled else 0,
        )
        oldest = scheduled["oldest_age"] if scheduled and scheduled["due"] else 0.0
        yield GaugeMetricFamily(
            "reachdbox_oldest_due_email_age_seconds",
            "How overdue the oldest due scheduled email is.",
            value=max(oldest or 0.0, 0.0),
        )
        yield GaugeMetricFamily(
            "reachdbox_rate_limit_waiting",
            "Emails waiting for a rate-limit slot now.",
            value=scheduled["rate_limited"] if scheduled else 0,
        )

    def _events(self, conn: db.Conn) -> Iterator[Any]:
        kinds = [*OUTCOMES, *RATE_LIMIT_EVENTS, NO_TRANSPORT_EVENT]
        rows = db.all_rows(conn, "metrics_event_counts", kinds=kinds)
        attempts = CounterMetricFamily(
            "reachdbox_send_attempts",
            "Attempts by transport and outcome (deferred: a temporary error, retried later).",
            labels=["transport", "outcome"],
        )
        waits = {"rate": 0, "transport": 0}
        for row in rows:
            if row["kind"] in OUTCOMES:
                attempts.add_metric([row["transport"], OUTCOMES[row["kind"]]], row["n"])
            elif row["kind"] in RATE_LIMIT_EVENTS:
                waits["rate"] += row["n"]
            else:
                waits["transport"] += row["n"]
        yield attempts
        yield CounterMetricFamily(
            "reachdbox_rate_limit_waits", "Times an email was made to wait for a rate-limit slot.", value=waits["rate"]
        )
        yield CounterMetricFamily(
            "reachdbox_transport_unavailable",
            "Times an email waited because every transport's circuit breaker was open.",
            value=waits["transport"],
        )

    def _lateness(self, conn: db.Conn) -> HistogramMetricFamily:
        rows = db.all_rows(conn, "metrics_lateness", bounds=list(LATENESS_BUCKETS))
        buckets: list[tuple[str, float]] = []
        for bound in (*LATENESS_BUCKETS, math.inf):
            # A row's late_le is the smallest bound above its values: it counts in every bucket from there.
            below = sum(r["n"] for r in rows if r["late_le"] <= bound)
            buckets.append(("+Inf" if bound == math.inf else repr(bound), below))
        total_sum = sum(r["late_sum"] or 0.0 for r in rows)
        return HistogramMetricFamily(
            "reachdbox_send_lateness_seconds",
            "How late each attempt was claimed after it was due.",
            buckets=buckets,
            sum_value=total_sum,
        )

    def _breakers(self, conn: db.Conn) -> Iterator[Any]:
        labels = [s.label for s in self._settings.mail_transports if not s.offline]
        rows = {r["label"]: r for r in db.all_rows(conn, "breaker_states", labels=labels)}
        state = GaugeMetricFamily(
            "reachdbox_transport_breaker_state",
            "Circuit breaker state per transport (1 for the current state).",
            labels=["transport", "state"],
        )
        failures = GaugeMetricFamily(
            "reachdbox_transport_breaker_failures",
            "Consecutive provider failures counted by the breaker.",
            labels=["transport"],
        )
        opened = CounterMetricFamily(
            "reachdbox_transport_breaker_opened", "Times the breaker opened.", labels=["transport"]
        )
        for label in labels:
            row = rows.get(label)
            current = row["state"] if row else "closed"
            for name in BREAKER_STATES:
                state.add_metric([label, name], 1 if name == current else 0)
            failures.add_metric([label], row["failures"] if row else 0)
            opened.add_metric([label], row["opened_count"] if row else 0)
        yield from (state, failures, opened)

    def _queue(self, conn: db.Conn) -> Iterator[Any]:
        jobs = GaugeMetricFamily(
            "reachdbox_queue_jobs", "Procrastinate jobs waiting or running.", labels=["queue", "status"]
        )
        due = GaugeMetricFamily("reachdbox_queue_due_jobs", "Jobs waiting whose time has come.", labels=["queue"])
        for row in procrastinate_boundary.job_counts(conn):
            jobs.add_metric([row["queue_name"], row["status"]], row["n"])
            if row["status"] == "todo":
                due.add_metric([row["queue_name"]], row["due"])
        yield from (jobs, due)
        alive = procrastinate_boundary.workers_alive(conn, stalled_after=self._settings.worker_stalled_after)
        yield GaugeMetricFamily("reachdbox_workers", "Workers whose heartbeat is recent.", value=len(alive))

    def _alerts(self, conn: db.Conn) -> Iterator[Any]:
        rows = {r["kind"]: r for r in db.all_rows(conn, "metrics_alerts")}
        open_ = GaugeMetricFamily(
            "reachdbox_alerts_open",
            "Alerts open now by kind (docs/alerts.md): raised (Slack was told), or pending (held back while it flaps).",
            labels=["kind", "state"],
        )
        raised = GaugeMetricFamily(
            "reachdbox_alerts_raised_24h", "Alerts raised in the last 24 hours, by kind.", labels=["kind"]
        )
        for kind in alerts.KINDS:
            row = rows.get(kind)
            open_.add_metric([kind, "raised"], row["open"] if row else 0)
            open_.add_metric([kind, "pending"], row["pending"] if row else 0)
            raised.add_metric([kind], row["raised"] if row else 0)
        yield from (open_, raised)
