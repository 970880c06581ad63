"""Apply the database schema: Procrastinate's, then ``sql/migrations/NNNN_*.sql`` in order.

Each migration runs in its own transaction and is recorded in
``schema_migrations`` with a checksum. A session advisory lock serialises
concurrent runs, so two processes starting at once are safe and a second run
is a no-op. Procrastinate's own migration files are tracked the same way, so an
upgrade of the library applies the ones it adds.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
from typing import Any, LiteralString, cast

import psycopg
import structlog
from procrastinate import schema as procrastinate_schema

from tasks.core import db, errors

log = structlog.get_logger("tasks.core.migrate")

#: Arbitrary, fixed: the advisory lock all migrators of this project share.
LOCK_KEY = 0x5EAC_DB0C
MIGRATIONS_DIR = db.SQL_DIR / "migrations"
_OURS = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _procrastinate_files() -> list[pathlib.Path]:
    folder = pathlib.Path(procrastinate_schema.SchemaManager.get_migrations_path())
    return sorted(folder.glob("*.sql"))


def our_files() -> list[pathlib.Path]:
    """Return this project's migration files in the order they apply."""
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    for path in files:
        if not _OURS.match(path.name):
            raise errors.ReachError(f"migration file {path.name} is not named NNNN_name.sql")
    return files


def _record(conn: psycopg.Connection[Any], name: str, checksum: str) -> None:
    conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)", (name, checksum))


def _execute(conn: psycopg.Connection[Any], text: str) -> None:
    # Without parameters psycopg sends the text as is: '%' in the SQL stays '%'.
    conn.execute(cast(LiteralString, text))


def migrate(conninfo: str) -> list[str]:
    """Bring the database at ``conninfo`` up to date; return the names applied."""
    applied_now: list[str] = []
    with db.connect(conninfo) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(_CREATE_TABLE)
            applied = {r["name"]: r["checksum"] for r in conn.execute("SELECT name, checksum FROM schema_migrations")}

            procrastinate_names = [f"procrastinate/{p.name}" for p in _procrastinate_files()]
            if not any(name.startswith("procrastinate/") for name in applied):
                exists = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS e").fetchone()
                if exists and exists["e"]:
                    raise errors.ReachError(
                        "procrastinate_jobs exists but schema_migrations does not record it: "
                        "this database was set up by something else; migrate an empty database"
                    )
                # schema.sql is the library's current truth: it includes every migration file.
                with conn.transaction():
                    _execute(conn, procrastinate_schema.SchemaManager.get_schema())
                    for name in procrastinate_names:
                        _record(conn, name, "schema.sql")
                applied_now.append("procrastinate/schema.sql")
            else:
                for path in _procrastinate_files():
                    name = f"procrastinate/{path.name}"
                    if name not in applied:
                        with conn.transaction():
                            _execute(conn, path.read_text(encoding="utf-8"))
                            _record(conn, name, _checksum(path.read_text(encoding="utf-8")))
                        applied_now.append(name)

            for path in our_files():
                text = path.read_text(encoding="utf-8")
                checksum = _checksum(text)
                if path.name in applied:
                    if applied[path.name] != checksum:
                        raise errors.ReachError(
                            f"migration {path.name} changed after it was applied; add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    _execute(conn, text)
                    _record(conn, path.name, checksum)
                applied_now.append(path.name)
                log.info("migration applied", migration=path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now
