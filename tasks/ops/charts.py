"""The charts: what the operators' page and each user's dashboard draw over time.

Counting every event of the last 24 hours at each refresh would cost as much as
the events are many (a busy day is millions). Instead a periodic task
(``tasks.queue.charts``, every minute, on one worker) keeps small rollups:

- ``chart_minutes``: per minute, attempts sent, failed and put back to wait,
  and the exact p50 and p99 of the claim lateness; ``chart_transport_minutes``:
  rate-limit waits per minute and transport;
- ``chart_owner_minutes``: sent and failed per minute and owner, for each
  user's own chart;
- sent lateness (the ``sent`` event's time minus the email's ``send_at``: how
  late the recipient got it, retries included): exact p50/p95/p99 and the count
  over a minute, per minute over everyone (columns of ``chart_minutes``) and per
  organization and owner (``chart_lateness_minutes``: percentiles do not add up,
  so each scope a chart draws has its own rows);
- ``queue_depth_samples``: the queue's depth, sampled once a minute. Depth is
  a state, not an event: rebuilding it from timelines would mean replaying every
  live email's events at every refresh, and ``prune`` deletes events, so it is
  sampled (a chart shows a gap where no worker ran the sampler).

A run recounts the minutes since its previous run plus ``OVERLAP`` (an event
committed a moment after its minute was counted is counted at the next run) and
moves the watermark ``chart_rollup.rolled_until`` to the current minute. The
readers take the rollup's minutes before the watermark and aggregate
``email_events`` itself after it (normally the current minute only), so a chart
is current to the second; the sent-lateness series and a user's week read the
rollup alone while it is current (``OWNER_LAG``), their latest events being too
dear to read at each refresh at a peak of sends. docs/operators-charts.md has the query plans and
figures.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import psycopg

from tasks.core import db, errors
from tasks.domain.models import Scope

#: The operators' ranges, in minutes (one point per minute).
RANGES = {"1h": 60, "24h": 24 * 60}
#: Rollup rows and samples are kept this long: a user's 7 local days, whatever their zone.
KEEP = dt.timedelta(days=8)
#: Minutes recounted at each run before the previous watermark (late commits).
OVERLAP = dt.timedelta(minutes=2)
#: A catch-up (first run, or after the workers were stopped a while) goes this far per transaction.
CHUNK = dt.timedelta(hours=6)
#: "Retried" in the operators' charts: every attempt put back to wait after a
#: temporary error or a stopped worker.
RETRIED = ("retry_scheduled", "recovered")
#: Event kinds counted in ``chart_minutes`` (rate-limit waits have their own table).
KINDS = ("sent", "failed", *RETRIED, "claimed")
#: Kinds counted per owner, for each user's chart.
OWNER_KINDS = ("sent", "failed")
#: The operators' series, in the JSON's order.
SERIES = (
    "sent", "failed", "retried", "late_p50_ms", "late_p99_ms", "due", "waiting", "sending",
    "sent_late_p50_ms", "sent_late_p95_ms", "sent_late_p99_ms", "sent_late_over_1m",
)  # fmt: skip
#: A lateness chart's series (``lateness``), in the JSON's order.
LATENESS_SERIES = ("sent", "p50_ms", "p95_ms", "p99_ms", "over_1m")
#: A user's chart, and every sent-lateness series, read only the rollup while its
#: watermark is at most this old.
OWNER_LAG = dt.timedelta(minutes=2)
#: Days in a user's chart, today included.
OWNER_DAYS = 7


async def rollup(conn: db.AsyncConn, *, keep: dt.timedelta = KEEP) -> dict[str, Any]:
    """Bring the rollups up to the current minute, sample the queue's depth, drop old rows.

    Each chunk is one transaction holding the watermark's row lock, so runs that
    overlap (a slow one, a manual one) take turns instead of counting twice.
    Returns what it did, for the log.
    """
    counted, rolled_until = 0, None  # rolled_until: where this run left the watermark
    for _ in range(int(keep / CHUNK) + 2):  # bounded: a catch-up of ``keep`` at most
        async with conn.transaction():
            state = await db.one_async(conn, "chart_rollup_lock")
            assert state is not None  # the migration inserts the one row
            now_minute: dt.datetime = state["now_minute"]
            floor = now_minute - keep
            start = max((state["rolled_until"] or floor) - OVERLAP, floor)
            end = min(start + CHUNK, now_minute)
            if start >= end:
                break
            await db.run_async(conn, "chart_rollup_clear", start=start, end=end)
            counted += await db.run_async(
                conn, "chart_rollup_minutes", start=start, end=end, kinds=list(KINDS), retried=list(RETRIED)
            )
            await db.run_async(conn, "chart_rollup_waits", start=start, end=end)
            await db.run_async(conn, "chart_rollup_owners", start=start, end=end, owner_kinds=list(OWNER_KINDS))
            await db.run_async(conn, "chart_rollup_lateness", start=start, end=end)
            await db.run_async(conn, "chart_rollup_done", end=end)
            rolled_until = end
        if end >= now_minute:
            break
    depth = await db.one_async(conn, "queue_depth_sample")
    await db.run_async(conn, "chart_rollup_prune", before=floor)
    return {"rows": counted, "rolled_until": rolled_until.isoformat() if rolled_until else None, "depth": depth}


def _current(rolled_until: dt.datetime | None, now_minute: dt.datetime) -> bool:
    """Tell whether the rollup is current enough (``OWNER_LAG``) for the reads that skip the latest events."""
    return rolled_until is not None and rolled_until >= now_minute - OWNER_LAG


def _window(conn: db.Conn, range_key: str) -> tuple[dt.datetime | None, dict[str, dt.datetime], bool]:
    """The minutes a chart over ``range_key`` (``RANGES``) reads: the rollup's watermark; the window
    (``start``, ``last``: the current minute; the rollup answers for [start, ``rolled_until``), the
    events themselves from ``latest`` on); and whether the rollup is current (``_current``)."""
    if range_key not in RANGES:
        raise errors.ValidationError(f"range must be one of {', '.join(RANGES)}", field="range")
    rolled_until, now_minute = _state(conn)
    start = now_minute - dt.timedelta(minutes=RANGES[range_key] - 1)
    upto = min(rolled_until, now_minute + dt.timedelta(minutes=1)) if rolled_until else start
    window = {"start": start, "last": now_minute, "rolled_until": upto, "latest": max(upto, start)}
    return rolled_until, window, _current(rolled_until, now_minute)


def _state(conn: db.Conn) -> tuple[dt.datetime | None, dt.datetime]:
    row = db.one(conn, "chart_rollup_state")
    assert row is not None
    return row["rolled_until"], row["now_minute"]


def operators(conn: db.Conn, range_key: str) -> dict[str, Any]:
    """Return the operators' charts over ``range_key`` (``RANGES``), one point per minute.

    Columns in uPlot's shape: ``t`` (Unix seconds, each minute's start, the
    current minute last) and one list per series, aligned with it. Counts are 0
    in a quiet minute; lateness is null in a minute without claims, depth is
    null in a minute without a sample. The database builds the columns (one row
    back, however many events), so 24 hours cost about as little as one.
    """
    rolled_until, window, current = _window(conn, range_key)
    # Sent lateness joins each sent event to its email: from the rollup alone while it is current.
    late_latest = None if current else window["latest"]
    row = db.one(conn, "chart_series", kinds=list(KINDS), retried=list(RETRIED), late_latest=late_latest, **window)
    assert row is not None  # an aggregate without GROUP BY: always one row
    rate_limited: dict[str, list[int]] = {}
    first = row["t"][0]
    for wait in db.all_rows(conn, "chart_waits", **window):
        values = rate_limited[wait["transport"] or "(none)"] = [0] * RANGES[range_key]
        for t, n in zip(wait["t"], wait["n"], strict=True):
            values[(t - first) // 60] += n
    series = {name: row[name] for name in SERIES}
    return {
        "range": range_key,
        "step_seconds": 60,
        "t": row["t"],
        "rolled_until": rolled_until.isoformat() if rolled_until else None,
        "totals": {name: sum(series[name]) for name in ("sent", "failed", "retried", "sent_late_over_1m")}
        | {"rate_limited": sum(sum(v) for v in rate_limited.values())},
        "series": series,
        "rate_limited": rate_limited,
    }


def lateness(conn: db.Conn, scope: Scope, range_key: str) -> dict[str, Any]:
    """Return the sent lateness of ``scope``'s emails over ``range_key`` (``RANGES``), per minute.

    The organization's emails (``scope.mine`` false: what its outbox lists to every
    member) or only the signed-in user's own. Per minute of sending: how many were
    sent, the exact p50/p95/p99 of how late they went out (ms; null in a minute
    without a send) and how many went out more than a minute late. The rollup's
    rows before the watermark; the latest events only while the rollup is behind
    (``OWNER_LAG``): each would be joined to its email, 0.3-1 s at a peak minute,
    so the current minute shows at the next run, as a user's week does.
    """
    if scope.org_id is None or scope.user_id is None:
        raise ValueError("a lateness chart is one organization's")  # operators read operators()
    rolled_until, window, current = _window(conn, range_key)
    row = db.one(
        conn, "chart_lateness", **(window | {"latest": None if current else window["latest"]}),
        org_id=scope.org_id, owner_id=scope.user_id, owner_key=scope.user_id if scope.mine else 0,
        mine_only=scope.mine,
    )  # fmt: skip
    assert row is not None  # an aggregate without GROUP BY: always one row
    series = {name: row[name] for name in LATENESS_SERIES}
    return {
        "range": range_key,
        "step_seconds": 60,
        "mine": scope.mine,
        "t": row["t"],
        "rolled_until": rolled_until.isoformat() if rolled_until else None,
        "totals": {"sent": sum(series["sent"]), "over_1m": sum(series["over_1m"])},
        "series": series,
    }


def zone(name: str) -> zoneinfo.ZoneInfo:
    """Return the IANA time zone ``name`` (the browser's), or say which field is wrong."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.ValidationError(f"unknown time zone {name[:64]!r}", field="tz") from exc


def owner_days(conn: db.Conn, org_id: int, owner_id: int, tz: str, *, days: int = OWNER_DAYS) -> dict[str, Any]:
    """Return one user's sent and failed emails per day, over the last ``days`` days in zone ``tz``.

    Only that owner's emails are counted: the rollup rows are read by owner, and
    the latest events are joined to their emails and filtered by owner. While
    the rollup is current (``OWNER_LAG``) the latest events are not read at all:
    a day's bar may be a minute or two behind, and the chart costs the same at a
    peak of sends as when idle (every user's dashboard asks for it).
    """
    local = zone(tz)
    rolled_until, now_minute = _state(conn)
    today = now_minute.astimezone(local).date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=local).astimezone(dt.UTC)
    upto = max(rolled_until, start) if rolled_until else start
    current = _current(rolled_until, now_minute)
    try:
        rows = db.all_rows(
            conn, "chart_owner_days", org_id=org_id, owner_id=owner_id, tz=tz, start=start, rolled_until=upto,
            latest=None if current else upto, owner_kinds=list(OWNER_KINDS),
        )  # fmt: skip
    except psycopg.errors.InvalidParameterValue as exc:  # a zone Python knows and PostgreSQL does not
        raise errors.ValidationError(f"unknown time zone {tz[:64]!r}", field="tz") from exc
    day_list = [first + dt.timedelta(days=i) for i in range(days)]
    index = {day: i for i, day in enumerate(day_list)}
    series = {kind: [0] * days for kind in OWNER_KINDS}
    for row in rows:
        i = index.get(row["day"])
        if i is not None:
            series[row["kind"]][i] += row["n"]
    return {
        "tz": tz,
        "days": [day.isoformat() for day in day_list],
        "series": series,
        "totals": {kind: sum(values) for kind, values in series.items()},
    }
