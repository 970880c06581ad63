"""Migrations: idempotent, safe to run from two processes at once; databases with
a history (an earlier text, a retired migration) are accepted and end up with the
same schema as a new one, which is sql/schema.sql."""

from __future__ import annotations

import concurrent.futures
import difflib
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from scripts import migrations as tool
from tasks.core import db, errors, migrate
from tests.conftest import _admin, _server_url
from tests.support.procs import ROOT

#: 0006_fetch_plan.sql's comment as first committed (then reworded: CHECKSUMS, `earlier`).
FIRST_0006_COMMENT = (
    '-- "scheduled_at IS NULL OR scheduled_at <= now()"; this one serves only\n'
    '-- "the next future job" (scheduled_at > now() implies NOT NULL).\n'
)
REWORDED_0006_COMMENT = (
    '-- "scheduled_at IS NULL OR scheduled_at <= now()"; this one serves only the\n'
    '-- timer\'s "earliest scheduled todo job" (queries.sql, seconds_to_next_job).\n'
)
#: The text of 0008_spread.sql, deleted after databases had run it (CHECKSUMS, `retired`).
RETIRED_0008 = """\
-- A user's due emails without a rate-limit slot, in due order: the rest of a
-- burst that the send task queues at their turns in bulk (queries.sql,
-- spread_candidates) \u2014 found without sorting the user's whole backlog.
CREATE INDEX emails_owner_unslotted_due_idx ON emails (owner_id, next_attempt_at, id)
    WHERE status = 'scheduled' AND rate_slot IS NULL;
"""


@pytest.fixture
def empty_db() -> Iterator[str]:
    name = f"rdbx_empty_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name}")
    _admin(f"CREATE DATABASE {name}")
    yield _server_url(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


#: The delivery state's columns of an email (0019), none until a provider says something.
DELIVERY_COLUMNS = ("delivery", "delivery_at", "bounce_type", "delivery_detail", "list_unsubscribe")


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
    (folder / "CHECKSUMS").write_text((migrate.MIGRATIONS_DIR / "CHECKSUMS").read_text())
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", folder)

    with pytest.raises(Exception, match="changed after it was applied"):
        migrate.migrate(empty_db)


def older_tree(tmp_path: pathlib.Path, texts: dict[str, str]) -> pathlib.Path:
    """A migrations folder as an older checkout had it: ``texts`` by name, and CHECKSUMS."""
    folder = tmp_path / "older"
    folder.mkdir()
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "CHECKSUMS").write_text((migrate.MIGRATIONS_DIR / "CHECKSUMS").read_text())
    return folder


def texts_before(number: str) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in migrate.our_files() if p.name < number}


def recorded_checksum(name: str) -> list[tuple[str, str]]:
    return [(e.checksum, e.state) for e in migrate.recorded() if e.name == name]


def index_exists(url: str, name: str) -> bool:
    with db.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS e", (name,)).fetchone()
    return bool(row and row["e"])


def test_a_database_that_ran_0006s_first_text_is_accepted(
    empty_db: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = (migrate.MIGRATIONS_DIR / "0006_fetch_plan.sql").read_text(encoding="utf-8")
    assert REWORDED_0006_COMMENT in now
    first = now.replace(REWORDED_0006_COMMENT, FIRST_0006_COMMENT)
    assert (migrate.checksum(first), "earlier") in recorded_checksum("0006_fetch_plan.sql")
    older = older_tree(tmp_path, texts_before("0007") | {"0006_fetch_plan.sql": first})
    with monkeypatch.context() as patch:
        patch.setattr(migrate, "MIGRATIONS_DIR", older)
        migrate.migrate(empty_db)

    applied = migrate.migrate(empty_db)

    assert "0006_fetch_plan.sql" not in applied and "0007_ops.sql" in applied
    with db.connect(empty_db) as conn:
        row = conn.execute("SELECT checksum FROM schema_migrations WHERE name = '0006_fetch_plan.sql'").fetchone()
    assert row is not None and row["checksum"] == migrate.checksum(first)
    assert tool.dump_schema(empty_db) == tool.SCHEMA_FILE.read_text(encoding="utf-8")


def test_a_database_that_ran_retired_0008_loses_its_index_to_0009(
    empty_db: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not (migrate.MIGRATIONS_DIR / "0008_spread.sql").exists()
    assert recorded_checksum("0008_spread.sql") == [(migrate.checksum(RETIRED_0008), "retired")]
    older = older_tree(tmp_path, texts_before("0008") | {"0008_spread.sql": RETIRED_0008})
    with monkeypatch.context() as patch:
        patch.setattr(migrate, "MIGRATIONS_DIR", older)
        migrate.migrate(empty_db)
    assert index_exists(empty_db, "emails_owner_unslotted_due_idx")

    applied = migrate.migrate(empty_db)

    assert "0009_drop_spread_leftovers.sql" in applied
    assert not index_exists(empty_db, "emails_owner_unslotted_due_idx")
    assert tool.dump_schema(empty_db) == tool.SCHEMA_FILE.read_text(encoding="utf-8")
    assert migrate.migrate(empty_db) == []


def test_a_retired_migration_in_a_text_never_committed_is_refused(empty_db: str) -> None:
    migrate.migrate(empty_db)
    with db.connect(empty_db) as conn:
        conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES ('0008_spread.sql', 'other')")

    with pytest.raises(errors.ReachError, match="retired migration 0008_spread.sql"):
        migrate.migrate(empty_db)


def test_the_migrations_build_sql_schema_sql(database_url: str) -> None:
    """A database built by the migrations (the template every test clones) is sql/schema.sql."""
    built = tool.dump_schema(database_url)
    snapshot = tool.SCHEMA_FILE.read_text(encoding="utf-8")

    if built != snapshot:
        diff = "".join(
            difflib.unified_diff(
                snapshot.splitlines(keepends=True),
                built.splitlines(keepends=True),
                "sql/schema.sql",
                "migrated database",
            )
        )
        pytest.fail(f"the migrations build another schema than sql/schema.sql: run `make schema`\n{diff}")


def test_0012_gives_every_user_a_personal_organization_and_moves_their_rows_into_it(
    empty_db: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run on a database with data in it: nothing is lost, nothing changes owner or time."""
    with monkeypatch.context() as patch:
        patch.setattr(migrate, "MIGRATIONS_DIR", older_tree(tmp_path, texts_before("0012")))
        migrate.migrate(empty_db)
    with db.connect(empty_db) as conn:
        conn.execute("INSERT INTO users (email, name) VALUES ('ann@example.com', 'Ann'), ('ben@example.com', '')")
        conn.execute(
            """INSERT INTO batches (owner_id, subject_template, total, start_at, idempotency_key)
               SELECT id, 'b', 1, now(), 'k' FROM users"""
        )
        conn.execute(
            """INSERT INTO emails (owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                                   message_id, idempotency_key, batch_id, updated_at)
               SELECT u.id, 'f@example.com', ARRAY['t@example.com'], 's' || n, 'b', now(), now(),
                      '<' || u.id || '-' || n || '@x>', 'key' || n,
                      CASE WHEN n = 1 THEN (SELECT id FROM batches b WHERE b.owner_id = u.id) END,
                      now() - interval '3 days'
                 FROM users u, generate_series(1, 3) AS n"""
        )
        conn.execute("INSERT INTO email_events (email_id, kind, detail) SELECT id, 'scheduled', '{}' FROM emails")
        conn.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix) SELECT id, 'ci', 'h' || id, 'p' FROM users"
        )
        conn.execute(
            "INSERT INTO chart_owner_minutes (minute, owner_id, kind, n)"
            " SELECT date_trunc('minute', now()), id, 'sent', 2 FROM users"
        )
        before = {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # our table names
            for table in ("users", "emails", "email_events", "batches", "api_tokens", "chart_owner_minutes")
        }

    applied = migrate.migrate(empty_db)

    assert "0012_organizations.sql" in applied
    with db.connect(empty_db) as conn:
        orgs = conn.execute(
            """SELECT m.user_id, m.org_id, m.role, o.name FROM memberships m JOIN organizations o ON o.id = m.org_id
                ORDER BY m.user_id"""
        ).fetchall()
        org_of = {r["user_id"]: r["org_id"] for r in orgs}
        assert [(r["role"], r["name"]) for r in orgs] == [("owner", "Ann"), ("owner", "ben@example.com")]
        assert len(set(org_of.values())) == 2
        for table, rows in before.items():
            after = conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            assert len(after) == len(rows), table
            for old, new in zip(rows, after, strict=True):
                # Every column as it was (updated_at included), plus org_id (and a token's scopes),
                # and an email's recurrence, none (0014), its provider's message id, none (0018), and its
                # delivery state, none (0019), applied in the same run; the columns 0020 computes
                # from the row (recipients, their domains, reply code); and a batch's completion, none
                # while an email of it waits (0016).
                added = (
                    "org_id",
                    "scopes",
                    "recurrence_id",
                    "occurrence_at",
                    "provider_message_id",
                    *DELIVERY_COLUMNS,
                    "recipients",
                    "recipient_domains",
                    "reply_code",
                    "completed_at",
                )
                assert {k: v for k, v in new.items() if k not in added} == old, table
                assert new.get("recurrence_id") is None and new.get("occurrence_at") is None, table
                assert new.get("provider_message_id") is None and new.get("completed_at") is None, table
                assert all(not new.get(c) for c in DELIVERY_COLUMNS), table
                if table in ("emails", "batches", "chart_owner_minutes"):
                    assert new["org_id"] == org_of[new["owner_id"]], table
                if table == "emails":
                    assert new["recipients"] == " ".join(old["to_addrs"] + old["cc_addrs"] + old["bcc_addrs"])
                if table == "api_tokens":
                    assert new["org_id"] == org_of[new["user_id"]] and new["scopes"] == ["send", "read", "admin"]
        events = conn.execute(
            "SELECT count(*) AS n FROM email_events ev JOIN emails e ON e.id = ev.email_id WHERE ev.org_id <> e.org_id"
        ).fetchone()
        assert events == {"n": 0}
        # A user created afterwards gets a personal organization too.
        conn.execute("INSERT INTO users (email) VALUES ('cy@example.com')")
        row = conn.execute(
            "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = 'cy@example.com'"
        ).fetchone()
        assert row == {"role": "owner"}
    assert tool.dump_schema(empty_db) == tool.SCHEMA_FILE.read_text(encoding="utf-8")
