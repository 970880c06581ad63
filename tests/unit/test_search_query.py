"""The search language on its own: terms, each qualifier's values, negation, and errors that say where."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tasks.domain import search
from tasks.domain.models import Scope

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
SCOPE = Scope(org_id=7, user_id=42)


def compiled(query: str) -> tuple[str, dict[str, object]]:
    found = search.compile_query(query, SCOPE, now=NOW)
    return found.condition.as_string(None), found.params


def test_terms_keep_their_qualifier_negation_quotes_and_position() -> None:
    terms = search.tokenize('to:ann@  !status:sent "weekly report" subject:"a \\"b\\" c" !draft')

    assert terms == [
        search.Term("to", "ann@", False, 0),
        search.Term("status", "sent", True, 9),
        search.Term(None, "weekly report", False, 22),
        search.Term("subject", 'a "b" c', False, 38),
        search.Term(None, "draft", True, 58),
    ]


def test_qualifiers_are_read_whatever_their_case() -> None:
    assert search.tokenize("Subject:Hi") == [search.Term("subject", "Hi", False, 0)]


def test_an_empty_query_matches_everything() -> None:
    assert compiled("   ") == ("TRUE", {})


@pytest.mark.parametrize(
    ("query", "sql", "params"),
    [
        ("invoice", "(subject ILIKE %(s0)s OR recipients ILIKE %(s0)s)", {"s0": "%invoice%"}),
        ("subject:100%_off", "subject ILIKE %(s0)s", {"s0": "%100\\%\\_off%"}),
        ("to:ann@", "recipients ILIKE %(s0)s", {"s0": "%ann@%"}),
        ("error:timeout", "last_error ILIKE %(s0)s", {"s0": "%timeout%"}),
        ("status:failed,uncertain", "status = ANY(%(s0)s::text[])", {"s0": ["failed", "uncertain"]}),
        ("status:scheduled", "status = ANY(%(s0)s::text[])", {"s0": ["scheduled", "sending"]}),
        ("from:me", "owner_id = %(s0)s", {"s0": 42}),
        ("from:bob", "from_addr ILIKE %(s0)s OR owner_id IN (SELECT u.id FROM users u", {"s0": "%bob%"}),
        ("code:550", "reply_code BETWEEN %(s0)s AND %(s1)s", {"s0": 550, "s1": 550}),
        ("code:5xx", "BETWEEN %(s0)s AND %(s1)s", {"s0": 500, "s1": 599}),
        ("code:45x", "BETWEEN %(s0)s AND %(s1)s", {"s0": 450, "s1": 459}),
        ("code:5.1.1", "(last_error IS NOT NULL AND last_error ~ %(s0)s)", {"s0": "(^|[ :])5\\.1\\.1( |$)"}),
        ("domain:Example.com", "recipient_domains && %(s0)s::text[]", {"s0": ["example.com"]}),
        ("domain:b.net,@a.org", "recipient_domains && %(s0)s::text[]", {"s0": ["a.org", "b.net"]}),
        ("before:2026-12-01", "send_at < %(s0)s", {"s0": dt.datetime(2026, 12, 1, tzinfo=dt.UTC)}),
        ("after:-1h", "send_at >= %(s0)s", {"s0": NOW - dt.timedelta(hours=1)}),
        ("after:+2d", "send_at >= %(s0)s", {"s0": NOW + dt.timedelta(days=2)}),
        ("before:-30m", "send_at < %(s0)s", {"s0": NOW - dt.timedelta(minutes=30)}),
        ("after:-1w", "send_at >= %(s0)s", {"s0": NOW - dt.timedelta(weeks=1)}),
        ("after:today", "send_at >= %(s0)s", {"s0": dt.datetime(2026, 12, 5, tzinfo=dt.UTC)}),
        (
            "after:2026-12-01T09:30+01:00",
            "send_at >= %(s0)s",
            {"s0": dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)},
        ),
        ("batch:newsletter", "batch_id IN (SELECT b.id FROM batches b WHERE (%(any_org)s", {"s0": "%newsletter%"}),
        ("recurrence:standup", "recurrence_id IN (SELECT r.id FROM recurrences r", {"s0": "%standup%"}),
    ],
)
def test_each_qualifier_compiles_to_a_condition_with_its_value_as_a_parameter(
    query: str, sql: str, params: dict[str, object]
) -> None:
    text, got = compiled(query)

    assert sql in text
    assert got == params
    # Values are never in the SQL text.
    for value in params.values():
        if isinstance(value, str):
            assert value not in text


def test_an_id_names_one_batch_or_recurrence() -> None:
    some = uuid.uuid4()
    assert compiled(f"batch:{some}") == ("batch_id = %(s0)s", {"s0": some})
    assert compiled(f"recurrence:{some}") == ("recurrence_id = %(s0)s", {"s0": some})


def test_negation_keeps_rows_where_the_column_is_null_and_terms_are_all_required() -> None:
    text, params = compiled("!error:timeout status:failed")

    assert text == (
        "NOT coalesce((last_error IS NOT NULL AND last_error ILIKE %(s0)s), false) AND status = ANY(%(s1)s::text[])"
    )
    assert params == {"s0": "%timeout%", "s1": ["failed"]}


def test_markup_and_sql_in_a_value_are_only_text() -> None:
    text, params = compiled('subject:"x\'); DROP TABLE emails; --"')

    assert text == "subject ILIKE %(s0)s"
    assert params == {"s0": "%x'); DROP TABLE emails; --%"}


@pytest.mark.parametrize(
    ("query", "position", "reason"),
    [
        ("state:sent", 1, 'unknown qualifier "state:"'),
        ("hello re:lunch", 7, 'unknown qualifier "re:"'),
        ('subject:"open', 9, "this quote is never closed"),
        ('hello wor"ld', 10, "a quote must open a value"),
        ("to:", 1, "to: needs a value"),
        ('subject:""', 1, "subject: needs a value"),
        ("a !", 3, "! must be followed by what to leave out"),
        ("status:bogus", 1, 'status: "bogus" is not one of scheduled, sending, sent'),
        ("x !status:sent,nope", 4, 'status: "nope" is not one of'),
        ("code:5x5", 1, 'code: "5x5" is not a reply code'),
        ("code:abc", 1, 'code: "abc" is not a reply code'),
        ("domain:exa_mple.com", 1, 'domain: "exa_mple.com" is not a domain name'),
        ("after:yesterday", 1, 'after: "yesterday" is not a time'),
        ("before:2026-13-01", 1, 'before: "2026-13-01" is not a time'),
        ("after:-999999w", 1, "after: -999999w is too far"),
        ("x" * 201, 201, "at most 200 characters"),
        ("a\x00b", 2, "must not contain NUL characters"),
    ],
)
def test_an_invalid_query_says_where_and_why(query: str, position: int, reason: str) -> None:
    with pytest.raises(search.QueryError) as raised:
        search.compile_query(query, SCOPE, now=NOW)

    assert raised.value.field == "q"
    assert raised.value.position == position
    assert reason in raised.value.message
    assert raised.value.message.startswith("q: ") and raised.value.message.endswith(f"(at character {position})")


def test_from_me_needs_a_user() -> None:
    with pytest.raises(search.QueryError, match="from:me needs a signed-in user"):
        search.compile_query("from:me", Scope(org_id=None), now=NOW)


def test_a_query_naming_one_status_leads_with_it() -> None:
    """page_rows then reads the newest emails of that status first."""

    def lead(query: str) -> str | None:
        return search.compile_query(query, SCOPE, now=NOW).lead_status

    assert lead("status:failed to:ann") == "failed"
    assert lead("status:failed,uncertain") is None
    assert lead("status:scheduled") is None  # with sending
    assert lead("!status:failed") is None
    assert lead("to:ann") is None


@pytest.mark.parametrize(
    ("query", "bound"),
    [
        ("before:-1d", NOW - dt.timedelta(days=1) + search.BACKDATED),
        ("!after:-1d", NOW - dt.timedelta(days=1) + search.BACKDATED),  # send_at is never NULL
        ("before:-1d before:-3d status:sent", NOW - dt.timedelta(days=3) + search.BACKDATED),  # the earlier
        ("after:-2d before:-1d", NOW - dt.timedelta(days=1) + search.BACKDATED),
        ("after:-1d", None),
        ("!before:-1d", None),
        ("invoice", None),
        ("before:9999-12-31T23:59", None),  # an hour later is past the year 9999: no bound
    ],
)
def test_an_upper_bound_on_the_send_time_bounds_the_creation_time(query: str, bound: dt.datetime | None) -> None:
    """The newest emails that can match before: are those created before it plus BACKDATED (page_rows)."""
    assert search.compile_query(query, SCOPE, now=NOW).created_before == bound
