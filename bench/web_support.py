"""Shared set-up for the web benchmarks: a scratch database, a gunicorn, a signed-in user."""

from __future__ import annotations

import contextlib
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator

import psycopg
import requests

from tasks.core import db, migrate
from tasks.domain import emails, tokens

ROOT = pathlib.Path(__file__).resolve().parents[1]


def server_url(dbname: str) -> str:
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(base)._replace(path="/" + dbname))


@contextlib.contextmanager
def kept_database(name: str) -> Iterator[tuple[str, bool]]:
    """Create and migrate the database ``name`` unless it exists; keep it afterwards.

    Yields its URL and whether it was just created (empty). For benchmarks whose data takes
    minutes to load, run again and again: it is migrated on each use (new migrations apply).
    """
    if not name.isidentifier():
        raise SystemExit(f"--keep: {name!r} is not a database name (letters, digits, _)")
    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if not exists:
            conn.execute(f"CREATE DATABASE {name}")  # checked above: an identifier
    migrate.migrate(server_url(name))
    yield server_url(name), not exists


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """Create and migrate a database of our own; drop it afterwards."""
    name = f"rdbx_bench_{os.getpid()}"
    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")  # generated name
        conn.execute(f"CREATE DATABASE {name}")
    try:
        migrate.migrate(server_url(name))
        yield server_url(name)
    finally:
        with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_env(database_url: str, **extra: str) -> dict[str, str]:
    return os.environ | {
        "APP_ENV": "development",
        "DATABASE_URL": database_url,
        "REDIS_PREFIX": f"rdbx-bench-{os.getpid()}:",
        "API_RATE_LIMIT": "1000000/minute",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        **extra,
    }


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *args: str) -> Iterator[str]:
    """Run the web app as production does (gunicorn.conf.py); yield its base URL."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args, "webapp:create_app()"],
        env=env | {"WEB_BIND": f"127.0.0.1:{port}"},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still booting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start; see {log.name}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def api_token(database_url: str, email: str = "bench@example.com") -> str:
    with db.connect(database_url) as conn:
        user = emails.ensure_user(conn, email=email, name="Bench")
        return tokens.create(conn, user, "bench")[1]


def pct(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def table(title: str, columns: list[str], rows: list[list[object]]) -> str:
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    line = "  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


median = statistics.median
