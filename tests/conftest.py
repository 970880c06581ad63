"""Shared fixtures: a migrated template database cloned per test, a real SMTP
sink, and real worker processes. Nothing here is a mock."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import pathlib
import queue
import threading
import time
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


#: Test databases that may wait to be dropped (a copy of the template is about 10 MB).
BEHIND = 20


class Copies:
    """Copies of the template database, made one test ahead and dropped behind, by a thread.

    Copying the template (CREATE DATABASE ... TEMPLATE writes all of it to the WAL) and
    dropping a test's database (WITH (FORCE)) each take from tens of milliseconds to a second
    or more when the machine is busy, mostly waiting for the disk: done by this thread while
    the tests run, a test waits for neither. Each test still gets a database of its own,
    copied from the template and never used before.
    """

    def __init__(self, template: str):
        self.template = template
        self.spare: str | None = None
        self.jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.lock = threading.Lock()  # held while the spare is being made
        self.failed: list[str] = []  # drops that failed, reported at the end of the session
        self.thread = threading.Thread(target=self._run, name="test-databases", daemon=True)
        self.thread.start()
        self._make_spare()

    def _copy(self) -> str:
        name = f"rdbx_t_{os.getpid()}_{next(_counter)}"
        for attempt in itertools.count():
            try:
                _admin(f"CREATE DATABASE {name} TEMPLATE {self.template}")
                return name
            except psycopg.errors.ObjectInUse:  # a test reading the template (test_migrate.py)
                if attempt >= 100:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def _make_spare(self) -> None:
        self.jobs.put(("spare", ""))

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            kind, name = job
            try:
                if kind == "drop":
                    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                else:
                    with self.lock:
                        if self.spare is None:
                            self.spare = self._copy()
            except psycopg.Error as exc:  # no spare: the next test copies the template itself
                if kind == "drop":
                    self.failed.append(f"{name}: {exc}")
            finally:
                self.jobs.task_done()

    def take(self) -> str:
        """A fresh copy of the template (the spare if it is ready, else one made now); the next is begun."""
        with self.lock:
            name, self.spare = self.spare, None
        name = name or self._copy()
        self._make_spare()
        return name

    def drop(self, name: str) -> None:
        self.jobs.put(("drop", name))
        if self.jobs.qsize() > BEHIND:  # short tests outrun the drops: let them catch up
            self.jobs.join()

    def close(self) -> None:
        """Finish the queued work and drop the spare; fail if a test's database could not be dropped."""
        self.jobs.put(None)
        self.thread.join(timeout=120)
        if self.spare:
            _admin(f"DROP DATABASE IF EXISTS {self.spare} WITH (FORCE)")
        assert not self.failed, f"test databases left behind: {self.failed}"


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database migrated once per session, cloned for each test."""
    name = f"rdbx_tpl_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name}")
    _admin(f"CREATE DATABASE {name}")
    migrate.migrate(_server_url(name))
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def copies(template_db: str) -> Iterator[Copies]:
    made = Copies(template_db)
    yield made
    made.close()


@pytest.fixture
def database_url(copies: Copies) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = copies.take()
    yield _server_url(name)
    copies.drop(name)


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
