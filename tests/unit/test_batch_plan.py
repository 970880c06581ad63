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

    assert [r.to for r in plan.recipients] == ["a@example.com", "b@example.com", "c@example.com"]
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


@pytest.mark.parametrize(
    "fields",
    [{}, {"first_name": "Ada"}, {"first_name": "Zoë ✓", "company": "日本"}, {"first_name": "\ud800"}],
)
def test_a_templates_size_is_known_without_rendering_it(fields: dict[str, str]) -> None:
    template = batch_plan.Template.parse("Hé {{ first_name }}, {{company}} and {{FIRST_NAME}}!")
    rendered = template.render(fields)

    assert template.size(fields) == len(rendered.encode("utf-8", "surrogatepass"))
    assert template.length(fields) == len(rendered)
    assert rendered == batch_plan.render("Hé {{ first_name }}, {{company}} and {{FIRST_NAME}}!", fields)


def test_the_emails_are_rendered_in_chunks_bounded_by_size_and_count() -> None:
    plan = batch_plan.prepare(
        settings=SETTINGS,
        recipients=[{"email": f"r{i}@example.com", "n": "x" * (i * 10)} for i in range(10)],
        subject="S{{n}}",
        body_text="{{email}} {{n}}",
    )
    sizes = [r.size for r in plan.recipients]

    by_size = list(plan.chunks(max_bytes=sizes[-1] * 2, max_count=100))
    by_count = list(plan.chunks(max_bytes=10**9, max_count=3))
    tiny = list(plan.chunks(max_bytes=1, max_count=100))

    for chunks in (by_size, by_count, tiny):
        assert [p.to for chunk in chunks for p in chunk] == [f"r{i}@example.com" for i in range(10)]
    assert all(sum(len(p.subject) + len(p.body_text) for p in chunk) <= sizes[-1] * 2 for chunk in by_size)
    assert [len(c) for c in by_count] == [3, 3, 3, 1]
    assert [len(c) for c in tiny] == [1] * 10  # one email over the size is a chunk of its own
    assert plan.rendered_bytes == sum(sizes)
    assert plan.render(plan.recipients[4]).body_text == "r4@example.com " + "x" * 40


def test_a_rows_body_over_1_mb_is_rejected_and_the_rest_go() -> None:
    plan = batch_plan.prepare(
        settings=SETTINGS,
        recipients=[{"email": "a@example.com", "note": "x" * (1024 * 1024)}, {"email": "b@example.com", "note": "x"}],
        subject="S",
        body_text="{{note}}!",
    )

    assert [r.to for r in plan.recipients] == ["b@example.com"]
    assert [(r.line, r.reason) for r in plan.rejected] == [(1, "the body would be over 1 MB")]


def test_a_batch_over_its_rendered_size_is_refused_naming_the_setting() -> None:
    small = config.load({"BATCH_MAX_RENDERED_BYTES": str(1024 * 1024)})
    rows = [{"email": f"r{i}@example.com"} for i in range(3)]

    with pytest.raises(errors.ValidationError) as info:
        batch_plan.prepare(settings=small, recipients=rows, subject="S", body_text="x" * 400_000)

    assert info.value.field == "body_text"
    assert "1 MB" in info.value.message and "BATCH_MAX_RENDERED_BYTES" in info.value.message
    assert (
        len(batch_plan.prepare(settings=small, recipients=rows[:2], subject="S", body_text="x" * 400_000).recipients)
        == 2
    )


@pytest.mark.parametrize(
    ("field", "template", "words"),
    [
        ("subject", "x" * 999, "998"),
        ("body_text", "x" * (1024 * 1024 + 1), "1 MB"),
        ("body_text", "{{email}}" * 1001, "1000 placeholders"),
        ("subject", "{{email}}" * 1001, "998"),
    ],
)
def test_a_template_over_its_limits_is_refused_before_the_list_is_read(field: str, template: str, words: str) -> None:
    fields = {"subject": "S", "body_text": "B"} | {field: template}

    with pytest.raises(errors.ValidationError) as info:
        batch_plan.prepare(
            settings=SETTINGS, csv_text="not,a,list\n", subject=fields["subject"], body_text=fields["body_text"]
        )

    assert info.value.field == field
    assert words in info.value.message


def test_a_row_whose_subject_would_break_the_header_is_rejected_saying_what_is_wrong() -> None:
    """The reason says what the row's subject would contain, not the rule turned inside out."""
    csv_text = 'email,name\na@example.com,Ada\nb@example.com,"Bob\x07"\nc@example.com,"Cy\r\nBcc: x@evil.test"\n'

    plan = batch_plan.prepare(settings=SETTINGS, csv_text=csv_text, subject="Hi {{name}}", body_text="x")

    assert [r.to for r in plan.recipients] == ["a@example.com"]
    assert [(r.value, r.reason) for r in plan.rejected] == [
        ("b@example.com", "the subject would contain control characters"),
        ("c@example.com", "the subject would contain a line break (CR or LF)"),
    ]
