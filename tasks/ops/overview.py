"""What operators look at: the state of the queue, the transports and the workers.

One function, ``overview``, feeds ``python -m tasks status`` and the web's
``/ops/status`` (the operators' dashboard), so both always say the same.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import emails
from tasks.domain.models import Status
from tasks.queue import procrastinate_boundary


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def transport_states(conn: db.Conn, settings: Settings) -> list[dict[str, Any]]:
    """Return each configured transport, in chain order, with its circuit breaker."""
    labels = [s.label for s in settings.mail_transports if not s.offline]
    rows = {r["label"]: r for r in db.all_rows(conn, "breaker_states", labels=labels)}
    states: list[dict[str, Any]] = []
    for spec in settings.mail_transports:
        item: dict[str, Any] = {"label": spec.label, "name": spec.name, "offline_log": spec.offline}
        if not spec.offline:
            row = rows.get(spec.label) or {}
            retry_in = row.get("retry_in")
            item |= {
                "state": row.get("state", "closed"),
                "failures": row.get("failures", 0),
                "opened_count": row.get("opened_count", 0),
                "retry_at": _iso(row.get("retry_at")) if row.get("state") == "open" else None,
                "retry_in_seconds": round(max(retry_in, 0.0), 1) if retry_in is not None else None,
                "last_error": row.get("last_error"),
                "changed_at": _iso(row.get("changed_at")),
            }
        states.append(item)
    return states


def workers_alive(conn: db.Conn, settings: Settings) -> list[dict[str, Any]]:
    """Return the workers whose Procrastinate heartbeat is recent."""
    return [
        {"id": r["id"], "last_heartbeat": _iso(r["last_heartbeat"]), "age_seconds": round(r["age_seconds"], 1)}
        for r in procrastinate_boundary.workers_alive(conn, stalled_after=settings.worker_stalled_after)
    ]


def overview(conn: db.Conn, settings: Settings) -> dict[str, Any]:
    """Return counts by status, the next due time, transports with breakers, and live workers."""
    counts = emails.status_counts(conn)
    return {
        "emails": {status: counts.get(status, 0) for status in Status},
        "next_due": _iso(emails.next_due(conn)),
        "transports": transport_states(conn, settings),
        "workers": workers_alive(conn, settings),
    }
