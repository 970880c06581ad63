"""Search against real PostgreSQL: each qualifier finds what it should and only in the caller's scope.

One data set for the module: an organization (Alice and Bob) and, in another organization, a
twin of every one of its emails (Carol's), so a query that leaked past its organization would
find a twin. Searches run as the web role (``reach_web``, row-level security on), as the web
app runs them, and the saved searches' rows are each user's own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tasks.core import db, errors
from tasks.domain import emails, listing, orgs, saved_searches, search
from tasks.domain.models import Scope, in_org
from tasks.domain.orgs import Role

NOW = dt.datetime.now(dt.UTC)
HOUR = dt.timedelta(hours=1)


@dataclasses.dataclass
class Data:
    url: str
    org_a: int
    org_b: int
    alice: int
    bob: int
    carol: int
    #: subject → id, Alice's organization's emails.
    ids: dict[str, uuid.UUID]
    twin_ids: set[uuid.UUID]
    batch_b: uuid.UUID


#: Alice's organization's emails: subject, owner, recipients, status, send_at offset, last_error, reply, in a batch.
ROWS: list[dict[str, Any]] = [
    {"subject": "Invoice 12", "owner": "alice", "to": ["ann@acme.example"], "status": "scheduled", "at": 24 * HOUR},
    {
        "subject": "Lunch Friday",
        "owner": "bob",
        "to": ["zed@example.org"],
        "cc": ["bo@acme.example"],
        "status": "sent",
        "at": -2 * HOUR,
        "reply": "250 2.0.0 OK queued",
    },
    {
        "subject": "Welcome",
        "owner": "alice",
        "to": ["nobody@gone.example"],
        "status": "failed",
        "at": -0.5 * HOUR,
        "error": "RCPT TO: 550 5.1.1 mailbox unavailable",
    },
    {
        "subject": "Report",
        "owner": "bob",
        "to": ["ann@acme.example"],
        "status": "uncertain",
        "at": -72 * HOUR,
        "error": "the connection was lost after DATA began: timeout",
    },
    {
        "subject": "Newsletter May",
        "owner": "alice",
        "to": ["x@news.example"],
        "status": "scheduled",
        "at": 48 * HOUR,
        "batch": True,
    },
    {
        "subject": "Retrying",
        "owner": "alice",
        "to": ["q@slow.example"],
        "status": "scheduled",
        "at": HOUR,
        "error": "DATA: 451 4.7.1 try again later",
    },
]


def _insert(conn: db.Conn, org: int, owner: int, row: dict[str, Any], batch: uuid.UUID | None) -> uuid.UUID:
    email_id = uuid.uuid4()
    # From when the data is made, not NOW (the tests' collection, maybe many minutes before): the
    # relative queries (after:-1h) are read when they run, a few minutes after this at most.
    at = dt.datetime.now(dt.UTC) + row["at"]
    status = row["status"]
    conn.execute(
        """INSERT INTO emails (id, org_id, owner_id, from_addr, to_addrs, cc_addrs, subject, body_text, send_at,
                               next_attempt_at, status, message_id, last_error, provider_reply, batch_id, sent_at,
                               data_started_at, job_id)
           VALUES (%s, %s, %s, 'Team <team@acme.example>', %s, %s, %s, 'body', %s, %s, %s, %s, %s, %s, %s, %s,
                   %s, NULL)""",
        (
            email_id,
            org,
            owner,
            row["to"],
            row.get("cc", []),
            row["subject"],
            at,
            at,
            status,
            f"<{email_id}@test>",
            row.get("error"),
            row.get("reply"),
            batch,
            at if status == "sent" else None,
            at if status == "uncertain" else None,
        ),
    )
    return email_id


def _batch(conn: db.Conn, org: int, owner: int, name: str) -> uuid.UUID:
    batch_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO batches (id, org_id, owner_id, name, subject_template, total, start_at)"
        " VALUES (%s, %s, %s, %s, 'Newsletter {{month}}', 1, now())",
        (batch_id, org, owner, name),
    )
    return batch_id


@pytest.fixture(scope="module")
def data(module_database_url: str) -> Data:
    with db.connect(module_database_url) as conn:
        alice = emails.ensure_user(conn, email="alice@example.com", name="Alice")
        bob = emails.ensure_user(conn, email="bob@example.com", name="Bob")
        carol = emails.ensure_user(conn, email="carol@example.com", name="Carol Bobbins")
        org_a = orgs.personal_org_id(conn, alice.id)
        org_b = orgs.personal_org_id(conn, carol.id)
        orgs.add_member(conn, org_a, bob, Role.MEMBER)
        batch_a = _batch(conn, org_a, alice.id, "Spring newsletter")
        batch_b = _batch(conn, org_b, carol.id, "Spring newsletter")
        owners = {"alice": alice.id, "bob": bob.id}
        ids, twins = {}, set()
        for row in ROWS:
            ids[row["subject"]] = _insert(conn, org_a, owners[row["owner"]], row, batch_a if row.get("batch") else None)
            # The twin: the same email in Carol's organization, plus an address only she wrote to.
            twin = row | {"to": [*row["to"], "annie@other.example"]}
            twins.add(_insert(conn, org_b, carol.id, twin, batch_b if row.get("batch") else None))
        conn.execute("ANALYZE emails")
    return Data(module_database_url, org_a, org_b, alice.id, bob.id, carol.id, ids, twins, batch_b)


@pytest.fixture
def web(data: Data) -> Iterator[db.Conn]:
    """A connection as the web app's: role reach_web, in Alice's organization (RLS on)."""
    with db.connect(data.url) as conn:
        conn.execute("SET ROLE reach_web")
        conn.execute("SELECT set_config('app.org_id', %s, false)", (str(data.org_a),))
        yield conn


def _found(conn: db.Conn, scope: Scope, query: str) -> set[uuid.UUID]:
    page = listing.emails_page(conn, scope, view="all", q=query, limit=50)
    return {e.id for e in page.emails}


EVERYTHING = {r["subject"] for r in ROWS}


@pytest.mark.parametrize(
    ("query", "subjects"),
    [
        ("", EVERYTHING),
        ("invoice", {"Invoice 12"}),
        ("acme.example", {"Invoice 12", "Lunch Friday", "Report"}),
        ('"Invoice 12" status:scheduled', {"Invoice 12"}),
        ("to:ann@", {"Invoice 12", "Report"}),
        ("to:BO@ACME", {"Lunch Friday"}),  # a Cc, in any case
        ("subject:lunch", {"Lunch Friday"}),
        ('subject:"Lunch Friday" !to:zed', set()),
        ("status:failed,uncertain", {"Welcome", "Report"}),
        ("status:scheduled", {"Invoice 12", "Newsletter May", "Retrying"}),
        ("!status:scheduled", {"Lunch Friday", "Welcome", "Report"}),
        ("from:me", {"Invoice 12", "Welcome", "Newsletter May", "Retrying"}),
        ("from:bob", {"Lunch Friday", "Report"}),  # the member's address or name
        ("!from:bob", {"Invoice 12", "Welcome", "Newsletter May", "Retrying"}),
        ("from:team@acme", EVERYTHING),  # the From address
        ("batch:spring", {"Newsletter May"}),
        ("!batch:spring", EVERYTHING - {"Newsletter May"}),
        ("error:timeout", {"Report"}),
        ("!error:timeout", EVERYTHING - {"Report"}),
        ("code:550", {"Welcome"}),
        ("code:5xx", {"Welcome"}),
        ("code:4xx", {"Retrying"}),
        ("code:250", {"Lunch Friday"}),
        ("code:5.1.1", {"Welcome"}),
        ("!code:5xx", EVERYTHING - {"Welcome"}),
        ("domain:acme.example", {"Invoice 12", "Lunch Friday", "Report"}),
        ("domain:example.org,gone.example", {"Lunch Friday", "Welcome"}),
        ("domain:example", set()),  # a whole domain, not a part of one
        ("!domain:acme.example", {"Welcome", "Newsletter May", "Retrying"}),
        ("after:-1h", {"Invoice 12", "Welcome", "Newsletter May", "Retrying"}),
        ("before:-1h", {"Lunch Friday", "Report"}),
        ("after:-1d before:now", {"Lunch Friday", "Welcome"}),
        (f"after:{(NOW + 36 * HOUR):%Y-%m-%dT%H:%M}", {"Newsletter May"}),  # UTC, with no offset
        (f"before:{(NOW - 48 * HOUR).isoformat()}", {"Report"}),
        ("annie", set()),  # only Carol wrote to her
    ],
)
def test_each_qualifier_finds_its_emails_and_never_another_organizations(
    web: db.Conn, data: Data, query: str, subjects: set[str]
) -> None:
    found = _found(web, in_org(data.org_a, data.alice), query)

    assert found == {data.ids[s] for s in subjects}
    assert not found & data.twin_ids


def test_the_scope_holds_without_row_level_security(data: Data) -> None:
    """The queries name the organization themselves (the table owner's connection sees every row)."""
    with db.connect(data.url) as conn:
        assert _found(conn, in_org(data.org_a, data.alice), "annie") == set()
        assert _found(conn, in_org(data.org_b, data.carol), "annie") == data.twin_ids
        assert _found(conn, in_org(data.org_a, data.alice, mine=True), "from:bob") == set()
        batch_of_b = _found(conn, in_org(data.org_a, data.alice), f"batch:{data.batch_b}")
        assert batch_of_b == set()


def test_pages_of_a_search_follow_one_another(web: db.Conn, data: Data) -> None:
    scope = in_org(data.org_a, data.alice)
    first = listing.emails_page(web, scope, view="all", q="!status:sent", limit=2)
    second = listing.emails_page(web, scope, view="all", q="!status:sent", cursor=first.next_cursor, limit=10)

    seen = [e.id for e in first.emails + second.emails]
    assert len(seen) == len(set(seen)) == len(ROWS) - 1 and second.next_cursor is None


def test_counts_stop_at_the_cap(web: db.Conn, data: Data) -> None:
    scope = in_org(data.org_a, data.alice)
    assert search.count(web, scope, "") == len(ROWS)
    assert search.count(web, scope, "status:scheduled") == 3
    assert search.count(web, scope, "", cap=2) == 2


def test_suggestions_complete_qualifiers_then_values_seen_in_the_organization(web: db.Conn, data: Data) -> None:
    scope = in_org(data.org_a, data.alice)

    def texts(word: str) -> list[str]:
        return [s.text for s in search.suggest(web, scope, word)]

    assert texts("sta") == ["status:"]
    assert texts("!d") == ["!domain:"]
    assert texts("status:f") == ["status:failed"]
    assert texts("status:sent,c") == ["status:sent,cancelled"]
    assert texts("to:an") == ["to:ann@acme.example"]  # not Carol's annie@
    assert texts("domain:") == [
        "domain:acme.example",
        "domain:example.org",
        "domain:gone.example",
        "domain:news.example",
        "domain:slow.example",
    ]
    assert texts("from:b") == ["from:bob@example.com"]  # members of this organization only
    assert texts("from:")[0] == "from:me"
    assert texts("batch:spr") == [f"batch:{_batch_of(web, data)}"]
    assert texts("after:-") == ["after:-1h", "after:-24h", "after:-7d"]


def _batch_of(conn: db.Conn, data: Data) -> uuid.UUID:
    row = conn.execute("SELECT batch_id FROM emails WHERE id = %s", (data.ids["Newsletter May"],)).fetchone()
    assert row is not None
    return row["batch_id"]


def test_saved_searches_are_each_users_own_and_counted(web: db.Conn, data: Data) -> None:
    alice, bob = in_org(data.org_a, data.alice), in_org(data.org_a, data.bob)
    failing = saved_searches.save(web, alice, name="Failing", query="status:failed,uncertain")
    saved_searches.save(web, alice, name="Acme", query="domain:acme.example")
    saved_searches.save(web, bob, name="Mine", query="from:me")
    # The same name again: its query is replaced, not a second search.
    again = saved_searches.save(web, alice, name="Failing", query="status:failed")

    assert again.id == failing.id
    mine = saved_searches.list_for(web, alice)
    assert [(s.name, s.query) for s in mine] == [("Failing", "status:failed"), ("Acme", "domain:acme.example")]
    assert saved_searches.counts(web, alice) == {mine[0].id: 1, mine[1].id: 3}
    assert [s.name for s in saved_searches.list_for(web, bob)] == ["Mine"]
    # Bob cannot delete Alice's.
    with pytest.raises(errors.NotFound):
        saved_searches.delete(web, bob, failing.id)
    saved_searches.delete(web, alice, failing.id)
    assert [s.name for s in saved_searches.list_for(web, alice)] == ["Acme"]


def test_a_saved_search_must_be_a_valid_query_with_a_name(web: db.Conn, data: Data) -> None:
    alice = in_org(data.org_a, data.alice)
    with pytest.raises(search.QueryError) as bad:
        saved_searches.save(web, alice, name="Broken", query="state:sent")
    assert bad.value.field == "q"
    with pytest.raises(errors.ValidationError) as unnamed:
        saved_searches.save(web, alice, name="  ", query="status:sent")
    assert unnamed.value.field == "name"
    for i in range(saved_searches.MAX_SAVED - len(saved_searches.list_for(web, alice))):
        saved_searches.save(web, alice, name=f"s{i}", query="status:sent")
    with pytest.raises(errors.ValidationError, match="at most 20 saved searches"):
        saved_searches.save(web, alice, name="one too many", query="status:sent")


def test_row_level_security_hides_another_organizations_saved_searches(data: Data) -> None:
    with db.connect(data.url) as conn:
        saved_searches.save(conn, in_org(data.org_b, data.carol), name="Carol's", query="annie")
        conn.execute("SET ROLE reach_web")
        conn.execute("SELECT set_config('app.org_id', %s, false)", (str(data.org_a),))
        names = [r["name"] for r in conn.execute("SELECT name FROM saved_searches").fetchall()]
        assert "Carol's" not in names
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO saved_searches (org_id, user_id, name, query) VALUES (%s, %s, 'x', 'y')",
                (data.org_b, data.carol),
            )


def test_the_search_view_shows_the_web_role_its_organization_only_and_is_read_only(data: Data) -> None:
    """emails_search applies the policies' rule itself (so a search may use its indexes): a query
    that forgets its WHERE still sees one organization, and nothing is written through it."""
    with db.connect(data.url) as conn:
        assert conn.execute("SELECT count(*) AS n FROM emails_search").fetchone()["n"] == 2 * len(ROWS)
        conn.execute("SET ROLE reach_web")
        conn.execute("SELECT set_config('app.org_id', %s, false)", (str(data.org_a),))
        seen = conn.execute("SELECT DISTINCT org_id FROM emails_search").fetchall()
        assert [r["org_id"] for r in seen] == [data.org_a]
        conn.execute("SELECT set_config('app.org_id', '', false)")
        assert conn.execute("SELECT count(*) AS n FROM emails_search").fetchone()["n"] == 0
        for statement in (
            "UPDATE emails_search SET subject = 'x'",
            "DELETE FROM emails_search",
            "INSERT INTO emails_search (id, org_id) VALUES (gen_random_uuid(), 1)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


@pytest.mark.parametrize(
    "query",
    ["status:failed,uncertain", "status:uncertain to:ann@", "to:ann@", "!status:scheduled", "before:-1h", "code:5xx"],
)
def test_a_page_is_the_same_whether_the_newest_rows_hold_it_or_not(
    web: db.Conn, data: Data, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """page_rows reads the newest rows first, then the indexes: the pages are the same either way."""
    scope = in_org(data.org_a, data.alice)
    everything = [e.id for e in listing.emails_page(web, scope, view="all", q=query, limit=50).emails]

    for first_look in (1, 2, 3):
        monkeypatch.setattr(search, "FIRST_LOOK", first_look)
        walked: list[uuid.UUID] = []
        cursor = None
        for _ in range(len(ROWS) + 1):
            page = listing.emails_page(web, scope, view="all", q=query, cursor=cursor, limit=1)
            walked += [e.id for e in page.emails]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert walked == everything, first_look


@dataclasses.dataclass
class Timeline:
    scope: Scope
    #: (created_at, id, send_at, status) of every email of the organization.
    rows: list[tuple[dt.datetime, uuid.UUID, dt.datetime, str]]


@pytest.fixture(scope="module")
def timeline(data: Data) -> Timeline:
    """An organization whose emails were created over two days, each due 5 minutes later (some
    sent), with the exceptions before: must still find: due 40 minutes before it was created (within
    BACKDATED), due days before it was created (written straight into the table), created long ago and due
    tomorrow. Its times are from the moment it is made (not the module's NOW, taken when the tests
    were collected, maybe many minutes before: the data every 20 minutes would then sit elsewhere
    against a query's relative times, which are read when it runs)."""
    now = dt.datetime.now(dt.UTC)
    base = now - 48 * HOUR
    plan = [
        (base + i * 20 * dt.timedelta(minutes=1), base + i * 20 * dt.timedelta(minutes=1) + 5 * MINUTE)
        for i in range(144)
    ]
    at = now - 10 * HOUR
    plan += [
        (at + 30 * MINUTE, at - 10 * MINUTE),  # due 40 min before it was created
        (now - 2 * HOUR, now - 72 * HOUR),  # backdated by days
        (now - 1 * HOUR, now - 29 * HOUR),
        (now - 47 * HOUR, now + 24 * HOUR),  # written long ago, due tomorrow
    ]
    rows = []
    with db.connect(data.url) as conn:
        dora = emails.ensure_user(conn, email="dora@example.com", name="Dora")
        org = orgs.personal_org_id(conn, dora.id)
        for n, (created, send_at) in enumerate(plan):
            email_id, status = uuid.uuid4(), "sent" if n % 3 == 0 and send_at < now else "scheduled"
            conn.execute(
                """INSERT INTO emails (id, org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at,
                                       next_attempt_at, status, message_id, sent_at, created_at)
                   VALUES (%s, %s, %s, 'd@example.com', '{x@example.com}', %s, 'b', %s, %s, %s, %s, %s, %s)""",
                (
                    email_id,
                    org,
                    dora.id,
                    f"Note {n}",
                    send_at,
                    send_at,
                    status,
                    f"<{email_id}@t>",
                    send_at if status == "sent" else None,
                    created,
                ),
            )
            rows.append((created, email_id, send_at, status))
        conn.execute("ANALYZE emails")
    return Timeline(in_org(org, dora.id), rows)


MINUTE = dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("before:-10h", lambda send, status, now: send < now - 10 * HOUR),
        ("!after:-10h", lambda send, status, now: send < now - 10 * HOUR),
        ("before:-20h status:sent", lambda send, status, now: send < now - 20 * HOUR and status == "sent"),
        ("after:-30h before:-10h", lambda send, status, now: now - 30 * HOUR <= send < now - 10 * HOUR),
        ("before:-47h", lambda send, status, now: send < now - 47 * HOUR),
    ],
)
@pytest.mark.parametrize("first_look", [0, 1, 7, 5000])
def test_before_reads_the_newest_rows_that_can_match_and_misses_none(
    data: Data,
    timeline: Timeline,
    query: str,
    matches: Any,
    first_look: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A query with before: reads the emails created before its time plus BACKDATED, and the backdated
    ones through their index: every page, cursor after cursor, is the one the whole table gives,
    whether the newest rows hold it (first_look large) or the indexes find it (0: never)."""
    # The query's relative times are read when it runs: the expectation's too (the data is every
    # 20 minutes, far from the few milliseconds between the two).
    now = dt.datetime.now(dt.UTC)
    expected = [i for c, i, s, st in sorted(timeline.rows, reverse=True) if matches(s, st, now)]
    monkeypatch.setattr(search, "FIRST_LOOK", first_look)
    with db.connect(data.url) as web:
        web.execute("SET ROLE reach_web")
        web.execute("SELECT set_config('app.org_id', %s, false)", (str(timeline.scope.org_id),))
        walked: list[uuid.UUID] = []
        cursor = None
        for _ in range(len(timeline.rows)):
            page = listing.emails_page(web, timeline.scope, view="all", q=query, cursor=cursor, limit=4)
            walked += [e.id for e in page.emails]
            cursor = page.next_cursor
            if cursor is None:
                break
        # The planner's settings for the indexes' way are the session's again afterwards.
        assert web.execute("SHOW cpu_tuple_cost").fetchone()["cpu_tuple_cost"] == "0.01"
        assert web.execute("SHOW enable_indexscan").fetchone()["enable_indexscan"] == "on"
        assert web.execute("SHOW max_parallel_workers_per_gather").fetchone()["max_parallel_workers_per_gather"] == "2"

    assert walked == expected
    assert len(expected) >= 3


def test_the_backdated_emails_are_read_through_their_index(data: Data, timeline: Timeline) -> None:
    """The query's condition is the partial index's predicate (migration 0024): PostgreSQL can use it."""
    compiled = search.compile_query("before:-10h", timeline.scope)
    statement, params = search.page_statement(
        timeline.scope,
        compiled,
        statuses=[s.value for s in listing.ALL],
        batch_id=None,
        query=search.first_query(compiled),
    )
    params |= {
        "before_created": None,
        "before_id": None,
        "limit": 5,
        "first_look": 5,
        "lead_status": None,
        "created_before": compiled.created_before,
    }
    with db.connect(data.url) as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r["QUERY PLAN"] for r in conn.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall())
    assert "emails_org_backdated_idx" in plan


def _walk(conn: db.Conn, scope: Scope, compiled: search.Compiled, limit: int) -> list[uuid.UUID]:
    """Every match, page after page of ``limit`` through search.page_rows's keyset cursor."""
    walked: list[uuid.UUID] = []
    before_created, before_id = None, None
    for _ in range(len(ROWS) + 1):
        rows = search.page_rows(
            conn,
            scope,
            compiled,
            statuses=[s.value for s in listing.ALL],
            batch_id=None,
            before_created=before_created,
            before_id=before_id,
            limit=limit,
        )
        walked += [r["id"] for r in rows]
        if len(rows) < limit:
            break
        before_created, before_id = rows[-1]["created_at"], rows[-1]["id"]
    return walked


@pytest.mark.parametrize(
    ("query", "subjects"),
    [
        ("from:bob", ["Lunch Friday", "Report"]),  # the member's address and name
        ("from:BOB report", ["Report"]),
        ("!from:bob status:scheduled", ["Newsletter May", "Invoice 12", "Retrying"]),
        ("from:team@acme !status:sent", ["Newsletter May", "Invoice 12", "Retrying", "Welcome", "Report"]),
        ("from:bobbins", []),  # Carol, who wrote none of this organization's emails
        ("from:e", [r["subject"] for r in sorted(ROWS, key=lambda r: r["at"], reverse=True)]),  # every user named
    ],
)
@pytest.mark.parametrize("first_look", [0, 2, 5000])
@pytest.mark.parametrize("listed", [0, 1, 2, search.MEMBERS_LISTED])
def test_from_a_name_finds_the_same_rows_with_the_users_looked_up_first(
    web: db.Conn,
    data: Data,
    query: str,
    subjects: list[str],
    first_look: int,
    listed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """from: a name compiled with a connection passes the users it names as a list (at most MEMBERS_LISTED,
    else the sub-select): the pages, cursor after cursor, are those of the sub-select, in the same order,
    whether the newest rows hold them or the indexes find them (first_look 0), and the emails expected."""
    scope = in_org(data.org_a, data.alice)
    monkeypatch.setattr(search, "FIRST_LOOK", first_look)
    monkeypatch.setattr(search, "MEMBERS_LISTED", listed)
    looked_up = search.compile_query(query, scope, conn=web)
    plain = search.compile_query(query, scope)
    assert "owner_id IN (SELECT" in plain.condition.as_string(web)
    # Listed when few enough users are named (bob: Bob and Carol Bobbins; team@acme: none; e: every user).
    named = db.all_rows(web, "search_from_users", pattern=plain.params["s0"], limit=1000)
    assert ("owner_id = ANY(" in looked_up.condition.as_string(web)) == (len(named) <= listed)

    by_subselect = _walk(web, scope, plain, 1)
    by_list = _walk(web, scope, looked_up, 1)

    assert by_list == by_subselect
    # Created in the order of ROWS within the same second or so: compare the sets, and the order with the keyset's.
    assert set(by_list) == {data.ids[s] for s in subjects}
    assert by_list == _walk(web, scope, looked_up, 50)


def test_from_a_name_is_read_from_indexes_only_when_the_users_are_listed(web: db.Conn, data: Data) -> None:
    """With the users listed, both halves of from: are in indexes (the From address's trigrams, migration 0025;
    the owner's), which the planner ORs and can AND with other conditions' indexes; as a sub-select, not."""
    scope = in_org(data.org_a, data.alice)
    plans = {}
    for name, compiled in {
        "listed": search.compile_query("from:bob", scope, conn=web),
        "sub-select": search.compile_query("from:bob", scope),
    }.items():
        statement = sql.SQL("EXPLAIN SELECT id FROM emails_search WHERE {}").format(compiled.condition)
        with web.transaction():
            web.execute("SET LOCAL enable_seqscan = off")
            rows = web.execute(statement, compiled.params).fetchall()
            plans[name] = "\n".join(r["QUERY PLAN"] for r in rows)
    assert "BitmapOr" in plans["listed"] and "emails_from_trgm_idx" in plans["listed"], plans["listed"]
    assert "SubPlan" not in plans["listed"], plans["listed"]
    assert "BitmapOr" not in plans["sub-select"], plans["sub-select"]


def _as_not(condition: str) -> str:
    """A condition with !from:me written as the other negated qualifiers are: NOT (owner_id = me)."""
    return re.sub(r"\(owner_id < (%\(s[0-9]+\)s) OR owner_id > \1\)", r"NOT coalesce(owner_id = \1, false)", condition)


@pytest.mark.parametrize(
    ("user", "query", "subjects"),
    [
        ("alice", "!from:me", ["Lunch Friday", "Report"]),  # Bob's: ids above Alice's
        ("bob", "!from:me", ["Invoice 12", "Welcome", "Newsletter May", "Retrying"]),  # Alice's: below Bob's
        ("bob", "!from:me status:scheduled", ["Invoice 12", "Newsletter May", "Retrying"]),
        ("alice", "report !from:me", ["Report"]),
        ("alice", "!from:me !status:sent", ["Report"]),
        ("bob", "!from:me !from:me welcome", ["Welcome"]),
        ("alice", "!from:me from:me", []),
    ],
)
@pytest.mark.parametrize("first_look", [0, 1, 2, 5000])
def test_not_from_me_finds_every_other_members_emails_in_order(
    web: db.Conn,
    data: Data,
    user: str,
    query: str,
    subjects: list[str],
    first_look: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """!from:me is written as the owner's ids below and above the user's (owner_id is never NULL): the pages,
    cursor after cursor, are those of NOT (owner_id = me), in the same order, whether the newest rows hold them
    or the indexes find them (first_look 0, with NOT_MINE_ROW_COST), and the emails expected."""
    scope = in_org(data.org_a, getattr(data, user))
    monkeypatch.setattr(search, "FIRST_LOOK", first_look)
    compiled = search.compile_query(query, scope, conn=web)
    assert compiled.not_mine
    text = compiled.condition.as_string(web)
    assert "owner_id <" in text and "owner_id >" in text
    # The same query with the negation as a NOT (what the other negated qualifiers compile to).
    as_not = _as_not(text)
    assert "owner_id <" not in as_not and as_not.count("NOT coalesce(owner_id =") == query.count("!from:me")
    negated = dataclasses.replace(compiled, condition=sql.SQL(as_not), not_mine=False)

    walked = _walk(web, scope, compiled, 1)

    assert walked == _walk(web, scope, negated, 1)
    assert set(walked) == {data.ids[s] for s in subjects}
    assert walked == _walk(web, scope, compiled, 50)


def test_not_from_me_is_read_from_the_owners_index(web: db.Conn, data: Data) -> None:
    """!from:me is two ranges of the owner's index, which the planner can OR and AND with other conditions'
    indexes (a phrase's trigrams at a million emails: docs/search.md), with rows read dearer still
    (NOT_MINE_ROW_COST) through the indexes; NOT (owner_id = me) is in no index."""
    scope = in_org(data.org_a, data.alice)
    compiled = search.compile_query("report !from:me", scope, conn=web)
    text = compiled.condition.as_string(web)
    plans = {}
    for name, condition in {
        "ranges": compiled.condition,
        "not": sql.SQL(_as_not(text)),
    }.items():
        statement = sql.SQL("EXPLAIN SELECT id FROM emails_search WHERE {}").format(condition)
        with search.through_indexes(web, compiled):
            cost = web.execute("SHOW cpu_tuple_cost").fetchone()
            web.execute("SET LOCAL enable_seqscan = off")
            plans[name] = "\n".join(r["QUERY PLAN"] for r in web.execute(statement, compiled.params).fetchall())
        assert cost == {"cpu_tuple_cost": search.NOT_MINE_ROW_COST}
    assert web.execute("SHOW cpu_tuple_cost").fetchone() == {"cpu_tuple_cost": "0.01"}  # set back after
    owner_ranges = re.findall(r"Index Cond: .*owner_id [<>] ", plans["ranges"])
    assert len(owner_ranges) == 2 and "BitmapOr" in plans["ranges"], plans["ranges"]
    assert not re.search(r"Index Cond: .*owner_id", plans["not"]), plans["not"]


@pytest.mark.parametrize("view", ["all", "scheduled", "failed", "sent", "uncertain"])
@pytest.mark.parametrize(
    "query",
    ['"e"', "!report", "!from:me", "from:bob !status:failed", 'subject:"e" !to:ann@', "!from:me !code:4xx r"],
)
def test_the_newest_rows_give_the_indexes_page_in_every_tab(
    web: db.Conn, data: Data, view: str, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Phrases, negations, from: and mixes, in each dashboard tab: every page, cursor after cursor, is the one
    the indexes give (FIRST_LOOK 0), whether the newest rows hold it whole (5000), in part, or not at all."""
    scope = in_org(data.org_a, data.alice)

    def walk(first_look: int, limit: int) -> list[uuid.UUID]:
        monkeypatch.setattr(search, "FIRST_LOOK", first_look)
        walked: list[uuid.UUID] = []
        cursor = None
        for _ in range(len(ROWS) + 1):
            page = listing.emails_page(web, scope, view=view, q=query, cursor=cursor, limit=limit)
            walked += [e.id for e in page.emails]
            cursor = page.next_cursor
            if cursor is None:
                break
        return walked

    through_indexes = walk(0, 1)
    assert through_indexes == walk(0, 50)
    for first_look in (1, 2, 3, 5000):
        for limit in (1, 2, 50):
            assert walk(first_look, limit) == through_indexes, (first_look, limit)
