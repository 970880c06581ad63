"""Plans that must not depend on how big ``emails`` was when a statement was prepared.

Pooled connections (a worker's, the web's) prepare each statement after five
runs, and PostgreSQL then keeps one generic plan for it, made with the table as
it was: small, right after a deployment. A statement that finds one email by id
must read it through its id whatever the table held then; a plan that scans a
partial index instead reads every email of that index for each call, and its
cost grows with the backlog (sql/migrations/0011_due_index_not_for_lookups.sql).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.core import db
from tasks.core.db import Conn
from tasks.domain.models import User

#: Statements that find an email by its id (while it is in one status or another).
BY_ID = [
    "claim_email",
    "fetch_jobs",
    "start_data_many",
    "finish_emails",
    "requeue_email",
    "wait_without_attempt",
    "edit_email",
    "set_cancelled",
    "set_next_attempt",
    "lock_email",
    "get_email",
]


def generic_plan(conn: Conn, name: str) -> dict[str, Any]:
    """The plan PostgreSQL keeps for the named query once prepared (``force_generic_plan``)."""
    text = db.queries[name]
    order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))
    sql = re.sub(r"%\((\w+)\)s", lambda m: f"${order.index(m[1]) + 1}", text).replace("%%", "%")
    conn.execute(f"PREPARE plan_{name} AS {sql}")  # our own named query, never input
    args = ", ".join(["NULL"] * len(order))
    row = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE plan_{name}{f'({args})' if order else ''}").fetchone()
    assert row is not None
    plan = row["QUERY PLAN"]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.fixture
def small(conn: Conn, owner: User) -> Conn:
    """A database as a worker finds it right after a deployment: a few emails, never analysed."""
    conn.execute(
        "INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,"
        " message_id) SELECT (SELECT org_id FROM memberships WHERE user_id = %(o)s), %(o)s, 'a@example.com',"
        " ARRAY['b@example.com'], 's', 'b', now(), now(), '<plan-' || g || '@x>'"
        "   FROM generate_series(1, 3) AS g",
        {"o": owner.id},
    )
    conn.execute("SET plan_cache_mode = force_generic_plan")
    return conn


@pytest.mark.parametrize("name", BY_ID)
def test_a_lookup_by_id_reads_the_email_through_its_id(small: Conn, name: str) -> None:
    """Whatever the table held when it was planned: no scan of a whole (partial) index per call."""
    plan = generic_plan(small, name)
    scans = [n for n in nodes(plan) if n.get("Relation Name") == "emails" and n["Node Type"].endswith("Scan")]

    assert scans, "the plan reads emails"
    for scan in scans:
        condition = scan.get("Index Cond") or scan.get("Recheck Cond") or ""
        assert re.search(r"\bid = ", condition), f"{name}: {scan['Node Type']} on {scan.get('Index Name')}"


@pytest.mark.parametrize("name", ["due_without_job", "next_due"])
def test_the_range_scans_of_due_emails_still_have_their_index(small: Conn, name: str) -> None:
    """emails_due_idx's predicate still follows from a condition on next_attempt_at (min() adds one)."""
    used = {n.get("Index Name") for n in nodes(generic_plan(small, name)) if n.get("Relation Name") == "emails"}

    assert "emails_due_idx" in used
