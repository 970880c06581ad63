"""Recurrence rules: presets, checks, and the semantics across DST changes and downtime."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import pytest

from tasks.core import errors
from tasks.domain import recurrence_rules as rules
from tasks.domain.recurrence_rules import Rule
from tasks.queue import occurrences

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
UTC = dt.UTC


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=PARIS).astimezone(UTC)


def rule(cron: str, start: dt.datetime, tz: str = "Europe/Paris", **kw: Any) -> Rule:
    return Rule(cron=cron, preset=None, time_zone=tz, starts_at=start, **kw)


@pytest.mark.parametrize(
    ("preset", "cron", "words"),
    [
        ({"kind": "daily", "time": "09:00"}, "0 9 * * *", "Every day at 09:00"),
        ({"kind": "weekdays", "time": "9:30"}, "30 9 * * 1-5", "Every weekday at 09:30"),
        (
            {"kind": "weekly", "days": ["thu", "mon"], "time": "18:05"},
            "5 18 * * 1,4",
            "Every week on Monday and Thursday at 18:05",
        ),
        ({"kind": "monthly", "day": 15, "time": "08:00"}, "0 8 15 * *", "Every month on day 15 at 08:00"),
        ({"kind": "monthly", "day": "last", "time": "08:00"}, "0 8 L * *", "Every month on the last day at 08:00"),
        (
            {"kind": "monthly", "weekday": "mon", "nth": 2, "time": "08:00"},
            "0 8 * * 1#2",
            "Every month on the second Monday at 08:00",
        ),
        (
            {"kind": "monthly", "weekday": "fri", "nth": "last", "time": "08:00"},
            "0 8 * * 5L",
            "Every month on the last Friday at 08:00",
        ),
        ({"kind": "hourly", "every": 6, "minute": 15}, "15 */6 * * *", "Every 6 hours at minute 15"),
        ({"kind": "hourly"}, "0 * * * *", "Every hour at minute 00"),
    ],
)
def test_presets_are_cron_expressions_and_read_in_plain_words(preset: dict[str, Any], cron: str, words: str) -> None:
    assert rules.preset_cron(preset) == cron
    assert rules.describe(cron, preset) == words
    rules.check_cron(cron)


@pytest.mark.parametrize(
    ("preset", "dates"),
    [
        # The last day: 28 February in 2027, 29 in 2028.
        ({"kind": "monthly", "day": "last", "time": "08:00"}, ["2027-11-30", "2027-12-31", "2028-01-31", "2028-02-29"]),
        ({"kind": "monthly", "weekday": "mon", "nth": 1, "time": "08:00"}, ["2027-11-01", "2027-12-06", "2028-01-03"]),
        ({"kind": "monthly", "weekday": "tue", "nth": 2, "time": "08:00"}, ["2027-11-09", "2027-12-14", "2028-01-11"]),
        ({"kind": "monthly", "weekday": "wed", "nth": 4, "time": "08:00"}, ["2027-11-24", "2027-12-22", "2028-01-26"]),
        # Only the months that have a fifth Monday.
        ({"kind": "monthly", "weekday": "mon", "nth": 5, "time": "08:00"}, ["2027-11-29", "2028-01-31", "2028-05-29"]),
        (
            {"kind": "monthly", "weekday": "fri", "nth": "last", "time": "08:00"},
            ["2027-11-26", "2027-12-31", "2028-01-28"],
        ),
        (
            {"kind": "weekdays", "time": "08:00"},
            ["2027-11-01", "2027-11-02", "2027-11-03", "2027-11-04", "2027-11-05", "2027-11-08"],
        ),
    ],
)
def test_monthly_and_weekday_presets_fire_on_the_days_they_name(preset: dict[str, Any], dates: list[str]) -> None:
    start = paris(2027, 11, 1)
    got = rule(rules.preset_cron(preset), start).preview(start, len(dates))
    assert [f"{g.astimezone(PARIS):%Y-%m-%d %H:%M}" for g in got] == [f"{d} 08:00" for d in dates]


def test_every_n_hours_keeps_its_local_hours_across_dst() -> None:
    """Every 6 hours at minute 15: 00:15, 06:15, 12:15, 18:15 local, the spring-forward night too."""
    start = paris(2027, 3, 27, 12, 0)
    got = rule(rules.preset_cron({"kind": "hourly", "every": 6, "minute": 15}), start).preview(start, 6)
    assert [f"{g.astimezone(PARIS):%d %H:%M}" for g in got] == [
        "27 12:15", "27 18:15", "28 00:15", "28 06:15", "28 12:15", "28 18:15",
    ]  # fmt: skip
    assert got[3] - got[2] == dt.timedelta(hours=5)  # the night one hour shorter


def test_summary_names_zone_end_and_count() -> None:
    r = Rule(
        cron="0 9 * * 1-5",
        preset={"kind": "weekdays", "time": "09:00"},
        time_zone="Europe/Paris",
        starts_at=paris(2027, 1, 1, 0, 0),
        ends_at=paris(2027, 6, 30, 23, 0),
    )
    assert r.summary() == "Every weekday at 09:00, Europe/Paris, until 30 June 2027"


@pytest.mark.parametrize(
    ("preset", "problem"),
    [
        ({"kind": "yearly"}, "kind must be one of"),
        ({"kind": "daily", "time": "24:00"}, "time must be HH:MM"),
        ({"kind": "weekly", "days": []}, "days must be"),
        ({"kind": "hourly", "every": 5}, "every must be one of"),
        ({"kind": "monthly", "day": 32}, "day must be 1 to 31"),
        ({"kind": "daily", "at": "09:00"}, "'at' is not a field"),
        ("daily", "must be an object"),
    ],
)
def test_bad_presets_say_why(preset: Any, problem: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        rules.preset_cron(preset)
    assert caught.value.field == "preset"
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("0 9 * *", "exactly 5 fields"),
        ("0 0 9 * * *", "exactly 5 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 0 30 2 *", "never fires"),
        ("nonsense here and there x", "not a valid cron expression"),
        ("", "must be a cron expression"),
    ],
)
def test_bad_cron_says_why(cron: str, problem: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        rules.check_cron(cron)
    assert caught.value.field == "cron"
    assert problem in caught.value.message


def test_a_rule_more_frequent_than_the_minimum_is_refused() -> None:
    now = paris(2027, 1, 1, 0, 0)
    with pytest.raises(errors.ValidationError) as caught:
        rules.check_rule(rule("*/2 * * * *", now), now=now, min_interval=300)
    assert caught.value.field == "cron" and "RECURRENCE_MIN_INTERVAL" in caught.value.message
    # Every minute for an hour, then nothing: still too frequent, however rare the hours.
    with pytest.raises(errors.ValidationError):
        rules.check_rule(rule("* 9 * * 1", now), now=now, min_interval=120)
    assert rules.check_rule(rule("*/5 * * * *", now), now=now, min_interval=300) == paris(2027, 1, 1, 0, 0)


def test_an_end_before_the_first_occurrence_never_fires() -> None:
    now = paris(2027, 1, 1, 10, 0)
    with pytest.raises(errors.ValidationError) as caught:
        rules.check_rule(rule("0 9 * * *", now, ends_at=paris(2027, 1, 1, 12, 0)), now=now, min_interval=60)
    assert caught.value.field == "ends_at" and "never fires" in caught.value.message
    with pytest.raises(errors.ValidationError) as caught:
        rules.check_rule(rule("0 9 * * *", now, ends_at=now - dt.timedelta(days=1)), now=now, min_interval=60)
    assert caught.value.field == "ends_at" and "after starts_at" in caught.value.message


def test_wall_clock_time_holds_across_dst() -> None:
    """09:00 Europe/Paris daily is 09:00 local on both sides: 08:00 UTC in winter, 07:00 in summer."""
    got = rule("0 9 * * *", paris(2027, 3, 26, 12, 0)).preview(paris(2027, 3, 26, 12, 0), 3)
    assert got == [
        dt.datetime(2027, 3, 27, 8, 0, tzinfo=UTC),
        dt.datetime(2027, 3, 28, 7, 0, tzinfo=UTC),
        dt.datetime(2027, 3, 29, 7, 0, tzinfo=UTC),
    ]
    assert [g.astimezone(PARIS).hour for g in got] == [9, 9, 9]


def test_dst_gap_runs_once_at_the_first_instant_after_the_gap() -> None:
    """02:30 does not exist on 2027-03-28 in Paris: it runs once, at 03:00 local (01:00 UTC)."""
    got = rule("30 2 * * *", paris(2027, 3, 27, 12, 0)).preview(paris(2027, 3, 27, 12, 0), 3)
    assert got == [
        dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC),  # 03:00 CEST, right after the gap
        dt.datetime(2027, 3, 29, 0, 30, tzinfo=UTC),  # 02:30 CEST
        dt.datetime(2027, 3, 30, 0, 30, tzinfo=UTC),
    ]
    # A rule that names 03:00 too still fires once at 03:00, not twice.
    both = rule("30 2,3 * * *", paris(2027, 3, 28, 0, 0)).preview(paris(2027, 3, 28, 0, 0), 2)
    assert both == [dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC), dt.datetime(2027, 3, 28, 1, 30, tzinfo=UTC)]


def test_dst_overlap_runs_once_at_the_first_of_the_two() -> None:
    """02:30 happens twice on 2027-10-31 in Paris: it runs once, at the first (00:30 UTC)."""
    got = rule("30 2 * * *", paris(2027, 10, 30, 12, 0)).preview(paris(2027, 10, 30, 12, 0), 2)
    assert got == [dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC), dt.datetime(2027, 11, 1, 1, 30, tzinfo=UTC)]


def test_count_and_end_bound_the_occurrences() -> None:
    start = paris(2027, 1, 1, 0, 0)
    assert len(rule("0 9 * * *", start, count=3).preview(start, 10)) == 3
    assert len(rule("0 9 * * *", start, count=3).preview(start, 10, made=2)) == 1
    ended = rule("0 9 * * *", start, ends_at=paris(2027, 1, 4, 9, 0)).preview(start, 10)
    assert ended[-1] == paris(2027, 1, 4, 9, 0) and len(ended) == 4


def test_placeholders_are_the_occurrence_in_its_zone() -> None:
    at = dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert rules.render("Report {{occurrence_date}} {{ occurrence_time }} {{other}}", at, "Europe/Paris") == (
        "Report 2027-03-28 03:00 {{other}}"
    )


def row(cron: str, next_at: dt.datetime, **kw: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "cron": cron,
        "preset": None,
        "time_zone": "Europe/Paris",
        "starts_at": next_at - dt.timedelta(days=30),
        "ends_at": None,
        "max_count": None,
        "made": 0,
        "next_at": next_at,
    } | kw


def test_downtime_sends_only_the_latest_missed_occurrence_within_catch_up() -> None:
    now = paris(2027, 5, 3, 12, 20)
    # Down since 08:50: hourly occurrences at 09, 10, 11 and 12 were missed.
    p = occurrences.plan(
        row("0 * * * *", paris(2027, 5, 3, 9, 0)), now=now, until=now + dt.timedelta(minutes=10), catch_up=3600
    )
    assert p.create == [paris(2027, 5, 3, 12, 0)]
    assert p.skips == [(paris(2027, 5, 3, 9, 0), paris(2027, 5, 3, 11, 0), 3, occurrences.SUPERSEDED)]
    assert p.next_at == paris(2027, 5, 3, 13, 0)


def test_downtime_longer_than_catch_up_sends_nothing_and_records_why() -> None:
    now = paris(2027, 5, 3, 12, 20)
    p = occurrences.plan(
        row("0 9 * * *", paris(2027, 5, 1, 9, 0)), now=now, until=now + dt.timedelta(minutes=10), catch_up=3600
    )
    assert p.create == []
    assert p.skips == [(paris(2027, 5, 1, 9, 0), paris(2027, 5, 3, 9, 0), 3, occurrences.TOO_OLD)]
    assert p.next_at == paris(2027, 5, 4, 9, 0)


def test_a_long_outage_of_a_frequent_rule_is_skipped_in_one_jump() -> None:
    now = paris(2027, 5, 3, 12, 0, 30)
    p = occurrences.plan(
        row("* * * * *", paris(2027, 1, 1, 0, 0)), now=now, until=now + dt.timedelta(minutes=2), catch_up=3600
    )
    assert p.create == [paris(2027, 5, 3, 12, 0), paris(2027, 5, 3, 12, 1), paris(2027, 5, 3, 12, 2)]
    assert p.skips == [(paris(2027, 1, 1, 0, 0), paris(2027, 5, 3, 11, 59), None, occurrences.SUPERSEDED)]


def test_plan_creates_occurrences_within_the_horizon_and_stops_at_the_count() -> None:
    now = paris(2027, 5, 3, 8, 0)
    p = occurrences.plan(
        row("*/5 * * * *", now, max_count=4, made=1), now=now, until=now + dt.timedelta(minutes=60), catch_up=3600
    )
    assert p.create == [now, now + dt.timedelta(minutes=5), now + dt.timedelta(minutes=10)]
    assert p.next_at is None


def test_skipped_occurrences_do_not_use_up_the_count() -> None:
    now = paris(2027, 5, 3, 12, 20)
    p = occurrences.plan(
        row("0 * * * *", paris(2027, 5, 3, 10, 0), max_count=2),
        now=now,
        until=now + dt.timedelta(hours=2),
        catch_up=3600,
    )
    assert p.create == [paris(2027, 5, 3, 12, 0), paris(2027, 5, 3, 13, 0)]
    assert p.skips == [(paris(2027, 5, 3, 10, 0), paris(2027, 5, 3, 11, 0), 2, occurrences.SUPERSEDED)]
    assert p.next_at is None  # the count is used up: it ends


def test_a_time_scale_runs_the_rule_faster_and_intervals_are_checked_in_rule_time() -> None:
    start = dt.datetime(2026, 6, 1, 0, 0, 1, tzinfo=UTC)
    rules.set_time_scale(20)
    try:
        got = rule("* * * * *", start, tz="UTC").preview(start, 3)
        assert [(b - a).total_seconds() for a, b in zip(got, got[1:], strict=False)] == [3.0, 3.0]
        assert rules.check_rule(rule("* * * * *", start, tz="UTC"), now=start, min_interval=60) == got[0]
    finally:
        rules.set_time_scale(1)
