"""PostgreSQL access: named queries and connection pools.

Named queries are those of ``sql/queries.sql``, plus the statements on
Procrastinate's tables, written in ``tasks/queue/procrastinate_boundary.py``
(the one module that relies on Procrastinate's internals) and registered here
when ``tasks.queue`` is imported.

Pools hand out autocommit connections; a unit of work that must be atomic says
so with ``with conn.transaction():``, so single statements cost one round trip.
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, LiteralString, TypeVar, cast

import psycopg
import psycopg_pool
from psycopg import sql as pgsql
from psycopg.rows import dict_row

SQL_DIR = pathlib.Path(__file__).resolve().parents[2] / "sql"
_NAME = re.compile(r"^-- ([a-z0-9_]+) --$", re.MULTILINE)
T = TypeVar("T")


def load_queries(path: pathlib.Path) -> dict[str, LiteralString]:
    """Parse a file of ``-- name --`` blocks into ``{name: SQL}``."""
    parts = _NAME.split(path.read_text(encoding="utf-8"))
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: cast(LiteralString, body.strip()) for name, body in zip(parts[1::2], parts[2::2], strict=True)}


queries: dict[str, LiteralString] = load_queries(SQL_DIR / "queries.sql")


def register(statements: Mapping[str, LiteralString]) -> None:
    """Add named statements written elsewhere than ``sql/queries.sql``.

    A name means one statement: registering a different text under a name
    already taken is a mistake, and raises.
    """
    for name, sql in statements.items():
        if queries.setdefault(name, sql) != sql:
            raise ValueError(f"two statements are named {name!r}")


Row = dict[str, Any]
#: The connections and pools of this project: every one returns rows as dicts
#: (``connect``, ``pool`` and ``async_pool`` set ``row_factory=dict_row``).
Conn = psycopg.Connection[Row]
AsyncConn = psycopg.AsyncConnection[Row]
Pool = psycopg_pool.ConnectionPool[Conn]
AsyncPool = psycopg_pool.AsyncConnectionPool[AsyncConn]


#: Every session reads and writes times in UTC, whatever the server's own ``TimeZone``: a time
#: is loaded into Python in the session's zone, and one a date can hold in UTC (23:30 on the
#: last day of 9999) may be a year too far in a zone east of it, failing every list that holds it.
SESSION_OPTIONS = "-c TimeZone=UTC"


def _options(extra: str = "") -> str:
    return f"{SESSION_OPTIONS} {extra}".strip()


def connect(conninfo: str, **kwargs: Any) -> Conn:
    """Open one autocommit connection returning dict rows (times in UTC)."""
    kwargs["options"] = _options(kwargs.get("options", ""))
    return psycopg.connect(conninfo, autocommit=True, row_factory=dict_row, **kwargs)


# Set by a configure hook rather than the connect kwargs: Procrastinate opens its
# LISTEN connection with the pool's kwargs plus its own autocommit=True.
def _autocommit(conn: Conn) -> None:
    conn.autocommit = True


async def _autocommit_async(conn: AsyncConn) -> None:
    await conn.set_autocommit(True)


class AsRole:
    """Run a pool's connections as ``role``, with no organization set when lent out.

    ``configure`` (a new connection) sets both; ``reset`` puts them back on a connection
    that a request used (an operator's page ``RESET ROLE``; every request sets its
    organization). The web app calls it itself, in the request, before giving the
    connection back (``webapp/ext.py``), and closes one that cannot be reset: the
    pool's ``reset`` hook runs later, in a background worker.
    """

    def __init__(self, role: str):
        self.statement = pgsql.SQL("SET ROLE {}; SELECT set_config('app.org_id', '', false)").format(
            pgsql.Identifier(role)
        )

    def configure(self, conn: Conn) -> None:
        conn.autocommit = True
        conn.execute(self.statement)

    def reset(self, conn: Conn) -> None:
        conn.execute(self.statement)


def pool(
    conninfo: str,
    *,
    max_size: int = 10,
    name: str = "reachdbox",
    check_idle_after: float = 2.0,
    role: AsRole | None = None,
) -> Pool:
    """Open a thread-safe pool for the web app (``role``: its connections as that role) and the CLI.

    Like the worker's, a connection is checked with a round trip only after
    ``check_idle_after`` seconds idle (``_IdleCheck``): each request takes one, and
    checking every take was one more round trip per request.
    """
    idle = _IdleCheck(check_idle_after)
    return psycopg_pool.ConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        name=name,
        kwargs={"row_factory": dict_row, "options": _options()},
        configure=role.configure if role else _autocommit,
        check=idle.check_sync,
        open=True,
    )


class _IdleCheck:
    """Check a pooled connection with a round trip only if it was not taken for a while.

    A worker takes a connection from the pool several times per email, a web
    request once; checking each time (``check_connection``) was one extra round
    trip per take. A connection taken moments ago is trusted; one not taken for
    ``idle_after`` seconds (long enough for the server to have restarted) is
    checked before use. The time is noted when the connection is taken (here),
    not when it is given back: a pool with a ``reset`` hook returns connections
    through a background worker, so they come back late and the pool grows.
    """

    def __init__(self, idle_after: float):
        self.idle_after = idle_after
        self._taken: dict[int, float] = {}

    def _due(self, conn: AsyncConn | Conn) -> bool:
        if conn.broken or conn.closed:
            raise psycopg.OperationalError("the connection is closed")
        now = time.monotonic()
        last, self._taken[id(conn)] = self._taken.get(id(conn), 0.0), now
        return now - last > self.idle_after

    async def check(self, conn: AsyncConn) -> None:
        if self._due(conn):
            await psycopg_pool.AsyncConnectionPool.check_connection(conn)

    def check_sync(self, conn: Conn) -> None:
        if self._due(conn):
            psycopg_pool.ConnectionPool.check_connection(conn)


def async_pool(conninfo: str, *, size: int, name: str = "reachdbox-worker", check_idle_after: float = 2.0) -> AsyncPool:
    """Create (unopened) the worker's pool, shared by Procrastinate and the tasks.

    Its commits do not wait for the WAL flush (``synchronous_commit=off``): a
    database crash may forget the last fraction of a second of claims and
    outcomes, which recovery turns back into a retry (nothing was sent) or
    ``uncertain`` (DATA had begun), never into a silent resend, because the one
    commit that must be durable first, ``start_data_many``, waits for its flush
    (and so for every commit before it). Measured: -20% CPU per email.
    """
    idle = _IdleCheck(check_idle_after)
    return psycopg_pool.AsyncConnectionPool(
        conninfo,
        min_size=size,
        max_size=size,
        name=name,
        kwargs={"row_factory": dict_row, "options": _options("-c synchronous_commit=off")},
        configure=_autocommit_async,
        check=idle.check,
        open=False,
    )


def run(conn: Conn, query: str, /, **params: Any) -> int:
    """Run the named statement; return how many rows it touched."""
    return conn.execute(queries[query], params).rowcount


async def run_async(conn: AsyncConn, query: str, /, **params: Any) -> int:
    """Run the named statement; return how many rows it touched."""
    cursor = await conn.execute(queries[query], params)
    return cursor.rowcount


def one(conn: Conn, query: str, /, **params: Any) -> Row | None:
    """Run the named query and return its first row, if any."""
    return conn.execute(queries[query], params).fetchone()


def all_rows(conn: Conn, query: str, /, **params: Any) -> list[Row]:
    """Run the named query and return every row."""
    return conn.execute(queries[query], params).fetchall()


async def one_async(conn: AsyncConn, query: str, /, **params: Any) -> Row | None:
    """Run the named query and return its first row, if any."""
    cursor = await conn.execute(queries[query], params)
    return await cursor.fetchone()


async def all_async(conn: AsyncConn, query: str, /, **params: Any) -> list[Row]:
    """Run the named query and return every row."""
    cursor = await conn.execute(queries[query], params)
    return await cursor.fetchall()


async def with_reconnect(
    pool: AsyncPool,
    conn: AsyncConn,
    write: Callable[[AsyncConn], Awaitable[T]],
    *,
    within: float,
) -> T:
    """Run ``write`` on ``conn``; if the database went away, again on fresh connections for ``within`` seconds.

    For what must not be forgotten, such as the outcome of a send that happened:
    a PostgreSQL restart costs a few seconds, not the record. ``write`` must be
    safe to repeat (the outcome queries are guarded by the row's state).
    """
    deadline = time.monotonic() + within
    if not conn.broken and not conn.closed:
        try:
            return await write(conn)
        except psycopg.OperationalError as exc:
            first: Exception = exc
    else:
        first = psycopg.OperationalError("the connection was lost")
    return await _on_fresh_connections(pool, write, first, deadline)


async def write_with_reconnect(pool: AsyncPool, write: Callable[[AsyncConn], Awaitable[T]], *, within: float) -> T:
    """``with_reconnect`` on a connection taken from ``pool``, even when the pool has none to give.

    While the database is away the pool may wait its whole timeout for a
    connection; this waits at most a second for one, then goes on as
    ``with_reconnect`` does on fresh connections, all within ``within`` seconds.
    """
    deadline = time.monotonic() + within
    try:
        conn = await pool.getconn(timeout=min(1.0, within))
    except psycopg.OperationalError as exc:  # PoolTimeout included
        return await _on_fresh_connections(pool, write, exc, deadline)
    try:
        return await with_reconnect(pool, conn, write, within=max(deadline - time.monotonic(), 0.0))
    finally:
        await pool.putconn(conn)


async def _on_fresh_connections(
    pool: AsyncPool, write: Callable[[AsyncConn], Awaitable[T]], first: Exception, deadline: float
) -> T:
    # async_pool gives its pool both as values (psycopg_pool also takes callables).
    conninfo, kwargs = pool.conninfo, pool.kwargs or {}
    assert isinstance(conninfo, str) and isinstance(kwargs, dict)
    delay = 0.1
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise first
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 1.0)
        try:
            # A connection of its own: the pool reconnects with a growing backoff and
            # may still be waiting for its next try when the database is back.
            fresh = await psycopg.AsyncConnection.connect(conninfo, **kwargs, autocommit=True, connect_timeout=2)
            async with fresh:
                return await write(fresh)
        except psycopg.OperationalError as exc:
            first = exc
