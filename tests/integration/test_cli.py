"""The operator's CLI: a real process, its output and exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core import localrun
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails
from tasks.domain.models import User
from tests.support import invariants, procs
from tests.support.procs import run_cli, wait_until
from tests.support.smtp_sink import Sink


def test_schedule_status_inspect_cancel(env: dict[str, str], conn: Conn) -> None:
    scheduled = run_cli(env, "schedule", "--to", "bob@example.com", "--subject", "Hi", "--body", "Body", "--in", "1h")
    email_id = scheduled.stdout.strip()

    status = run_cli(env, "status", "--json")
    inspected = run_cli(env, "inspect", email_id)
    cancelled = run_cli(env, "cancel", email_id)

    assert scheduled.returncode == 0, scheduled.stderr
    assert json.loads(status.stdout)["emails"]["scheduled"] == 1
    data = json.loads(inspected.stdout)
    assert data["email"]["id"] == email_id and "body_text" not in data["email"]
    assert [e["kind"] for e in data["events"]] == ["scheduled"]
    assert cancelled.returncode == 0 and cancelled.stdout.split() == [email_id, "cancelled"]
    owner = conn.execute("SELECT email FROM users").fetchone()
    assert owner == {"email": "dev@localhost"}


def test_bad_arguments_exit_2_with_a_message_and_store_nothing(env: dict[str, str], conn: Conn) -> None:
    base = ["schedule", "--subject", "Hi", "--body", "x"]
    cases = {
        "missing --to": [*base, "--in", "1m"],
        "bad duration": [*base, "--to", "b@example.com", "--in", "soon"],
        "bad address": [*base, "--to", "nobody", "--in", "1m"],
        "naive time": [*base, "--to", "b@example.com", "--at", "2030-01-01T09:00:00"],
        "past time": [*base, "--to", "b@example.com", "--at", "2001-01-01T09:00:00Z"],
        "header injection": [
            "schedule",
            "--to",
            "b@example.com",
            "--subject",
            "a\r\nBcc: x@evil.test",
            "--body",
            "x",
            "--in",
            "1m",
        ],
        "unknown command": ["explode"],
    }

    results = {name: run_cli(env, *args) for name, args in cases.items()}

    for name, result in results.items():
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.strip(), name
    assert "is not a valid email address" in results["bad address"].stderr
    assert "time zone offset" in results["naive time"].stderr
    assert "line break" in results["header injection"].stderr
    assert invariants.counts(conn) == {}


def test_an_unknown_email_exits_1(env: dict[str, str]) -> None:
    result = run_cli(env, "inspect", "00000000-0000-0000-0000-000000000000")

    assert result.returncode == 1
    assert "no email with id" in result.stderr


def test_an_invalid_setting_stops_the_cli_naming_it(env: dict[str, str]) -> None:
    result = run_cli(env | {"WORKER_CONCURRENCY": "lots"}, "worker")

    assert result.returncode == 2
    assert "WORKER_CONCURRENCY" in result.stderr


# --- the servers of `make run`, found from another terminal ---
def make_run_record(directory: pathlib.Path, database_url: str, redis_url: str, pid: int) -> dict[str, str]:
    """Write `.data/run.json` as a `make run` would, in a data directory of the test's own."""
    localrun.write(directory / "run.json", {"DATABASE_URL": database_url, "REDIS_URL": redis_url}, pid)
    return {localrun.DATA_DIR_VARIABLE: str(directory)}


def without_servers(env: dict[str, str]) -> dict[str, str]:
    """The environment of a new terminal: DATABASE_URL and REDIS_URL unset."""
    return {k: v for k, v in env.items() if k not in ("DATABASE_URL", "REDIS_URL")}


def test_the_cli_finds_the_servers_make_run_uses_when_the_environment_names_none(
    env: dict[str, str], conn: Conn, tmp_path: pathlib.Path
) -> None:
    """`make run` may use private servers on ports of its own: the commands typed in another
    terminal (no DATABASE_URL) reach them, not the defaults."""
    data = make_run_record(tmp_path, env["DATABASE_URL"], env["REDIS_URL"], os.getpid())  # a live pid
    shell = without_servers(env) | data

    scheduled = run_cli(shell, "schedule", "--to", "bob@example.com", "--subject", "Hi", "--body", "x", "--in", "1h")
    url = run_cli(shell, "url")
    redis_url = run_cli(shell, "url", "--redis")

    assert scheduled.returncode == 0, scheduled.stderr
    assert invariants.counts(conn) == {"scheduled": 1}
    assert url.stdout.strip() == env["DATABASE_URL"] and url.stderr == ""
    assert redis_url.stdout.strip() == env["REDIS_URL"]


def test_a_variable_set_in_the_environment_wins_over_the_record(
    env: dict[str, str], conn: Conn, tmp_path: pathlib.Path
) -> None:
    data = make_run_record(tmp_path, "postgresql://postgres@127.0.0.1:1/elsewhere", "redis://127.0.0.1:1/0", 1)

    status = run_cli(env | data, "status", "--json")
    url = run_cli(env | data, "url")

    assert status.returncode == 0, status.stderr
    assert url.stdout.strip() == env["DATABASE_URL"]
    assert status.stderr == url.stderr == ""  # the record is not even mentioned


def test_a_record_left_by_a_make_run_that_is_gone_is_named_with_what_to_do(
    env: dict[str, str], tmp_path: pathlib.Path
) -> None:
    """`make run` was killed and its private servers with it: the error says why, not just 'refused'."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    nowhere = "postgresql://postgres@127.0.0.1:1/reachdbox"
    data = make_run_record(tmp_path, nowhere, "redis://127.0.0.1:1/0", int(gone.stdout))
    shell = without_servers(env) | data

    status = run_cli(shell, "status")
    url = run_cli(shell, "url")

    assert status.returncode == 1
    assert "cannot reach the database" in status.stderr
    assert f"left by a `make run` that is no longer running (pid {gone.stdout.strip()})" in status.stderr
    assert "start `make run` again, or set DATABASE_URL" in status.stderr
    assert url.stdout.strip() == "postgresql://postgres@127.0.0.1:1/reachdbox"
    assert "no longer running" in url.stderr  # psql "$(… url)" would fail: say why on the terminal


def test_a_token_can_be_created_for_the_dev_user_as_the_readme_shows(env: dict[str, str], conn: Conn) -> None:
    """`dev@localhost` (DEV_USER_EMAIL's default) is not a deliverable address, but it is the dev login's user."""
    created = run_cli(env, "token", "create", "--user", "dev@localhost")
    refused = run_cli(env, "token", "create", "--user", "someone@localhost")

    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() and "for dev@localhost" in created.stderr
    assert conn.execute("SELECT email FROM users").fetchall() == [{"email": "dev@localhost"}]
    assert refused.returncode == 2 and "is not a valid email address" in refused.stderr


# --- Ctrl-C while the worker starts ---
def _signal_moment(proc: subprocess.Popen[str], conn: Conn, moment: str) -> bool:
    """Tell whether the worker has reached ``moment`` of its start."""
    if moment == "importing":  # tasks.cli imports psycopg (libpq) among the first
        return procs.maps(proc.pid, "libpq")
    if moment == "event loop":  # `worker` imports uvloop just before it starts its loop
        return procs.maps(proc.pid, "uvloop/loop")
    if moment == "connecting":  # its first connection to the database
        row = conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        return bool(row and row["n"])
    return bool(conn.execute("SELECT 1 FROM procrastinate_workers").fetchone())  # running


@pytest.mark.parametrize("moment", ["importing", "event loop", "connecting", "running"])
def test_ctrl_c_at_any_moment_of_the_worker_start_stops_it_quietly(
    env: dict[str, str], conn: Conn, moment: str
) -> None:
    """The terminal sends SIGINT to the whole process group, maybe while the worker still
    imports or connects: no traceback, exit code 0, nothing left registered."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks", "worker"],
        env=env,
        cwd=procs.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's job
    )
    try:
        wait_until(
            lambda: _signal_moment(proc, conn, moment) or proc.poll() is not None,
            timeout=30,
            interval=0.002,
            what=f"the worker to reach {moment!r}",
        )
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert proc.returncode == 0, output
    assert conn.execute("SELECT count(*) AS n FROM procrastinate_workers").fetchone() == {"n": 0}


@pytest.mark.slow
def test_the_concurrency_flag_sizes_the_smtp_connection_pool_too(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """``worker --concurrency 3`` over WORKER_CONCURRENCY=1: three emails due together are
    at the provider together, not one after the other through a pool of one connection."""
    sink.data_delay = 1.5  # each DATA takes this long: one at a time, three take 4.5 s
    workers("--concurrency", "3", extra_env={"WORKER_CONCURRENCY": "1"})
    send_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    for n in range(3):
        emails.schedule(conn, owner=owner, draft=make_draft(subject=f"Hello {n}", send_at=send_at), settings=settings)

    received = sink.wait_for(3, timeout=30)

    ends = sorted(r.at for r in received)
    assert ends[-1] - ends[0] < sink.data_delay, f"DATA ended {[round(e - ends[0], 2) for e in ends]} s apart"
