"""The benchmark's rig: private databases, a private Redis, the lean sink and worker processes,
started and stopped; and the CPU each stack's processes spend."""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
import redis

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
        log.parent.mkdir(parents=True, exist_ok=True)
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


@dataclasses.dataclass
class RedisServer:
    """A redis-server of the benchmark's own: nothing else touches it, so all its CPU is the stack's."""

    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        """Empty it between runs, so one run's leftovers (BullMQ keeps finished jobs) cost the next nothing."""
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def _answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()


@contextmanager
def private_redis(out: pathlib.Path) -> Iterator[RedisServer | None]:
    """A redis-server on a free port, in memory only (no RDB, no AOF); None without the binary."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(out)]
    server = RedisServer(port=port, proc=Proc(args, {"PATH": os.environ.get("PATH", "")}, out / "redis.log"))
    try:
        wait_until(server._answers, timeout=10, what="the private redis-server")
        yield server
    finally:
        server.proc.stop(10)


# CPU accounting: utime + stime from /proc/<pid>/stat, sampled before and after a
# measured window. A process is keyed by (pid, start time), so a pid reused
# within the window is not taken for the one before it. A process that ends
# inside the window is not counted (the stacks' processes live through it).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards), or None if gone."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rfind(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the sink's children, a worker's helpers)."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def database_backends(dbname: str) -> list[int]:
    """The PostgreSQL backends connected to ``dbname`` (asked from another database: not one of them)."""
    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchall()
    return [row[0] for row in rows]


class CpuMeter:
    """CPU seconds spent by groups of processes (workers, PostgreSQL, Redis, sink) over a window.

    Each group is a function returning its pids, called at both ends, so
    processes that appear within the window (a new backend) count from zero.
    """

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]]):
        self.groups = groups
        self._before: dict[str, dict[tuple[int, str], float]] = {}

    def _sample(self) -> dict[str, dict[tuple[int, str], float]]:
        sample: dict[str, dict[tuple[int, str], float]] = {}
        for group, pids in self.groups.items():
            sample[group] = {}
            for pid in pids():
                fields = _stat(pid)
                if fields is not None:
                    # Fields 14 and 15 (utime, stime) and 22 (start time), counted from 1.
                    sample[group][(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return sample

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds of each group since ``start``."""
        after = self._sample()
        return {
            group: sum(spent - self._before.get(group, {}).get(key, 0.0) for key, spent in procs.items())
            for group, procs in after.items()
        }


def cpu_per_email(spent: dict[str, float], emails: int) -> dict[str, float]:
    """``cpu_ms``: milliseconds of CPU per email, all groups together; ``cpu_<group>_pct``: each one's share."""
    total = sum(spent.values())
    out = {"cpu_ms": total * 1000 / emails if emails else float("nan")}
    for group, seconds in spent.items():
        out[f"cpu_{group}_pct"] = 100 * seconds / total if total else float("nan")
    return out


def stack_meter(
    *, workers: Callable[[], list[int]], sink: Sink, database: str | None = None, redis_pid: int | None = None
) -> CpuMeter:
    """A stack's processes in groups: its workers, its database's backends, its Redis, the sink.

    PostgreSQL's shared processes (WAL writer, checkpointer) serve every
    database on the server, other users' too, so they are not counted.
    """
    groups: dict[str, Callable[[], Iterable[int]]] = {
        "workers": lambda: [p for pid in workers() for p in descendants(pid)]
    }
    if database is not None:
        groups["postgres"] = lambda: database_backends(database)
    if redis_pid is not None:
        groups["redis"] = lambda: [redis_pid]
    sink_pid = sink.proc.pid if sink.proc is not None else None
    groups["sink"] = lambda: descendants(sink_pid) if sink_pid is not None else []
    return CpuMeter(groups)
