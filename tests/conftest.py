"""Shared fixtures: a migrated template database cloned per test, a real SMTP
sink, and real worker processes. Nothing here is a mock."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import pathlib
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tasks.core import config, db, migrate
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, validation
from tasks.domain.models import User
from tests.support import procs
from tests.support.smtp_sink import Sink

# Web fixtures (app, client, sign_in, oauth_provider, server): tests/support/web.py.
pytest_plugins = ["tests.support.web"]

_counter = itertools.count()


def _server_url(dbname: str) -> str:
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


def _admin(sql: str) -> None:
    with psycopg.connect(_server_url("postgres"), autocommit=True) as conn:
        conn.execute(sql)  # names are generated here, never user input


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database migrated once per session, cloned for each test."""
    name = f"rdbx_tpl_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name}")
    _admin(f"CREATE DATABASE {name}")
    migrate.migrate(_server_url(name))
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"rdbx_t_{os.getpid()}_{next(_counter)}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield _server_url(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def module_database_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated database shared by one test module (for a server started once for it)."""
    name = f"rdbx_m_{os.getpid()}_{next(_counter)}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield _server_url(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with db.connect(database_url) as connection:
        yield connection


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def env(database_url: str, sink: Sink) -> dict[str, str]:
    """The environment of this test's processes: its database, its sink, quick retries."""
    return procs.process_env(
        database_url=database_url,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=f"rdbx-test-{os.getpid()}-{next(_counter)}:",
        smtp_port=sink.port,
        mail_domain="test.reachdbox.localhost",
    )


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return config.load(env)


@pytest.fixture
def owner(conn: Conn) -> User:
    return emails.ensure_user(conn, email="alice@example.com", name="Alice")


@pytest.fixture
def make_draft() -> Callable[..., validation.Draft]:
    """Build a valid draft; keyword arguments override its fields."""

    def make(**overrides: Any) -> validation.Draft:
        fields: dict[str, Any] = {
            "to": ["bob@example.com"],
            "subject": "Hello",
            "body_text": "Hi Bob",
            "send_at": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30),
        }
        return validation.validate(**(fields | overrides))

    return make


@pytest.fixture
def workers(env: dict[str, str], tmp_path: pathlib.Path, database_url: str) -> Iterator[procs.Workers]:
    """Start real worker processes; each call returns once its worker is registered."""
    started = procs.Workers(env, tmp_path, database_url)
    yield started
    started.stop_all()
