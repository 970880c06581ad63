"""Every rule of schedule's validation, checked before the database is touched."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tasks.core import errors
from tasks.domain import validation, zones

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def validate(**overrides: Any) -> validation.Draft:
    fields: dict[str, Any] = {
        "to": ["bob@example.com"],
        "subject": "Hello",
        "body_text": "Hi",
        "send_at": NOW + dt.timedelta(hours=1),
        "now": NOW,
    }
    return validation.validate(**(fields | overrides))


def field_of(**overrides: Any) -> str | None:
    with pytest.raises(errors.ValidationError) as info:
        validate(**overrides)
    return info.value.field


def test_a_valid_request_is_normalised() -> None:
    draft = validate(to="Bob@Example.COM, carol@example.com", cc=["bob@example.com"], send_tz="Europe/Paris")

    assert draft.to == ("Bob@example.com", "carol@example.com")
    assert draft.cc == ()  # the duplicate recipient is dropped
    assert draft.send_tz == "Europe/Paris"
    assert draft.send_at.tzinfo is dt.UTC


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"to": ["not-an-address"]}, "to"),
        ({"to": []}, "to"),
        ({"to": [f"u{i}@example.com" for i in range(40)], "bcc": [f"b{i}@example.com" for i in range(11)]}, "to"),
        ({"cc": ["x@example.com\r\nBcc: victim@example.com"]}, "cc"),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"subject": "Hi\nthere"}, "subject"),
        ({"subject": "x" * 999}, "subject"),
        ({"subject": None}, "subject"),
        ({"body_text": "x" * (1024 * 1024 + 1)}, "body_text"),
        ({"body_text": "a", "body_html": "<p>" + "x" * (1024 * 1024) + "</p>"}, "body_text"),
        ({"body_text": "nul \x00 byte"}, "body_text"),
        ({"send_at": dt.datetime(2026, 11, 28, 13, 0)}, "send_at"),
        ({"send_at": "2026-11-28T13:00:00"}, "send_at"),
        ({"send_at": "tomorrow-ish"}, "send_at"),
        ({"send_at": NOW - dt.timedelta(minutes=2)}, "send_at"),
        ({"send_at": None}, "send_at"),
        ({"send_tz": "Mars/Olympus"}, "time_zone"),
        ({"send_tz": "../../etc/passwd"}, "time_zone"),
        ({"send_tz": "Europe"}, "time_zone"),  # a directory of the zone database
        ({"send_tz": "zone.tab"}, "time_zone"),  # a file of it that is no zone
        ({"send_at": "9999-12-31T23:00:00Z", "send_tz": "Pacific/Kiritimati"}, "send_at"),  # local: year 10000
        ({"send_at": "9999-12-31T23:00:00-05:00"}, "send_at"),  # UTC: year 10000
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
    ],
)
def test_each_rule_names_its_field(overrides: dict[str, Any], field: str) -> None:
    assert field_of(**overrides) == field


def test_a_time_within_a_minute_in_the_past_is_accepted() -> None:
    """A slow form or a little clock skew must not fail the request."""
    draft = validate(send_at=NOW - dt.timedelta(seconds=30))

    assert draft.send_at == NOW - dt.timedelta(seconds=30)


def test_a_past_time_is_explained_in_a_sentence_with_the_time_in_the_senders_zone() -> None:
    """Shown beside the date field: a capital, the moment as they read it, no ISO timestamp."""
    with pytest.raises(errors.ValidationError) as info:
        validate(send_at="2026-11-27T08:30:00Z", send_tz="Europe/Paris")

    expected = "This time is in the past: Fri 27 Nov 2026 09:30:00 CET. Pick a later time or send now."
    assert info.value.details == [{"field": "send_at", "message": expected}]
    assert info.value.message == f"send_at: {expected}"


def test_send_now_needs_no_time_and_rejects_one() -> None:
    assert validate(send_at=None, send_now=True).send_at == NOW
    assert field_of(send_now=True) == "send_at"


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(errors.ValidationError) as info:
        validate(to=["nope"], subject="a\nb", send_at=None)

    assert [d["field"] for d in info.value.details] == ["to", "subject", "send_at"]


def test_the_request_hash_ignores_the_key_and_sees_the_content() -> None:
    a = validate(idempotency_key="k1")
    b = validate(idempotency_key="k2")
    c = validate(idempotency_key="k1", subject="Other")

    assert a.request_hash() == b.request_hash()
    assert a.request_hash() != c.request_hash()


@pytest.mark.parametrize("name", ["Europe", "America/Argentina", "zone.tab", "", "Europe/", "/etc/localtime", "a\x00b"])
def test_a_name_that_is_no_zone_is_none_whatever_zoneinfo_raises(name: str) -> None:
    assert zones.zone(name) is None
    assert not validation.valid_time_zone(name)


def test_a_send_time_must_be_a_date_in_its_zone_too() -> None:
    last_hour = dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.UTC)

    assert validation.local_time_problem(last_hour, "UTC") is None
    assert validation.local_time_problem(last_hour, "America/New_York") is None
    assert "past the year 9999" in (validation.local_time_problem(last_hour, "Pacific/Kiritimati") or "")
    first_hour = dt.datetime(1, 1, 1, 0, 0, tzinfo=dt.UTC)
    assert "before the year 1" in (validation.local_time_problem(first_hour, "America/New_York") or "")
    assert validate(send_at=last_hour, send_tz="UTC").send_at == last_hour
