"""Planning a send-to-a-list: spacing, placeholders, and per-line rejects."""

from __future__ import annotations

import datetime as dt

import pytest

from tasks.core import config, errors
from tasks.domain import batch_plan

START = dt.datetime(2030, 1, 1, 9, 0, tzinfo=dt.UTC)
SETTINGS = config.load({})


def test_spacing_keeps_the_minimum_delay() -> None:
    times = batch_plan.spacing(START, 4, 30, None)

    assert [(t - START).total_seconds() for t in times] == [0, 30, 60, 90]


def test_spacing_never_exceeds_the_hourly_cap_in_any_hour() -> None:
    times = batch_plan.spacing(START, 7, 0, 3)

    assert [(t - START).total_seconds() for t in times] == [0, 0, 0, 3600, 3600, 3600, 7200]


def test_spacing_combines_delay_and_cap() -> None:
    times = batch_plan.spacing(START, 5, 1000, 2)

    assert [(t - START).total_seconds() for t in times] == [0, 1000, 3600, 4600, 7200]


def test_placeholders_are_filled_per_row_and_missing_values_render_empty() -> None:
    assert batch_plan.render("Hi {{ first_name }}, {{company}}!", {"first_name": "Ada"}) == "Hi Ada, !"


def test_a_placeholder_without_a_column_is_refused_before_anything_else() -> None:
    with pytest.raises(errors.ValidationError) as info:
        batch_plan.prepare(settings=SETTINGS, csv_text="email\na@example.com\n", subject="Hi {{name}}", body_text="x")

    assert info.value.field == "subject"
    assert "{{name}}" in info.value.message


def test_pasted_addresses_may_be_separated_by_lines_commas_or_semicolons() -> None:
    plan = batch_plan.prepare(
        settings=SETTINGS,
        addresses="a@example.com, b@example.com\n\nc@example.com;a@example.com",
        subject="S",
        body_text="B",
    )

    assert [p.to for p in plan.items] == ["a@example.com", "b@example.com", "c@example.com"]
    assert [(r.line, r.reason) for r in plan.rejected] == [(3, "duplicate of line 1")]


def test_too_many_recipients_is_refused() -> None:
    small = config.load({"BATCH_MAX_RECIPIENTS": "2"})

    with pytest.raises(errors.ValidationError) as info:
        batch_plan.prepare(
            settings=small, addresses="a@example.com\nb@example.com\nc@example.com", subject="S", body_text="B"
        )

    assert info.value.field == "addresses"


def test_the_request_fingerprint_changes_with_the_content() -> None:
    def plan(subject: str) -> batch_plan.Plan:
        return batch_plan.prepare(settings=SETTINGS, addresses="a@example.com", subject=subject, body_text="B")

    assert plan("S").request_hash == plan("S").request_hash
    assert plan("S").request_hash != plan("T").request_hash
