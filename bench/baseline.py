"""The baseline: raw Procrastinate, a bare task sending with smtplib, default settings.

No horizon, no wake-up timer, no connection reuse, no recovery: what a team
gets from the library alone. Every figure of ours is printed as a ratio to the
same scenario run here, so results compare across machines.

Worker: ``python -m procrastinate --app=bench.baseline.app worker`` with
BENCH_BASELINE_URL pointing at a database with Procrastinate's schema.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import pathlib
import smtplib
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import procrastinate
import psycopg
from procrastinate import jobs as procrastinate_jobs

from bench import rig

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_BASELINE_URL", "")),
    import_paths=["bench.baseline"],
)

MESSAGE = (
    "From: bench@example.com\r\nTo: rcpt@example.com\r\nSubject: baseline\r\n"
    "Message-ID: {message_id}\r\n\r\nA benchmark email.\r\n"
)


@app.task(name="send_baseline")
def send(message_id: str, port: int) -> None:
    """Send one message over a new SMTP connection (the plain way)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("bench@example.com", ["rcpt@example.com"], MESSAGE.format(message_id=message_id))


@dataclasses.dataclass
class BaselineRun:
    database_url: str
    sink: rig.Sink
    logs: pathlib.Path
    send_at: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)
    workers: list[rig.Proc] = dataclasses.field(default_factory=list)

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
        return keep | {"BENCH_BASELINE_URL": self.database_url, "PYTHONPATH": str(rig.ROOT)}

    def start_workers(self, n: int) -> list[rig.Proc]:
        started = [
            rig.Proc(
                [rig.PYTHON, "-m", "procrastinate", "--app=bench.baseline.app", "worker"],
                self.env(),
                self.logs / f"baseline-worker-{len(self.workers) + i}.log",
            )
            for i in range(n)
        ]
        self.workers += started
        rig.wait_until(lambda: self._registered() >= len(self.workers), timeout=60, what="baseline workers")
        return started

    def _registered(self) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
        return row[0] if row else 0

    def schedule(self, send_ats: list[dt.datetime]) -> None:
        """Defer one job per send time, in batches (Procrastinate's batch_defer)."""
        tag = len(self.send_at)
        jobs = []
        for i, at in enumerate(send_ats):
            message_id = f"<baseline-{tag + i}@bench.localhost>"
            self.send_at[message_id] = at
            jobs.append(
                procrastinate_jobs.Job(
                    id=None,
                    queue="default",
                    task_name="send_baseline",
                    lock=None,
                    queueing_lock=None,
                    task_kwargs={"message_id": message_id, "port": self.sink.port},
                    scheduled_at=at,
                )
            )
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            for start in range(0, len(jobs), 2000):
                with conn.transaction():
                    app.job_manager.batch_defer_jobs(jobs=jobs[start : start + 2000], connection=conn)

    def add_backlog(self, count: int) -> None:
        """Park ``count`` jobs due next month in the queue table (triggers off: no million NOTIFYs)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn, conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, scheduled_at, status) "
                "SELECT 'default', 'send_baseline', jsonb_build_object('message_id', '<later-' || n || '>', "
                "'port', 1), now() + interval '30 days' + n * interval '1 second', 'todo' "
                "FROM generate_series(1, %s) AS n",
                (count,),
            )
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE procrastinate_jobs")

    def lateness(self) -> list[float]:
        return [at - self.send_at[mid].timestamp() for at, mid in self.sink.received() if mid in self.send_at]

    def cpu_meter(self) -> rig.CpuMeter:
        """The CPU of this run: its workers, its database's backends, the sink (no Redis here)."""
        return rig.stack_meter(
            workers=lambda: [w.pid for w in self.workers],
            sink=self.sink,
            database=urllib.parse.urlsplit(self.database_url).path.lstrip("/"),
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(10)
        self.workers.clear()


class Baseline:
    """Raw Procrastinate: a migrated template database, copied per run."""

    def __init__(self, work: pathlib.Path):
        self.work = work
        self.template = rig.unique_name("base_tpl")
        self.backlog_template: str | None = None
        self._runs = 0

    def prepare(self) -> None:
        url = rig.create_database(self.template)
        subprocess.run(
            [rig.PYTHON, "-m", "procrastinate", "--app=bench.baseline.app", "schema", "--apply"],
            env=os.environ | {"BENCH_BASELINE_URL": url, "PYTHONPATH": str(rig.ROOT)},
            cwd=rig.ROOT,
            check=True,
            capture_output=True,
        )

    def prepare_backlog(self, count: int) -> None:
        """Build a copy of the template with ``count`` jobs due next month."""
        name = rig.unique_name("base_backlog")
        url = rig.create_database(name, self.template)
        BaselineRun(database_url=url, sink=rig.Sink(out=self.work, port=0), logs=self.work).add_backlog(count)
        self.backlog_template = name

    def cleanup(self) -> None:
        for name in (self.template, self.backlog_template):
            if name:
                rig.drop_database(name)

    @contextlib.contextmanager
    def run(self, backlog: bool = False) -> Iterator[BaselineRun]:
        self._runs += 1
        name = rig.unique_name("base_run")
        template = self.backlog_template if backlog else self.template
        assert template is not None
        url = rig.create_database(name, template)
        run_dir = self.work / f"baseline-{self._runs}"
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with rig.sink(run_dir / "sink") as sink:
                run = BaselineRun(database_url=url, sink=sink, logs=run_dir)
                try:
                    yield run
                finally:
                    run.stop()
        finally:
            rig.drop_database(name)


def throughput(base: Baseline, *, n: int, workers: int = 2, backlog: bool = False, lead: float = 2.0) -> dict[str, Any]:
    with base.run(backlog) as r:
        r.start_workers(workers)
        t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead + n / 4000)
        r.schedule([t0] * n)
        meter = r.cpu_meter()
        meter.start()
        last = r.sink.wait_for(n, timeout=60 + n / 5)
        spent = meter.stop()
        rss = max(rig.rss_mb(w.pid) for w in r.workers)
        return {"emails_s": n / (last - t0.timestamp()), "rss_mb": rss, **rig.cpu_per_email(spent, n)}


def enqueue(base: Baseline, *, n: int) -> dict[str, Any]:
    """One client defers ``n`` jobs one at a time (``task.defer``, synchronous): jobs/s.

    Due in five minutes, no worker running: only the enqueueing is timed. The
    connector is Procrastinate's synchronous one, what a synchronous web app uses.
    """
    with base.run() as r:
        connector = procrastinate.SyncPsycopgConnector(conninfo=r.database_url)
        with app.replace_connector(connector) as sync_app, sync_app.open():
            due = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
            started = time.perf_counter()
            for i in range(n):
                send.configure(schedule_at=due).defer(message_id=f"<enqueue-{i}@bench.localhost>", port=r.sink.port)
            return {"enqueue_s": n / (time.perf_counter() - started)}


def burst(base: Baseline, *, n: int, workers: int = 2, backlog: bool = False) -> dict[str, Any]:
    with base.run(backlog) as r:
        r.start_workers(workers)
        t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
        r.schedule([t0] * n)
        last = r.sink.wait_for(n, timeout=60 + n / 5)
        return {"last_s": last - t0.timestamp(), **rig.lateness_stats(r.lateness())}


def spread(base: Baseline, *, n: int, seconds: float, workers: int = 2, backlog: bool = False) -> dict[str, Any]:
    with base.run(backlog) as r:
        r.start_workers(workers)
        t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
        r.schedule([t0 + dt.timedelta(seconds=seconds * i / n) for i in range(n)])
        r.sink.wait_for(n, timeout=seconds + 60 + n / 5)
        return rig.lateness_stats(r.lateness())


def crash(base: Baseline, *, n: int, wait: float) -> dict[str, Any]:
    """Kill -9 one of two workers mid-run: its job stays 'doing' (Procrastinate has no recovery)."""
    with base.run() as r:
        first, _ = r.start_workers(2)
        t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        r.schedule([t0] * n)
        r.sink.wait_for(n // 4, timeout=120)
        first.kill()
        killed = time.time()
        with contextlib.suppress(TimeoutError):
            # The survivor finishes the rest at ~200/s; a job the killed worker held never comes.
            r.sink.wait_for(n, timeout=wait + n / 100)
        received = [mid for _, mid in r.sink.received()]
        counts = {mid: received.count(mid) for mid in set(received)}
        delivered = len(counts)
        with psycopg.connect(r.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'").fetchone()
        stuck = row[0] if row else 0
        return {
            "sent": delivered,
            "uncertain": 0,
            "lost": n - delivered,
            "duplicated": sum(1 for c in counts.values() if c > 1),
            # The killed worker's jobs stay 'doing' for ever: nothing ever recovers them.
            "stuck_jobs": stuck,
            "resume_s": float("inf") if stuck or delivered < n else time.time() - killed,
        }
