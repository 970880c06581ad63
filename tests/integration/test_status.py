"""The database's statuses and status machine are the ones ``tasks.domain.models`` names.

Migrations are SQL written once, so they cannot take the list from Python: these
tests keep the two copies equal (a new status or transition must change both).
"""

from __future__ import annotations

import itertools
import re

import psycopg

from tasks.core import db
from tasks.domain.models import TRANSITIONS, Status, User


def test_the_check_constraint_allows_exactly_the_statuses(conn: db.Conn) -> None:
    row = conn.execute(
        "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = 'emails_status_check'"
    ).fetchone()
    assert row is not None
    assert set(re.findall(r"'([a-z_]+)'::text", row["def"])) == {s.value for s in Status}


def test_the_trigger_allows_exactly_the_transitions(conn: db.Conn, owner: User) -> None:
    row = conn.execute(
        """INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                               message_id, job_id, sent_at, data_started_at, offline_at)
           VALUES ((SELECT org_id FROM memberships WHERE user_id = %(o)s), %(o)s, 'app@example.com',
                   ARRAY['a@example.com'], 'S', 'B', now(), now(),
                   '<status-test@example.com>', 1, now(), now(), now())
           RETURNING id""",
        {"o": owner.id},
    ).fetchone()
    assert row is not None
    email_id = row["id"]
    allowed: dict[Status, set[Status]] = {s: set() for s in Status}
    for old, new in itertools.permutations(Status, 2):
        with conn.transaction(force_rollback=True):
            # Put the row in ``old`` past the trigger (replica role skips ordinary triggers).
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("UPDATE emails SET status = %s WHERE id = %s", (old, email_id))
            conn.execute("SET LOCAL session_replication_role = origin")
            try:
                with conn.transaction():
                    conn.execute("UPDATE emails SET status = %s WHERE id = %s", (new, email_id))
                allowed[old].add(new)
            except psycopg.errors.CheckViolation as exc:
                assert "status cannot go from" in str(exc)
    assert allowed == {s: set(targets) for s, targets in TRANSITIONS.items()}
