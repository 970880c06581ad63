"""Migrations: idempotent, safe to run from two processes at once."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.core import db, migrate
from tests.conftest import _admin, _server_url
from tests.support.procs import ROOT


@pytest.fixture
def empty_db() -> Iterator[str]:
    name = f"rdbx_empty_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name}")
    _admin(f"CREATE DATABASE {name}")
    yield _server_url(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def schema_of(url: str) -> list[Any]:
    """Every table, column, index and constraint: what 'one consistent schema' means."""
    with db.connect(url) as conn:
        return conn.execute(
            """
            SELECT 'column' AS kind, table_name || '.' || column_name || ' ' || data_type AS what
              FROM information_schema.columns WHERE table_schema = 'public'
            UNION ALL SELECT 'index', indexname FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL SELECT 'constraint', conname FROM pg_constraint
                       JOIN pg_namespace n ON n.oid = connamespace WHERE n.nspname = 'public'
            ORDER BY 1, 2
            """
        ).fetchall()


def test_applying_twice_changes_nothing_the_second_time(empty_db: str) -> None:
    first = migrate.migrate(empty_db)
    schema = schema_of(empty_db)

    second = migrate.migrate(empty_db)

    assert first[0] == "procrastinate/schema.sql" and "0001_core.sql" in first
    assert second == []
    assert schema_of(empty_db) == schema


def test_two_processes_at_once_leave_one_consistent_schema(empty_db: str, template_db: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_db, "LOG_FORMAT": "json"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tasks", "migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run(), range(2)))

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    outputs = sorted(r.stdout.strip().splitlines()[-1] for r in results)
    assert outputs[0].startswith("applied: procrastinate/schema.sql") and outputs[1] == "up to date"
    assert schema_of(empty_db) == schema_of(_server_url(template_db))
    with db.connect(empty_db) as conn:
        names = [r["name"] for r in conn.execute("SELECT name FROM schema_migrations WHERE name NOT LIKE 'procr%'")]
    assert names == [p.name for p in migrate.our_files()]


def test_a_migration_edited_after_it_was_applied_is_refused(empty_db: str, tmp_path: Any, monkeypatch: Any) -> None:
    migrate.migrate(empty_db)
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in migrate.our_files():
        (folder / path.name).write_text(path.read_text() + "\n-- edited\n")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", folder)

    with pytest.raises(Exception, match="changed after it was applied"):
        migrate.migrate(empty_db)
