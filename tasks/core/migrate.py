"""Apply the database schema: Procrastinate's, then ``sql/migrations/NNNN_*.sql`` in order.

Each migration runs in its own transaction and is recorded in
``schema_migrations`` with a checksum. A session advisory lock serialises
concurrent runs, so two processes starting at once are safe and a second run
is a no-op. Procrastinate's own migration files are tracked the same way, so an
upgrade of the library applies the ones it adds.

``sql/migrations/CHECKSUMS`` records every text of ours that a database may
have run (``sql/migrations/README.md``): besides the files themselves, an
earlier text of an edited file and a retired (deleted) file are accepted when a
database recorded them, so no database is refused for history it cannot undo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re
from typing import Literal, get_args

import structlog
from procrastinate import schema as procrastinate_schema

from tasks.core import db, errors

log = structlog.get_logger("tasks.core.migrate")

#: Arbitrary, fixed: the advisory lock all migrators of this project share.
LOCK_KEY = 0x5EAC_DB0C
MIGRATIONS_DIR = db.SQL_DIR / "migrations"
_OURS = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")
CHECKSUMS_NAME = "CHECKSUMS"
#: ``applies``: the text of the file in the folder; ``earlier``: a text it had
#: before an edit that changed nothing it does; ``retired``: a deleted file's text.
State = Literal["applies", "earlier", "retired"]
STATES: tuple[State, ...] = get_args(State)

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def checksum(text: str) -> str:
    """The sha256 recorded for a migration's text (in ``schema_migrations`` and ``CHECKSUMS``)."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Recorded:
    """One line of ``CHECKSUMS``: a text of migration ``name`` that is known."""

    name: str
    checksum: str
    state: State


def recorded(folder: pathlib.Path | None = None) -> list[Recorded]:
    """Read ``CHECKSUMS`` in ``folder`` (the migrations folder by default)."""
    path = (folder or MIGRATIONS_DIR) / CHECKSUMS_NAME
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise errors.ReachError(f"{path} is missing: it records the checksum of every migration") from None
    entries: list[Recorded] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3 or not _OURS.match(fields[0]) or not re.fullmatch(r"[0-9a-f]{64}", fields[1]):
            raise errors.ReachError(f"{path.name} line {number}: expected NAME SHA256 STATE, got {line!r}")
        name, digest, state = fields
        if state not in STATES:
            raise errors.ReachError(f"{path.name} line {number}: state {state!r} is not one of {', '.join(STATES)}")
        entries.append(Recorded(name, digest, state))
    return entries


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


def _record(conn: db.Conn, name: str, checksum: str) -> None:
    conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)", (name, checksum))


def _execute(conn: db.Conn, text: str) -> None:
    # Without parameters psycopg sends the text as is: '%' in the SQL stays '%'.
    # (The files are this project's or Procrastinate's: SQL we trust, not user input.)
    conn.execute(text)


def _check_gone(applied: dict[str, str], present: set[str], accepted: dict[str, set[str]]) -> None:
    """Refuse a database that ran a retired migration in a text never committed.

    A name neither in the folder nor recorded comes from a newer checkout of the
    project: accepted, with a warning, as it always was.
    """
    for name, digest in sorted(applied.items()):
        if name.startswith("procrastinate/") or name in present:
            continue
        if name not in accepted:
            log.warning("applied migration unknown to this version", migration=name)
        elif digest not in accepted[name]:
            raise errors.ReachError(f"retired migration {name} was applied in a text that CHECKSUMS does not record")


def migrate(conninfo: str) -> list[str]:
    """Bring the database at ``conninfo`` up to date; return the names applied."""
    applied_now: list[str] = []
    files = our_files()
    # Texts a database may have run besides the files' own: earlier and retired ones.
    accepted: dict[str, set[str]] = {}
    for entry in recorded():
        if entry.state != "applies":
            accepted.setdefault(entry.name, set()).add(entry.checksum)
    with db.connect(conninfo) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(_CREATE_TABLE)
            applied = {r["name"]: r["checksum"] for r in conn.execute("SELECT name, checksum FROM schema_migrations")}
            _check_gone(applied, {p.name for p in files}, accepted)

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
                            _record(conn, name, checksum(path.read_text(encoding="utf-8")))
                        applied_now.append(name)

            for path in files:
                text = path.read_text(encoding="utf-8")
                digest = checksum(text)
                if path.name in applied:
                    if applied[path.name] != digest and applied[path.name] not in accepted.get(path.name, set()):
                        raise errors.ReachError(
                            f"migration {path.name} changed after it was applied; add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    _execute(conn, text)
                    _record(conn, path.name, digest)
                applied_now.append(path.name)
                log.info("migration applied", migration=path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now
