"""The embedded path: private PostgreSQL and Redis started (and stopped) on demand."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator

import psycopg
import pytest
import redis

from scripts import services
from tasks.core import localrun, migrate
from tests.support import procs
from tests.support.procs import wait_until
from tests.support.smtp_sink import free_port


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


def test_a_private_server_keeps_its_port_across_a_quick_restart(
    data_dir: pathlib.Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL copied from the last run stays valid: the port is remembered, and one whose last
    connections are still in TIME-WAIT (the server closed them: a restart) counts as free."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing there: a private Redis starts

    with services.services(data_dir) as first:
        client = redis.Redis.from_url(first["REDIS_URL"])
        assert client.ping()  # a connection the server closes when it stops: TIME-WAIT on its port
    port = urllib.parse.urlsplit(first["REDIS_URL"]).port
    in_time_wait = any(f"127.0.0.1:{port} " in line for line in _tcp_states("TIME-WAIT"))
    with services.services(data_dir) as second:
        pass

    assert in_time_wait, "the restart was not quick enough to test anything"
    assert second["REDIS_URL"] == first["REDIS_URL"]
    assert json.loads((data_dir / "ports.json").read_text())["redis"] == port


def _tcp_states(state: str) -> list[str]:
    result = subprocess.run(["ss", "-tan", "state", state.lower()], capture_output=True, text=True, check=True)
    return [line + " " for line in result.stdout.splitlines()]


# --- make run (scripts/run.py) ---
def _run_env(env: dict[str, str], tmp_path: pathlib.Path) -> dict[str, str]:
    """`make run` against the test's database and Redis (so it starts no server), on free ports."""
    return env | {
        "DEVMAIL_ADDR": f"127.0.0.1:{free_port()}",
        "WEB_BIND": f"127.0.0.1:{free_port()}",
        "MAIL_TRANSPORTS": "devmail://",
        localrun.DATA_DIR_VARIABLE: str(tmp_path),
        "LOG_FORMAT": "console",
    }


def _start_run(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.run"],
        env=env,
        cwd=procs.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group, as the terminal's foreground job
    )


def _read_until(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    """Read the output of ``proc`` until a line contains ``text`` (in a thread: reads block)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    found.wait(timeout)
    assert found.is_set(), "".join(lines)
    return "".join(lines)


def test_make_run_records_its_servers_for_other_terminals_and_prints_ready_commands(
    env: dict[str, str], tmp_path: pathlib.Path
) -> None:
    run_env = _run_env(env, tmp_path)
    proc = _start_run(run_env)
    try:
        banner = _read_until(proc, "Ctrl-C stops everything", timeout=120)
        record = localrun.read(tmp_path / "run.json")
        monitors = [kid for kid in procs.children(proc.pid) if "tasks monitor" in kid]
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert record is not None and record.pid == proc.pid
    assert len(monitors) == 1
    assert record.urls == {"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"]}
    assert f"export DATABASE_URL={env['DATABASE_URL']} REDIS_URL={env['REDIS_URL']}" in banner
    assert "-m tasks schedule --to you@example.com" in banner and '-m tasks url)" -c' in banner
    assert "/operators (no SLACK_WEBHOOK_URL: recorded only)" in banner  # the monitor runs too
    assert proc.returncode == 0, banner + rest
    assert not (tmp_path / "run.json").exists()  # removed when it stops


def _run_moment(proc: subprocess.Popen[str], moment: str) -> bool:
    """Tell whether `make run` has reached ``moment`` of its start."""
    if moment == "importing":  # scripts.services imports psycopg (libpq)
        return procs.maps(proc.pid, "libpq")
    kids = procs.children(proc.pid)
    if moment == "migrating":
        return any("tasks migrate" in kid for kid in kids)
    return any("tasks worker" in kid for kid in kids)  # "starting": the worker is being started


@pytest.mark.parametrize("moment", ["importing", "migrating", "starting"])
def test_ctrl_c_right_after_make_run_starts_stops_everything_quietly(
    env: dict[str, str], tmp_path: pathlib.Path, database_url: str, moment: str
) -> None:
    """The terminal sends SIGINT to its foreground group: whatever the start had reached, no
    traceback, exit code 0, no process left behind, no record left."""
    run_env = _run_env(env, tmp_path)
    proc = _start_run(run_env)
    try:
        wait_until(
            lambda: _run_moment(proc, moment) or proc.poll() is not None,
            timeout=60,
            interval=0.002,
            what=f"make run to reach {moment!r}",
        )
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    left = procs.processes_with_env(f"{localrun.DATA_DIR_VARIABLE}={tmp_path}")
    for pid in left:
        os.kill(pid, signal.SIGKILL)

    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert proc.returncode == 0, output
    assert left == [], output
    assert not (tmp_path / "run.json").exists()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone() == (0,)
