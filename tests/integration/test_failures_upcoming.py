"""The Failures and Upcoming views against real PostgreSQL: grouping on crafted rows, each group's
link listing exactly its emails, the forecast's counts and its over-limit flags, and the scope
(another organization's emails never counted), through the domain, the pages and the API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from tasks.core import db
from tasks.core.config import RateWindow, Settings
from tasks.delivery import send
from tasks.domain import emails, failures, listing, org_settings, orgs, search, upcoming
from tasks.domain.models import in_org
from tasks.domain.orgs import Role
from tests.support.openapi_check import check

NOW = dt.datetime.now(dt.UTC)
HOUR = dt.timedelta(hours=1)


def _email(
    conn: db.Conn,
    org: int,
    owner: int,
    *,
    status: str,
    to: str = "ann@acme.example",
    error: str | None = None,
    failed: dt.timedelta = -HOUR / 2,
    created: dt.timedelta = -2 * HOUR,
    due: dt.timedelta = HOUR,
    transport: str | None = "smtp",
    delivery: str | None = None,
    bounce: str | None = None,
    detail: str | None = None,
    subject: str = "Hello",
) -> uuid.UUID:
    """Insert one email as it would stand: failed ``failed`` ago, due at ``due`` from now."""
    email_id = uuid.uuid4()
    conn.execute(
        """INSERT INTO emails (id, org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at,
                               next_attempt_at, status, message_id, last_error, transport, created_at, updated_at,
                               data_started_at, sent_at, delivery, delivery_at, bounce_type, delivery_detail)
           VALUES (%s, %s, %s, 'team@acme.example', %s, %s, 'body', %s, %s, %s, %s, %s, %s, %s, %s,
                   %s, %s, %s, %s, %s, %s)""",
        (
            email_id,
            org,
            owner,
            [to],
            subject,
            NOW + due,
            NOW + due,
            status,
            f"<{email_id}@test>",
            error,
            transport,
            NOW + created,
            NOW + failed,
            NOW + failed if status in ("uncertain", "sent") else None,
            NOW + failed if status == "sent" else None,
            delivery,
            NOW + failed if delivery else None,
            bounce,
            detail,
        ),
    )
    return email_id


def _users(conn: db.Conn) -> tuple[int, int, int, int, int]:
    """Alice and Bob in one organization, Carol in another: (org_a, org_b, alice, bob, carol)."""
    alice = emails.ensure_user(conn, email="alice@example.com", name="Alice")
    bob = emails.ensure_user(conn, email="bob@example.com", name="Bob")
    carol = emails.ensure_user(conn, email="carol@example.com", name="Carol")
    org_a, org_b = orgs.personal_org_id(conn, alice.id), orgs.personal_org_id(conn, carol.id)
    orgs.add_member(conn, org_a, bob, Role.MEMBER)
    return org_a, org_b, alice.id, bob.id, carol.id


def _as_web(conn: db.Conn, org: int) -> None:
    """Act as the web app does: role reach_web, row-level security on, in ``org``."""
    conn.execute("SET ROLE reach_web")
    conn.execute("SELECT set_config('app.org_id', %s, false)", (str(org),))


def _crafted_failures(conn: db.Conn, org_a: int, org_b: int, alice: int, bob: int, carol: int) -> dict[str, Any]:
    refused = "RCPT TO: 550 5.1.1 mailbox unavailable"
    ids: dict[str, Any] = {
        # Three refusals alike: two in the last hour, one about three and a half hours ago.
        "refused": [
            _email(conn, org_a, alice, status="failed", to="x@gone.example", error=refused, failed=-3.5 * HOUR),
            _email(conn, org_a, bob, status="failed", to="y@gone.example", error=refused, failed=-0.6 * HOUR),
            _email(conn, org_a, alice, status="failed", to="z@gone.example", error=refused, failed=-0.2 * HOUR),
        ],
        "gave_up": _email(
            conn,
            org_a,
            alice,
            status="failed",
            to="q@slow.example",
            error="gave up after 5 attempts; last error: DATA: 451 4.7.1 try again later",
        ),
        "uncertain": _email(
            conn, org_a, bob, status="uncertain", error="the connection was lost after DATA began: timeout"
        ),
        "other": _email(conn, org_a, bob, status="failed", to="no@acme.example", error="connection refused"),
        "suppressed": _email(
            conn, org_a, alice, status="failed", to="no@acme.example", error=send.SUPPRESSED_REASON + "no@acme.example"
        ),
        "bounced": _email(
            conn,
            org_a,
            alice,
            status="sent",
            to="w@gone.example",
            delivery="bounced",
            bounce="hard",
            detail="smtp; 550 5.1.1 user unknown",
            transport="ses",
        ),
        # Outside the view: created before the window, or not a failure.
        "old": _email(conn, org_a, alice, status="failed", error=refused, created=-10 * 24 * HOUR),
        "delivered": _email(conn, org_a, alice, status="sent", delivery="delivered"),
        "scheduled": _email(conn, org_a, alice, status="scheduled"),
    }
    # Carol's organization: the same refusal, and one to a domain only she writes to.
    _email(conn, org_b, carol, status="failed", to="x@gone.example", error=refused)
    _email(conn, org_b, carol, status="failed", to="x@leak.example", error="DATA: 554 5.7.1 rejected")
    return ids


def _key(g: failures.Group) -> tuple[Any, ...]:
    return (g.kind, g.code, g.enhanced, g.error_class, g.transport, g.domain)


def test_failures_are_grouped_by_cause_in_the_organization_only(conn: db.Conn) -> None:
    org_a, org_b, alice, bob, carol = _users(conn)
    ids = _crafted_failures(conn, org_a, org_b, alice, bob, carol)
    _as_web(conn, org_a)

    found = failures.report(conn, in_org(org_a, alice), now=NOW)

    groups = {_key(g): g for g in found.groups}
    assert set(groups) == {
        ("failed", 550, "5.1.1", "refused", "smtp", "gone.example"),
        ("failed", 451, "4.7.1", "retries exhausted", "smtp", "slow.example"),
        ("uncertain", None, None, "uncertain", "smtp", "acme.example"),
        ("failed", None, None, "suppressed", "smtp", "acme.example"),
        ("failed", None, None, "other", "smtp", "acme.example"),
        ("bounced", 550, "5.1.1", "bounce (hard)", "ses", "gone.example"),
    }
    assert found.total == 8
    refused = groups[("failed", 550, "5.1.1", "refused", "smtp", "gone.example")]
    assert found.groups[0] is refused and refused.count == 3
    # Two in the last hour, one in the hour three hours before it.
    assert refused.hourly[-1] == 2 and refused.hourly[-4] == 1 and sum(refused.hourly) == 3
    assert [e.id for e in refused.examples] == list(reversed(ids["refused"]))
    # Each group's link lists exactly its emails.
    for g in found.groups:
        page = listing.emails_page(
            conn, in_org(org_a, alice), view="all", q=g.query or None, delivery=g.delivery, limit=50
        )
        assert {e.id for e in page.emails} == {e.id for e in g.examples}, g.query
    assert refused.query == "status:failed code:550 code:5.1.1 domain:gone.example"

    # Bob's own only ("mine"): his refusal, his other failure and his uncertain email.
    mine = failures.report(conn, in_org(org_a, bob, mine=True), now=NOW)
    assert sorted((g.kind, g.error_class, g.count) for g in mine.groups) == [
        ("failed", "other", 1),
        ("failed", "refused", 1),
        ("uncertain", "uncertain", 1),
    ]

    # Carol's organization sees only its two.
    conn.execute("SELECT set_config('app.org_id', %s, false)", (str(org_b),))
    theirs = failures.report(conn, in_org(org_b, carol), now=NOW)
    assert theirs.total == 2 and {g.domain for g in theirs.groups} == {"gone.example", "leak.example"}


def _limited(settings: Settings) -> Settings:
    label = settings.mail_transports[0].label
    return dataclasses.replace(
        settings, rate_limits=((label, (RateWindow(3, 3600),)),), user_rate_limit=(RateWindow(2, 3600),)
    )


def test_upcoming_counts_per_hour_and_day_and_flags_what_exceeds_a_limit(conn: db.Conn, settings: Settings) -> None:
    org_a, org_b, alice, bob, carol = _users(conn)
    org_settings.set_quota(conn, org_a, None, 5)
    hour0 = NOW.replace(minute=0, second=0, microsecond=0)
    soon = hour0 + HOUR + dt.timedelta(minutes=30) - NOW
    # Two already due (a backlog: this hour), three of Alice's and one of Bob's next hour, one in five hours.
    for owner, due in [(alice, -2 * HOUR), (bob, -HOUR), (alice, soon), (alice, soon), (alice, soon), (bob, soon)]:
        _email(conn, org_a, owner, status="scheduled", due=due)
    _email(conn, org_a, bob, status="scheduled", due=5 * HOUR)
    _email(conn, org_a, bob, status="scheduled", due=3 * 24 * HOUR)
    _email(conn, org_a, bob, status="failed", due=soon)  # not scheduled: not counted
    for _ in range(10):  # Carol's organization's never count in Alice's
        _email(conn, org_b, carol, status="scheduled", due=soon)
    _as_web(conn, org_a)

    found = upcoming.forecast(conn, in_org(org_a, alice), _limited(settings), now=NOW)

    assert found.limits.transport_hour == 3 and found.limits.user_hour == 2 and found.limits.daily_quota == 5
    assert found.limits.transport_day == 72 and found.limits.user_day == 48  # 3/hour and 2/hour over a day
    assert [s.count for s in found.hours[:6]] == [2, 4, 0, 0, 0, 1]
    assert sum(s.count for s in found.hours) == 7
    assert [bool(s.over) for s in found.hours[:6]] == [False, True, False, False, False, False]
    assert found.hours[1].busiest_user == 3
    assert found.hours[1].over == ["transport limit: 4 > 3", "a user's limit: 3 > 2"]
    # Per UTC day: each email in its own day; the quota (5) and the day's transport capacity flag.
    expected: dict[dt.date, int] = {}
    for due in [-2 * HOUR, -HOUR, soon, soon, soon, soon, 5 * HOUR, 3 * 24 * HOUR]:
        day = max(NOW + due, hour0).date()
        expected[day] = expected.get(day, 0) + 1
    assert {s.start.date(): s.count for s in found.days if s.count} == expected
    assert len(found.days) == 7 and found.days[0].start == hour0.replace(hour=0)
    assert found.days[0].count >= 6 and found.days[0].over == [f"daily quota: {found.days[0].count} > 5"]
    for s in found.days:
        assert (f"daily quota: {s.count} > 5" in s.over) == (s.count > 5)

    # Alice's own only.
    mine = upcoming.forecast(conn, in_org(org_a, alice, mine=True), _limited(settings), now=NOW)
    assert [s.count for s in mine.hours[:2]] == [1, 3]


def test_capacity_reads_each_window_over_an_hour_and_a_day() -> None:
    assert upcoming.capacity((RateWindow(5, 1),), 3600) == 18000
    assert upcoming.capacity((RateWindow(2000, 86400), RateWindow(50, 3600)), 3600) == 50
    assert upcoming.capacity((RateWindow(2000, 86400),), 3600) == 2000
    assert upcoming.capacity((), 3600) is None


def test_the_pages_and_the_api_show_the_callers_organization_only(
    client: FlaskClient, sign_in: Callable[..., Any], database_url: str
) -> None:
    carol_user = sign_in(client, "carol@example.com", name="Carol")
    with db.connect(database_url) as conn:
        org_a, org_b, alice, bob, carol = _users(conn)
        assert carol == carol_user.id
        _crafted_failures(conn, org_a, org_b, alice, bob, carol)
        _email(conn, org_b, carol, status="scheduled", due=HOUR / 4, subject="Carol's")
        _email(conn, org_a, alice, status="scheduled", due=HOUR / 4)

    page = client.get("/failures").get_data(as_text=True)
    assert "leak.example" in page and 'class="failure-group"' in page
    assert page.count('class="failure-group"') == 2 and "slow.example" not in page
    assert "/?view=all&amp;q=status:failed+code:554+code:5.7.1+domain:leak.example" in page

    api = client.get("/api/v1/failures")
    assert api.status_code == 200
    check("get", "/failures", 200, api.json)
    assert api.json is not None and api.json["total"] == 2

    ahead = client.get("/api/v1/upcoming")
    assert ahead.status_code == 200
    check("get", "/upcoming", 200, ahead.json)
    assert ahead.json is not None and sum(h["count"] for h in ahead.json["hours"]) == 1

    upcoming_page = client.get("/upcoming")
    assert upcoming_page.status_code == 200 and 'id="upcoming-hours"' in upcoming_page.get_data(as_text=True)

    wrong = client.get("/api/v1/upcoming?mine=maybe")
    assert wrong.status_code == 422 and wrong.json is not None and wrong.json["error"]["field"] == "mine"


def test_a_groups_search_always_fits_in_a_query() -> None:
    long = failures.Group(
        kind="failed", code=550, enhanced=None, error_class="refused", transport="", domain="d" * 190 + ".example"
    )
    other = failures.Group(kind="failed", code=None, enhanced=None, error_class="other", transport="", domain="a.b")

    assert long.query == "status:failed code:550"  # the domain left out: a wider list, never an invalid query
    assert (
        other.query == 'status:failed !code:4xx !code:5xx !error:"gave up after" !error:"suppression list" domain:a.b'
    )
    assert len(other.query) <= search.MAX_QUERY
