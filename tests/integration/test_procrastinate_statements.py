"""Our statements on Procrastinate's tables, planned by PostgreSQL on the installed schema.

tests/unit/test_procrastinate_boundary.py checks what each statement declares it
relies on against Procrastinate's schema file; here PostgreSQL itself plans every
statement on a database migrated with the installed Procrastinate (as
``python -m tasks migrate`` does), and so names any table, column, status or
function that is missing, declared or not.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest

from tasks.core.db import Conn
from tasks.queue import procrastinate_boundary as boundary

#: Values for the parameters whose type PostgreSQL cannot infer from a NULL (an
#: interval subtracted from a timestamp; a uuid first used as text).
TYPED: dict[str, Any] = {"lead": dt.timedelta(0), "after": dt.timedelta(0), "id": uuid.uuid4()}


@pytest.mark.parametrize("name", sorted(boundary.STATEMENTS))
def test_the_statement_plans_on_the_installed_schema(conn: Conn, name: str) -> None:
    statement = boundary.STATEMENTS[name]
    # NULL for every parameter, but those whose type PostgreSQL would infer wrongly from NULL.
    params: dict[str, Any] = dict.fromkeys(re.findall(r"%\((\w+)\)s", statement.sql))
    params |= {k: v for k, v in TYPED.items() if k in params}

    plan = conn.execute("EXPLAIN " + statement.sql, params).fetchall()

    assert plan


def test_a_missing_column_is_named_by_postgresql(conn: Conn) -> None:
    """What the test above would say after an upgrade that renamed a column."""
    conn.execute("ALTER TABLE procrastinate_workers RENAME COLUMN last_heartbeat TO seen_at")

    with pytest.raises(Exception, match='column "last_heartbeat" does not exist'):
        conn.execute("EXPLAIN " + boundary.STATEMENTS["workers_alive"].sql, {"stalled_after": 10})
