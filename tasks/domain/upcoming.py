"""What will go out: a scope's scheduled emails per hour over the next 24 hours and per day over
7 days, against the limits that apply, so a backlog shows before it happens.

The limits are the ones the send gate enforces (tasks/delivery/gate.py): the rate limit of the
transport that sends first (the organization's own first transport when it has one, else the
first of ``MAIL_TRANSPORTS`` with ``RATE_LIMITS``), each user's ``USER_RATE_LIMIT``, and the
organization's daily quota (a UTC day, as the quota counts). A limit given over another
window is read as the most it lets through in an hour or a day: ``5/second`` lets 18,000 an
hour, ``2000/day`` at most 2,000 in any hour. A transport's limit is shared with every
organization that uses it, so an hour under it may still wait; an hour over it will.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from tasks.core import db
from tasks.core.config import RateWindow, Settings, parse_windows
from tasks.domain import org_settings
from tasks.domain.models import Scope

HOURS = 24
DAYS = 7
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def capacity(windows: tuple[RateWindow, ...], span: float) -> int | None:
    """Return the most these windows let through in ``span`` seconds (None: no limit)."""
    caps = [int(w.count * (span // w.seconds)) if w.seconds <= span else w.count for w in windows]
    return min(caps) if caps else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """What applies to one hour and one day: None where nothing limits."""

    #: Which transport's limit it is (its label), or None.
    transport: str | None
    transport_hour: int | None
    transport_day: int | None
    user_hour: int | None
    user_day: int | None
    daily_quota: int | None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Slot:
    """One hour or one day: how many will go, the busiest user's share, and what it exceeds."""

    start: dt.datetime
    count: int
    busiest_user: int
    over: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "count": self.count,
            "busiest_user": self.busiest_user,
            "over_limit": bool(self.over),
            "over": self.over,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Forecast:
    now: dt.datetime
    limits: Limits
    hours: list[Slot]
    days: list[Slot]

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "limits": self.limits.as_json(),
            "hours": [s.as_json() for s in self.hours],
            "days": [s.as_json() for s in self.days],
        }


def limits(conn: db.Conn, scope: Scope, settings: Settings) -> Limits:
    """Return the limits the scope's emails meet."""
    label: str | None = None
    windows: tuple[RateWindow, ...] = ()
    quota = None
    if scope.org_id is not None:
        found = org_settings.get(conn, scope.org_id)
        quota = found.daily_quota
        own = sorted(found.providers, key=lambda p: p.position)
        if own:
            label = own[0].label
            windows = parse_windows("rate_limit", own[0].rate_limit) if own[0].rate_limit else ()
    if label is None and settings.mail_transports:
        label = settings.mail_transports[0].label
        windows = settings.transport_limits(label)
    return Limits(
        transport=label if windows else None,
        transport_hour=capacity(windows, 3600),
        transport_day=capacity(windows, 86400),
        user_hour=capacity(settings.user_rate_limit, 3600),
        user_day=capacity(settings.user_rate_limit, 86400),
        daily_quota=quota,
    )


def _over(count: int, busiest: int, transport: int | None, user: int | None, quota: int | None) -> list[str]:
    over = []
    if transport is not None and count > transport:
        over.append(f"transport limit: {count} > {transport}")
    if user is not None and busiest > user:
        over.append(f"a user's limit: {busiest} > {user}")
    if quota is not None and count > quota:
        over.append(f"daily quota: {count} > {quota}")
    return over


def forecast(conn: db.Conn, scope: Scope, settings: Settings, *, now: dt.datetime | None = None) -> Forecast:
    """Return the scope's scheduled emails per hour (next 24) and per UTC day (next 7), with what they exceed.

    Emails already due (a backlog) count in the current hour and day.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    day0 = hour0.replace(hour=0)
    until = day0 + DAYS * DAY
    rows = db.all_rows(conn, "upcoming_by_hour", now=now, until=until, **scope.params())
    per_hour: dict[dt.datetime, dict[int, int]] = {}
    per_day: dict[dt.datetime, dict[int, int]] = {}
    for r in rows:
        at = r["hour"].astimezone(dt.UTC)
        by_owner = per_hour.setdefault(at, {})
        by_owner[r["owner_id"]] = by_owner.get(r["owner_id"], 0) + r["n"]
        day = per_day.setdefault(at.replace(hour=0), {})
        day[r["owner_id"]] = day.get(r["owner_id"], 0) + r["n"]
    lim = limits(conn, scope, settings)
    hours = []
    for i in range(HOURS):
        start = hour0 + i * HOUR
        owners = per_hour.get(start, {})
        count, busiest = sum(owners.values()), max(owners.values(), default=0)
        hours.append(
            Slot(
                start=start,
                count=count,
                busiest_user=busiest,
                over=_over(count, busiest, lim.transport_hour, lim.user_hour, None),
            )
        )
    days = []
    for i in range(DAYS):
        start = day0 + i * DAY
        owners = per_day.get(start, {})
        count, busiest = sum(owners.values()), max(owners.values(), default=0)
        days.append(
            Slot(
                start=start,
                count=count,
                busiest_user=busiest,
                over=_over(count, busiest, lim.transport_day, lim.user_day, lim.daily_quota),
            )
        )
    return Forecast(now=now, limits=lim, hours=hours, days=days)
