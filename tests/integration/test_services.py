"""The embedded path: private PostgreSQL and Redis started (and stopped) on demand."""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Iterator

import psycopg
import pytest

from scripts import services
from tasks.core import migrate


@pytest.fixture
def data_dir() -> Iterator[pathlib.Path]:
    # Under the project, not /tmp/pytest-of-root: the postgres user must be able to reach it.
    path = services.DATA / f"test-services-{os.getpid()}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_private_postgres_starts_migrates_and_stops(data_dir: pathlib.Path) -> None:
    started = services.Started()
    url = services.start_private_postgres(started, data_dir / "pg")
    try:
        services.ensure_database(url)
        applied = migrate.migrate(url)
    finally:
        started.stop_all()

    assert "0001_core.sql" in applied
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_a_private_redis_starts_and_stops(data_dir: pathlib.Path) -> None:
    started = services.Started()
    url = services.start_private_redis(started, data_dir / "redis")
    try:
        answered = services.redis_answers(url)
    finally:
        started.stop_all()

    assert answered
    assert not services.redis_answers(url)
