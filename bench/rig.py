"""The benchmark's rig: private databases, the lean sink and worker processes, started and stopped."""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg

from bench import sink as sink_module
from tasks.core import db

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORK = ROOT / ".data" / "bench"
PYTHON = sys.executable
queries = db.load_queries(pathlib.Path(__file__).with_name("queries.sql"))
_names = itertools.count()


def server_url(dbname: str) -> str:
    """The URL of ``dbname`` on the server DATABASE_URL names."""
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


def admin(statement: LiteralString, dbname: str = "postgres") -> None:
    """Run one statement on the server, outside a transaction (CREATE/DROP DATABASE)."""
    with psycopg.connect(server_url(dbname), autocommit=True) as conn:
        conn.execute(statement)


def unique_name(kind: str) -> str:
    return f"rdbx_bench_{kind}_{os.getpid()}_{next(_names)}"


def create_database(name: str, template: str | None = None) -> str:
    """Create a database (a copy of ``template`` if given); return its URL."""
    # Names come from unique_name(), never from input.
    statement = f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
    admin(statement)
    return server_url(name)


def drop_database(name: str) -> None:
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def wait_until(check: Callable[[], Any], *, timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (from /proc)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: pathlib.Path):
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


@dataclasses.dataclass
class Sink:
    """The lean SMTP sink, in its own processes, recording into ``out``."""

    out: pathlib.Path
    port: int
    procs: int = 2
    proc: Proc | None = None

    def start(self) -> Sink:
        self.out.mkdir(parents=True, exist_ok=True)
        for old in self.out.glob("received-*.log"):
            old.unlink()
        self.proc = Proc(
            [PYTHON, "-m", "bench.sink", "--port", str(self.port), "--out", str(self.out), "--procs", str(self.procs)],
            dict(os.environ),
            self.out / "sink.log",
        )
        wait_until(self._listening, timeout=10, what="the sink to listen")
        return self

    def _listening(self) -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def count(self) -> int:
        return sink_module.count(self.out)

    def received(self) -> list[tuple[float, str]]:
        return sink_module.read(self.out)

    def wait_for(self, n: int, timeout: float) -> float:
        """Wait until ``n`` messages arrived; return the time of the last one seen."""
        wait_until(lambda: self.count() >= n, timeout=timeout, interval=0.05, what=f"{n} messages at the sink")
        time.sleep(0.05)  # the sink flushes every 20 ms
        return max(at for at, _ in self.received())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(10)
            self.proc = None


@contextmanager
def sink(out: pathlib.Path, procs: int = 2) -> Iterator[Sink]:
    server = Sink(out=out, port=free_port(), procs=procs).start()
    try:
        yield server
    finally:
        server.stop()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def lateness_stats(lateness: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of lateness, in milliseconds."""
    ms = [x * 1000 for x in lateness]
    return {
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
    }


def max_in_window(times: list[float], window: float) -> int:
    """The most messages any half-open window of ``window`` seconds holds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
