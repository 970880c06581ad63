"""Fault-injection fixtures: private PostgreSQL and Redis the tests may kill and restart.

One private server of each per session (a migrated template database on the
PostgreSQL), a fresh database cloned from it per test, the real SMTP sink
(``sink`` from tests/conftest.py) and real worker processes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import pathlib
from collections.abc import Callable, Iterator

import pytest

from tasks.core import config, db, migrate
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, validation
from tasks.domain.models import Email, User
from tests.support import procs
from tests.support.servers import PrivatePostgres, PrivateRedis
from tests.support.smtp_sink import Sink

_counter = itertools.count()
TEMPLATE = "rdbx_fault_tpl"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of the session's own, with a migrated template database."""
    server = PrivatePostgres().start()
    server.admin(f"CREATE DATABASE {TEMPLATE}")
    migrate.migrate(server.url(TEMPLATE))
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.destroy()


@pytest.fixture
def fault_db(private_pg: PrivatePostgres) -> Iterator[str]:
    """A fresh migrated database on the private server; its URL."""
    if not private_pg.answers():  # a previous test may have left it stopped or killed
        private_pg.start()
    name = f"rdbx_fault_{next(_counter)}"
    private_pg.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield private_pg.url(name)
    if not private_pg.answers():
        private_pg.start()
    private_pg.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def fault_env(fault_db: str, private_redis: PrivateRedis, sink: Sink) -> dict[str, str]:
    """The environment of this test's processes: private PG/Redis, its sink, quick retries."""
    return procs.process_env(
        database_url=fault_db,
        redis_url=private_redis.url,
        redis_prefix=f"rdbx-fault-{os.getpid()}-{next(_counter)}:",
        smtp_port=sink.port,
        mail_domain="faults.reachdbox.localhost",
    )


@pytest.fixture
def fault_settings(fault_env: dict[str, str]) -> Settings:
    return config.load(fault_env)


@pytest.fixture
def fault_conn(fault_db: str) -> Iterator[Conn]:
    """An autocommit connection to the test's database (reconnect with ``db.connect`` after a restart)."""
    with db.connect(fault_db) as connection:
        yield connection


@pytest.fixture
def fault_workers(fault_env: dict[str, str], tmp_path: pathlib.Path, fault_db: str) -> Iterator[procs.Workers]:
    """Start real worker processes; each call returns once its worker is registered (``wait=False``: at once)."""
    started = procs.Workers(fault_env, tmp_path, fault_db)
    yield started
    started.stop_all()


@pytest.fixture
def fault_owner(fault_conn: Conn) -> User:
    return emails.ensure_user(fault_conn, email="faults@example.com", name="Fault Tester")


def schedule_emails(
    conn: Conn,
    owner: User,
    settings: Settings,
    n: int,
    *,
    at: dt.datetime | None = None,
    prefix: str = "fault",
) -> list[Email]:
    """Schedule ``n`` emails due at ``at`` (default: now) through the real domain code."""
    send_at = at or dt.datetime.now(dt.UTC)
    made = []
    for i in range(n):
        draft = validation.validate(
            to=[f"rcpt{i}@example.com"], subject=f"{prefix} #{i}", body_text=f"body {i}", send_at=send_at
        )
        made.append(emails.schedule(conn, owner=owner, draft=draft, settings=settings)[0])
    return made


@pytest.fixture
def schedule(fault_conn: Conn, fault_owner: User, fault_settings: Settings) -> Callable[..., list[Email]]:
    """``schedule(n, at=None)``: n emails for the test's user, due at ``at``."""

    def make(n: int, *, at: dt.datetime | None = None, prefix: str = "fault") -> list[Email]:
        return schedule_emails(fault_conn, fault_owner, fault_settings, n, at=at, prefix=prefix)

    return make
