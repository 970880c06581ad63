"""What one web process holds (settings, a PostgreSQL pool, a Redis client) and per-request access to it.

Every connection of the pool runs as the role ``reach_web`` (``SET ROLE`` when the pool
opens it), which PostgreSQL's row-level security holds to one organization: the one
named by the session setting ``app.org_id``. A request's connection starts with none
(no tenant row visible), gets its organization once the request knows who asks
(``set_org``, or in the token lookup's own statement), and is reset when it goes back
to the pool (``_release``), so no request ever sees the organization of the one before it. The
operators' pages, which read across organizations, borrow a connection of their own
that leaves the role for the request (``operator_conn``).

Why a session setting rather than ``SET LOCAL`` in a transaction per request: the API's
schedule is one autocommit statement (one round trip, committed even if the web process
dies just after sending it, tests/faults/test_web_faults.py), so a request is not one
transaction. The setting lives exactly as long as the request's borrow of the connection.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import psycopg
import redis
from flask import Flask, current_app, g

from tasks.core import db, live
from tasks.core.config import Settings
from tasks.domain import present
from tasks.domain.models import Email

KEY = "reachdbox"
#: The database role of web requests (created by sql/migrations/0012_organizations.sql).
WEB_ROLE = "reach_web"


@dataclasses.dataclass(kw_only=True)
class Resources:
    settings: Settings
    pool: db.Pool
    redis: redis.Redis
    #: The database role of the pool's connections, and how a used one is reset.
    role: db.AsRole

    def close(self) -> None:
        """Release the pool and Redis connections (tests and shutdown)."""
        self.pool.close()
        self.redis.close()


def init_app(app: Flask, settings: Settings) -> Resources:
    """Open this process's pool and Redis client and hang them on the app."""
    role = db.AsRole(WEB_ROLE)
    resources = Resources(
        settings=settings,
        role=role,
        pool=db.pool(settings.database_url, max_size=20, name="reachdbox-web", role=role),
        redis=redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2),
    )
    app.extensions[KEY] = resources
    app.teardown_appcontext(_release)
    return resources


def resources() -> Resources:
    return cast(Resources, current_app.extensions[KEY])


def settings() -> Settings:
    """Return the settings of this process."""
    return resources().settings


def conn() -> db.Conn:
    """Return this request's database connection (autocommit; borrowed from the pool once).

    It runs as ``reach_web``: it sees the rows of the request's organization only
    (none until ``set_org``).
    """
    if "db_conn" not in g:
        g.db_conn = resources().pool.getconn()
    return cast(db.Conn, g.db_conn)


def set_org(org_id: int | None) -> None:
    """Make ``org_id`` the organization this request's connection sees (None: none)."""
    db.run(conn(), "set_org", org_id="" if org_id is None else str(org_id))


def operator_conn() -> db.Conn:
    """Return a connection that reads across organizations, for the operators' pages and the
    endpoints a signature authenticates (providers' events, unsubscribe links: webapp/feedback.py).

    The caller has checked that the signed-in user is an operator (``OPERATOR_EMAILS``), or the
    request's signature.
    """
    if "db_ops_conn" not in g:
        connection = resources().pool.getconn()
        connection.execute("RESET ROLE")
        g.db_ops_conn = connection
    return cast(db.Conn, g.db_ops_conn)


def _release(exc: BaseException | None) -> None:
    for key in ("db_conn", "db_ops_conn"):
        connection = g.pop(key, None)
        if connection is None:
            continue
        # The role back and no organization, before anyone else borrows it; a connection
        # that cannot be reset is closed (the pool then replaces it).
        try:
            if connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                resources().role.reset(connection)
            else:
                connection.close()
        except psycopg.Error:
            connection.close()
        resources().pool.putconn(connection)


def publish(org_id: int, email_id: Any, status: str, **extra: Any) -> None:
    """Tell the organization's open pages about a change this request committed (best effort)."""
    live.publish(resources().redis, settings().redis_prefix, org_id, email_id, status, **extra)


def publish_rows(rows: list[dict[str, Any]]) -> None:
    """Tell the open pages about many emails' changes this request committed (rows with id, org_id,
    status, next_attempt_at), in a few round trips (best effort)."""
    changes = [(r["org_id"], r["id"], r["status"], {"next_attempt_at": r["next_attempt_at"]}) for r in rows]
    live.publish_many(resources().redis, settings().redis_prefix, changes)


def publish_email(email: Email) -> None:
    """Tell the organization's open pages where this email now stands (``present.STATUS_FIELDS``, as the API
    names them)."""
    fields = present.email_json(email, only=present.STATUS_FIELDS)
    publish(email.org_id, fields.pop("id"), fields.pop("status"), **fields)
