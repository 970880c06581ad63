"""Row-level security: the web's database role sees one organization's rows, whatever the query.

Each test runs deliberately unscoped statements (no ``WHERE org_id``) as ``reach_web``, the
role the web app's connections take, and finds only the current organization's rows; the
connecting role (workers, the reconciler, the CLI) sees them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import batch_plan, batches, bulk, emails, orgs, recurrences, tokens
from tasks.domain.models import User
from webapp import ext

Conn = db.Conn
TENANT_TABLES = (
    "emails",
    "email_events",
    "batches",
    "api_tokens",
    "memberships",
    "invitations",
    "organizations",
    "recurrences",
    "recurrence_skips",
    "bulk_actions",
    "bulk_action_emails",
)


def fill(conn: Conn, settings: Settings, make_draft: Callable[..., Any], user: User) -> int:
    """Give ``user``'s organization a row in every tenant table; return its id."""
    org_id = orgs.personal_org_id(conn, user.id)
    emails.schedule(conn, owner=user, draft=make_draft(to=[f"to-{user.id}@example.com"]), settings=settings)
    bulk.confirm(conn, orgs.personal_scope(conn, user.id), bulk.Selection(q=f"to-{user.id}@"), "cancel", {})
    plan = batch_plan.prepare(
        settings=settings, addresses="x@example.com", subject="s", body_text="b", start_at="2031-01-01T00:00:00Z"
    )
    batches.create(conn, owner=user, plan=plan, settings=settings)
    tokens.create(conn, user, "t")
    me = orgs.membership(conn, org_id, user.id)
    assert me is not None
    orgs.invite(conn, me, f"guest-{user.id}@example.com", orgs.Role.VIEWER)
    spec = recurrences.validate(
        {"to": [f"to-{user.id}@example.com"], "subject": "r", "body_text": "b", "cron": "0 9 * * *"}, settings=settings
    )
    rec, _ = recurrences.create(conn, owner=user, spec=spec, settings=settings)
    conn.execute(
        "INSERT INTO recurrence_skips (org_id, recurrence_id, first_at, last_at, n, reason)"
        " VALUES (%s, %s, now(), now(), 1, 'down')",
        (org_id, rec.id),
    )
    return org_id


@pytest.fixture
def two_orgs(conn: Conn, settings: Settings, make_draft: Callable[..., Any]) -> tuple[int, int]:
    alice = emails.ensure_user(conn, email="alice@example.com")
    bob = emails.ensure_user(conn, email="bob@example.com")
    return fill(conn, settings, make_draft, alice), fill(conn, settings, make_draft, bob)


@pytest.fixture
def web(database_url: str) -> Iterator[Conn]:
    """A connection as the web app has it: its pool's role, no organization yet."""
    pool = db.pool(database_url, max_size=1, name="rls-test", role=db.AsRole(ext.WEB_ROLE))
    with pool.connection() as connection:
        yield connection
    pool.close()


def counts(conn: Conn) -> dict[str, list[Any]]:
    """Every tenant table read with no WHERE at all: the org_ids each one shows."""
    out = {}
    for table in TENANT_TABLES:
        column = "id" if table == "organizations" else "org_id"
        rows = conn.execute(f"SELECT DISTINCT {column} AS o FROM {table} ORDER BY 1").fetchall()  # our names
        out[table] = [r["o"] for r in rows]
    return out


def test_an_unscoped_select_as_the_web_role_returns_only_the_current_organizations_rows(
    conn: Conn, web: Conn, two_orgs: tuple[int, int]
) -> None:
    alice_org, bob_org = two_orgs
    assert web.execute("SELECT current_user AS u").fetchone() == {"u": ext.WEB_ROLE}

    nothing = counts(web)
    db.run(web, "set_org", org_id=str(alice_org))
    alices = counts(web)
    db.run(web, "set_org", org_id=str(bob_org))
    bobs = counts(web)

    assert nothing == {table: [] for table in TENANT_TABLES}  # no organization set: no tenant row
    assert alices == {table: [alice_org] for table in TENANT_TABLES}
    assert bobs == {table: [bob_org] for table in TENANT_TABLES}
    assert counts(conn) == {table: [alice_org, bob_org] for table in TENANT_TABLES}  # the owner role: all


def test_the_web_role_cannot_write_into_another_organization(conn: Conn, web: Conn, two_orgs: tuple[int, int]) -> None:
    alice_org, bob_org = two_orgs
    bobs_email = conn.execute("SELECT id FROM emails WHERE org_id = %s", (bob_org,)).fetchone()
    assert bobs_email is not None
    db.run(web, "set_org", org_id=str(alice_org))

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        web.execute(
            "INSERT INTO email_events (org_id, email_id, kind) VALUES (%s, %s, 'forged')", (bob_org, bobs_email["id"])
        )
    updated = web.execute("UPDATE emails SET subject = 'hijacked' WHERE id = %s", (bobs_email["id"],)).rowcount
    deleted = web.execute("DELETE FROM memberships WHERE org_id = %s", (bob_org,)).rowcount

    bobs_recurrence = conn.execute("SELECT id FROM recurrences WHERE org_id = %s", (bob_org,)).fetchone()
    assert bobs_recurrence is not None
    paused = web.execute("UPDATE recurrences SET status = 'paused' WHERE id = %s", (bobs_recurrence["id"],)).rowcount
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        web.execute(
            "INSERT INTO recurrence_skips (org_id, recurrence_id, first_at, last_at, reason)"
            " VALUES (%s, %s, now(), now(), 'forged')",
            (bob_org, bobs_recurrence["id"]),
        )

    assert (updated, deleted, paused) == (0, 0, 0)
    assert conn.execute("SELECT count(*) AS n FROM emails WHERE subject = 'hijacked'").fetchone() == {"n": 0}
    assert conn.execute("SELECT count(*) AS n FROM memberships WHERE org_id = %s", (bob_org,)).fetchone() == {"n": 1}


def test_a_connection_given_back_forgets_its_organization_and_role(
    app: Flask, conn: Conn, two_orgs: tuple[int, int], sign_in: Callable[..., User]
) -> None:
    """The next request on the same connection starts with no organization, even after an operator's page."""
    seen: list[Any] = []

    @app.get("/_probe_ops")
    def probe_ops() -> Any:
        ext.set_org(two_orgs[0])
        ext.operator_conn()
        return {}

    @app.get("/_probe_after")
    def probe_after() -> Any:
        # Straight from the pool, before the request sets anything (as a visitor's request).
        sql = "SELECT current_user AS u, current_setting('app.org_id') AS o, count(*) AS n FROM emails"
        seen.append(ext.conn().execute(sql).fetchone())
        return {}

    client = app.test_client()
    sign_in(client, "alice@example.com")
    client.get("/_probe_ops")
    app.test_client().get("/_probe_after")
    app.test_client().get("/_probe_after")

    # Both connections the first request used (its own and the operator's) were reset.
    assert app.extensions[ext.KEY].pool.get_stats()["pool_size"] == 2
    assert seen == [{"u": ext.WEB_ROLE, "o": "", "n": 0}] * 2


def test_a_request_runs_as_the_web_role_with_its_organization(
    app: Flask, conn: Conn, two_orgs: tuple[int, int], sign_in: Callable[..., User]
) -> None:
    """The app's own connection: what a view's query sees (Alice signed in, so Alice's organization)."""
    alice_org, _bob_org = two_orgs
    seen: dict[str, Any] = {}

    @app.get("/_probe")
    def probe() -> Any:
        sql = "SELECT current_user AS u, array_agg(DISTINCT org_id) AS orgs FROM emails"
        seen.update(ext.conn().execute(sql).fetchone() or {})
        return {}

    client = app.test_client()
    sign_in(client, "alice@example.com")
    response = client.get("/_probe")

    assert response.status_code == 200
    assert seen == {"u": ext.WEB_ROLE, "orgs": [alice_org]}
