"""A recurrence's rule: presets as cron, checks, occurrences in a zone, and the rule in words.

Every rule is a 5-field cron expression, parsed and iterated by cronsim in an IANA zone
(``zoneinfo``); a preset is only a friendlier way to write one. cronsim gives the
semantics docs/recurring.md promises, as Debian's cron has them: a rule at a fixed local
time that falls in a spring-forward gap fires once, at the first instant after the gap,
and one that falls in a fall-back overlap fires once, at the first of the two; a rule
whose hour is a wildcard follows real time (every hour that happens).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
from collections.abc import Iterator
from typing import Any

from cronsim import CronSim, CronSimError

from tasks.core import errors
from tasks.domain.zones import local, zone

#: Day names as cron numbers them (0 = Sunday), the way presets name them.
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
PRESET_KINDS = ("daily", "weekdays", "weekly", "monthly", "hourly")
#: "Every N hours" only for N that divide a day, so every gap is N hours.
HOURLY_STEPS = (1, 2, 3, 4, 6, 8, 12)
#: How many occurrences the minimum-interval check looks at.
INTERVAL_SAMPLE = 500
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_PLACEHOLDER = re.compile(r"\{\{\s*occurrence_(date|time)\s*\}\}")


def _invalid(field: str, message: str) -> errors.ValidationError:
    return errors.ValidationError(f"{field}: {message}", field=field)


def _time(preset: dict[str, Any]) -> tuple[int, int]:
    raw = preset.get("time", "09:00")
    match = _TIME.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise _invalid("preset", "time must be HH:MM, from 00:00 to 23:59")
    return int(match[1]), int(match[2])


def preset_cron(preset: Any) -> str:
    """Return the cron expression a preset stands for, or raise ``ValidationError`` (field ``preset``).

    ``{"kind": "daily", "time": "09:00"}``, ``{"kind": "weekdays", ...}``,
    ``{"kind": "weekly", "days": ["mon", "thu"], ...}``, ``{"kind": "monthly", "day": 15 | "last", ...}``
    or ``{"kind": "monthly", "weekday": "mon", "nth": 1..5 | "last", ...}``,
    ``{"kind": "hourly", "every": 1|2|3|4|6|8|12, "minute": 0..59}``.
    """
    if not isinstance(preset, dict):
        raise _invalid("preset", 'must be an object such as {"kind": "daily", "time": "09:00"}')
    kind = preset.get("kind")
    if kind not in PRESET_KINDS:
        raise _invalid("preset", f"kind must be one of {', '.join(PRESET_KINDS)}")
    allowed = {
        "daily": {"kind", "time"},
        "weekdays": {"kind", "time"},
        "weekly": {"kind", "time", "days"},
        "monthly": {"kind", "time", "day", "weekday", "nth"},
        "hourly": {"kind", "every", "minute"},
    }[kind]
    for name in preset:
        if name not in allowed:
            raise _invalid("preset", f"{name!r} is not a field of a {kind} preset")
    if kind == "hourly":
        every, minute = preset.get("every", 1), preset.get("minute", 0)
        if type(every) is not int or every not in HOURLY_STEPS:
            raise _invalid("preset", f"every must be one of {', '.join(map(str, HOURLY_STEPS))} (hours)")
        if type(minute) is not int or not 0 <= minute <= 59:
            raise _invalid("preset", "minute must be a whole number from 0 to 59")
        return f"{minute} */{every} * * *" if every > 1 else f"{minute} * * * *"
    hour, minute = _time(preset)
    if kind == "daily":
        return f"{minute} {hour} * * *"
    if kind == "weekdays":
        return f"{minute} {hour} * * 1-5"
    if kind == "weekly":
        days = preset.get("days")
        if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
            raise _invalid("preset", f"days must be a non-empty list of {', '.join(DAYS)}")
        return f"{minute} {hour} * * {','.join(str(n) for n in sorted({DAYS.index(d) for d in days}))}"
    # monthly
    if "day" in preset:
        if "weekday" in preset or "nth" in preset:
            raise _invalid("preset", "give either day, or weekday with nth, not both")
        day = preset["day"]
        if day == "last":
            return f"{minute} {hour} L * *"
        if type(day) is not int or not 1 <= day <= 31:
            raise _invalid("preset", 'day must be 1 to 31, or "last"')
        return f"{minute} {hour} {day} * *"
    weekday, nth = preset.get("weekday"), preset.get("nth")
    if weekday not in DAYS:
        raise _invalid("preset", f"a monthly preset needs day, or weekday ({', '.join(DAYS)}) with nth")
    if nth == "last":
        return f"{minute} {hour} * * {DAYS.index(weekday)}L"
    if type(nth) is not int or nth not in ORDINALS:
        raise _invalid("preset", 'nth must be 1 to 5, or "last"')
    return f"{minute} {hour} * * {DAYS.index(weekday)}#{nth}"


def check_cron(expr: Any) -> str:
    """Return the expression normalised, or raise ``ValidationError`` (field ``cron``)."""
    if not isinstance(expr, str) or not expr.strip():
        raise _invalid("cron", "must be a cron expression of 5 fields, e.g. '0 9 * * 1-5'")
    fields = expr.split()
    if len(fields) != 5:
        raise _invalid("cron", f"must have exactly 5 fields (minute hour day month weekday), got {len(fields)}")
    normal = " ".join(fields)
    try:
        CronSim(normal, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except CronSimError as exc:
        if str(exc) == "Bad day-of-month" and fields[2].replace(",", "").isdigit():
            raise _invalid("cron", f"{normal!r} never fires: none of its months has that day") from None
        raise _invalid("cron", f"{normal!r} is not a valid cron expression: {exc}") from None
    except (ValueError, IndexError, KeyError):  # (cronsim's own checks miss a few malformed fields)
        raise _invalid("cron", f"{normal!r} is not a valid cron expression") from None
    return normal


#: Testing only (RECURRENCE_TIME_SCALE): rules run this many times faster than real time,
#: counted from TIME_ORIGIN. Set once per process by ``set_time_scale``; 1 everywhere else.
_time_scale = 1
TIME_ORIGIN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: The first days a date holds: no second before them to start from, nor a zone to show them in.
_FIRST = dt.datetime(1, 1, 3, tzinfo=dt.UTC)


def set_time_scale(scale: int) -> None:
    """Make rules run ``scale`` times faster than real time (RECURRENCE_TIME_SCALE, tests only)."""
    global _time_scale
    _time_scale = scale


def _to_rule_time(at: dt.datetime) -> dt.datetime:
    return at if _time_scale == 1 else TIME_ORIGIN + (at - TIME_ORIGIN) * _time_scale


def _to_real_time(at: dt.datetime) -> dt.datetime:
    return at if _time_scale == 1 else TIME_ORIGIN + (at - TIME_ORIGIN) / _time_scale


def occurrences(cron: str, time_zone: str, start: dt.datetime) -> Iterator[dt.datetime]:
    """Yield the rule's instants at or after ``start``, in UTC, strictly increasing."""
    tz = zone(time_zone)
    assert tz is not None, time_zone
    last: dt.datetime | None = None
    try:
        rule_start = _to_rule_time(start)
        local_start = (rule_start - dt.timedelta(seconds=1) if rule_start > _FIRST else rule_start).astimezone(tz)
        for local_at in CronSim(cron, local_start):
            at = _to_real_time(local_at.astimezone(dt.UTC))
            # A gap maps a time to the instant after it, which the rule may name too: once.
            if at < start or (last is not None and at <= last):
                continue
            last = at
            yield at
    except (StopIteration, RuntimeError, OverflowError):  # past the last year a date holds
        return


def latest_before(cron: str, time_zone: str, at: dt.datetime) -> dt.datetime | None:
    """The rule's last instant at or before ``at`` (iterating backwards), in UTC."""
    tz = zone(time_zone)
    assert tz is not None, time_zone
    try:
        for local_at in CronSim(cron, _to_rule_time(at).astimezone(tz), reverse=True):
            return _to_real_time(local_at.astimezone(dt.UTC))
    except (StopIteration, RuntimeError, OverflowError):
        return None
    return None


def min_gap_seconds(earlier: dt.datetime, later: dt.datetime) -> float:
    """The gap between two occurrences as the rule counts it (in rule time)."""
    return (later - earlier).total_seconds() * _time_scale


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rule:
    """When a recurrence fires: a cron in a zone, from a start, to an optional end or count."""

    cron: str
    preset: dict[str, Any] | None
    time_zone: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None = None
    count: int | None = None

    def upcoming(self, after: dt.datetime, *, made: int = 0) -> Iterator[dt.datetime]:
        """Yield the occurrences at or after ``after`` (and the start), within the end and the count."""
        left = None if self.count is None else self.count - made
        if left is not None and left <= 0:
            return
        for n, at in enumerate(occurrences(self.cron, self.time_zone, max(after, self.starts_at))):
            if (self.ends_at is not None and at > self.ends_at) or (left is not None and n >= left):
                return
            yield at

    def preview(self, after: dt.datetime, n: int, *, made: int = 0) -> list[dt.datetime]:
        return list(itertools.islice(self.upcoming(after, made=made), n))

    def summary(self) -> str:
        """The rule in plain words: "Every weekday at 09:00, Europe/Paris, until 30 June 2027"."""
        parts = [describe(self.cron, self.preset), self.time_zone]
        if self.ends_at is not None:
            end = local(self.ends_at, self.time_zone)
            parts.append(f"until {end.day} {end:%B %Y}")
        if self.count is not None:
            parts.append("once" if self.count == 1 else f"{self.count} times")
        return ", ".join(parts)


def describe(cron: str, preset: dict[str, Any] | None) -> str:
    """Say what a preset (or a raw cron) means, without its zone and bounds."""
    if preset is None:
        return f"On the cron schedule {cron}"
    kind = preset["kind"]
    if kind == "hourly":
        every, minute = preset.get("every", 1), preset.get("minute", 0)
        return f"Every {'hour' if every == 1 else f'{every} hours'} at minute {minute:02d}"
    hour, minute = _time(preset)
    at = f"at {hour:02d}:{minute:02d}"
    if kind == "daily":
        return f"Every day {at}"
    if kind == "weekdays":
        return f"Every weekday {at}"
    if kind == "weekly":
        names = [DAY_NAMES[DAYS.index(d)] for d in sorted(set(preset["days"]), key=DAYS.index)]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"Every week on {listed} {at}"
    if "day" in preset:
        day = preset["day"]
        return f"Every month on the last day {at}" if day == "last" else f"Every month on day {day} {at}"
    nth = "last" if preset["nth"] == "last" else ORDINALS[preset["nth"]]
    return f"Every month on the {nth} {DAY_NAMES[DAYS.index(preset['weekday'])]} {at}"


def check_rule(
    rule: Rule,
    *,
    now: dt.datetime,
    min_interval: float,
    field: str = "cron",
) -> dt.datetime:
    """Check that the rule fires, and never more often than ``min_interval`` seconds; return its first occurrence.

    Raises ``ValidationError`` on ``field`` (``cron`` or ``preset``), or on ``ends_at`` when
    the rule fires only before the start or after the end.
    """
    if rule.ends_at is not None and rule.ends_at <= rule.starts_at:
        raise _invalid("ends_at", "must be after starts_at")
    sample = list(itertools.islice(occurrences(rule.cron, rule.time_zone, rule.starts_at), INTERVAL_SAMPLE))
    if not sample:
        raise _invalid(field, "never fires: no date from its start on matches it")
    for earlier, later in itertools.pairwise(sample):
        gap = min_gap_seconds(earlier, later)
        if gap < min_interval:
            raise _invalid(
                field,
                f"fires every {gap:g} seconds at times ({earlier.isoformat()} then {later.isoformat()});"
                f" the shortest interval allowed is {min_interval:g} seconds (RECURRENCE_MIN_INTERVAL)",
            )
    first = next(rule.upcoming(now), None)
    if first is None:
        if rule.ends_at is not None:
            raise _invalid("ends_at", "the rule never fires between the start (or now) and the end")
        raise _invalid(field, "never fires after now")
    return first


def render(text: str, at: dt.datetime, time_zone: str) -> str:
    """Fill ``{{occurrence_date}}`` (YYYY-MM-DD) and ``{{occurrence_time}}`` (HH:MM) in the zone."""
    local_at = local(_to_rule_time(at), time_zone)
    return _PLACEHOLDER.sub(lambda m: local_at.strftime("%Y-%m-%d" if m[1] == "date" else "%H:%M"), text)
