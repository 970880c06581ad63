"""What one web process holds (settings, a PostgreSQL pool, a Redis client) and per-request access to it."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import redis
from flask import Flask, current_app, g

from tasks.core import db, live
from tasks.core.config import Settings
from tasks.domain import present
from tasks.domain.models import Email

KEY = "reachdbox"


@dataclasses.dataclass(kw_only=True)
class Resources:
    settings: Settings
    pool: db.Pool
    redis: redis.Redis

    def close(self) -> None:
        """Release the pool and Redis connections (tests and shutdown)."""
        self.pool.close()
        self.redis.close()


def init_app(app: Flask, settings: Settings) -> Resources:
    """Open this process's pool and Redis client and hang them on the app."""
    resources = Resources(
        settings=settings,
        pool=db.pool(settings.database_url, max_size=20, name="reachdbox-web"),
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
    """Return this request's database connection (autocommit; borrowed from the pool once)."""
    if "db_conn" not in g:
        g.db_conn = resources().pool.getconn()
    return cast(db.Conn, g.db_conn)


def _release(exc: BaseException | None) -> None:
    connection = g.pop("db_conn", None)
    if connection is not None:
        resources().pool.putconn(connection)


def publish(owner_id: int, email_id: Any, status: str, **extra: Any) -> None:
    """Tell the owner's open pages about a change this request committed (best effort)."""
    live.publish(resources().redis, settings().redis_prefix, owner_id, email_id, status, **extra)


def publish_email(email: Email) -> None:
    """Tell the owner's open pages where this email now stands (``present.STATUS_FIELDS``, as the API names them)."""
    fields = present.email_json(email, only=present.STATUS_FIELDS)
    publish(email.owner_id, fields.pop("id"), fields.pop("status"), **fields)
