"""Run the project's real processes (worker, CLI) against a test database."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

ROOT = pathlib.Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_until(
    check: Callable[[], T | Literal[False] | None], *, timeout: float, interval: float = 0.02, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

    Typed so that ``lambda: cond and value`` gives back ``value``'s type.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tasks ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "tasks", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Process:
    """A child process whose output goes to a log file kept for the test report."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: pathlib.Path):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like a crash."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None:
                self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def start_worker(env: dict[str, str], log_dir: pathlib.Path, *args: str, **kw: Any) -> Process:
    """Start ``python -m tasks worker`` (a real process, as in production)."""
    n = len(list(log_dir.glob("worker-*.log")))
    return Process([sys.executable, "-m", "tasks", "worker", *args], env, log_dir / f"worker-{n}.log", **kw)


#: Settings from the developer's shell must not leak into tests (Procrastinate's habit): only these pass.
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


def process_env(
    *, database_url: str, redis_url: str, redis_prefix: str, smtp_port: int, mail_domain: str
) -> dict[str, str]:
    """The environment of a test's processes: its database, Redis prefix and sink; quick retries."""
    base = {k: v for k, v in os.environ.items() if k in _KEEP}
    return base | {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "MAIL_TRANSPORTS": f"smtp://127.0.0.1:{smtp_port}",
        "MAIL_DOMAIN": mail_domain,
        "RETRY_BACKOFF_BASE": "0.2",
        "RETRY_BACKOFF_MAX": "1",
        "SMTP_TIMEOUT": "5",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }


class Workers:
    """Start real worker processes (``python -m tasks worker``); stop them all at the end."""

    def __init__(self, env: dict[str, str], log_dir: pathlib.Path, database_url: str):
        self.env, self.log_dir, self.database_url = env, log_dir, database_url
        self.started: list[Process] = []

    def _newest(self) -> int:
        from tasks.core import db  # the test process's own import, not the workers'

        with db.connect(self.database_url) as conn:
            row = conn.execute("SELECT coalesce(max(id), 0) AS n FROM procrastinate_workers").fetchone()
        return row["n"] if row else 0

    def __call__(self, *args: str, extra_env: dict[str, str] | None = None, wait: bool = True) -> Process:
        """Start one; unless ``wait`` is False, return once it has registered."""
        before = self._newest() if wait else 0
        worker = start_worker(self.env | (extra_env or {}), self.log_dir, *args)
        self.started.append(worker)
        if wait:
            wait_until(
                lambda: self._newest() > before or worker.proc.poll() is not None,
                timeout=30,
                what="the worker to register",
            )
            assert worker.proc.poll() is None, worker.output()
        return worker

    def stop_all(self) -> None:
        """SIGTERM every worker at once, then wait for each (as a supervisor stops them): one
        graceful shutdown's time, not one per worker."""
        running = [worker for worker in self.started if worker.proc.poll() is None]
        for worker in running:
            worker.signal(signal.SIGTERM)  # once: a second one stops a worker at once, its sends unfinished
        for worker in self.started:
            if worker in running:
                try:
                    worker.wait(15)
                except subprocess.TimeoutExpired:
                    worker.kill()
            worker.stop()  # (it has exited: closes its log)


def maps(pid: int, text: str) -> bool:
    """Tell whether the process has a file whose path contains ``text`` mapped (e.g. a library it imported)."""
    try:
        return text in pathlib.Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def catches(pid: int, sig: int) -> bool:
    """Tell whether the process has a handler of its own for ``sig`` (``SigCgt`` in /proc)."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask & (1 << (sig - 1)))


def children(pid: int) -> list[str]:
    """The command lines of the direct children of ``pid``."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return found


def processes_with_env(marker: str) -> list[int]:
    """The processes whose environment contains ``marker`` (``NAME=value``): a run's leftovers."""
    found = []
    needle = b"\0" + marker.encode() + b"\0"
    for environ in pathlib.Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in b"\0" + environ.read_bytes() + b"\0":
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
