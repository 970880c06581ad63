"""Scenarios run against Reach D. Box itself: real ``python -m tasks worker`` processes."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import pathlib
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

from bench import rig
from tasks.core import config as config_module
from tasks.core import db, migrate
from tasks.core.config import Settings
from tasks.domain import emails, validation
from tasks.queue import jobs

CHUNK = 2000


@dataclasses.dataclass
class Deployment:
    """One run's world: a private database, the sink, worker processes."""

    database_url: str
    sink: rig.Sink
    env: dict[str, str]
    settings: Settings
    logs: pathlib.Path
    owner_id: int = 0
    redis_pid: int | None = None
    workers: list[rig.Proc] = dataclasses.field(default_factory=list)

    def start_workers(self, n: int, *args: str, extra_env: dict[str, str] | None = None) -> list[rig.Proc]:
        """Start ``n`` workers and wait until each has registered."""
        with db.connect(self.database_url) as conn:
            row = conn.execute(rig.queries["last_worker_id"]).fetchone()
        after = row["id"] if row else 0
        started = [
            rig.Proc(
                [rig.PYTHON, "-m", "tasks", "worker", *args],
                self.env | (extra_env or {}),
                self.logs / f"worker-{len(self.workers) + i}.log",
            )
            for i in range(n)
        ]
        self.workers += started
        rig.wait_until(lambda: self.registered(after) >= n, timeout=60, what="workers to register")
        return started

    def registered(self, after: int = 0) -> int:
        """Workers registered since the one with id ``after`` (all of them by default)."""
        with db.connect(self.database_url) as conn:
            row = conn.execute(rig.queries["registered_workers"], {"after": after}).fetchone()
        return row["n"] if row else 0

    def schedule(self, send_ats: list[dt.datetime], *, subject: str = "bench") -> None:
        """Schedule one email per send time, with jobs, as ``emails.schedule`` would (in bulk)."""
        with db.connect(self.database_url) as conn:
            for start in range(0, len(send_ats), CHUNK):
                chunk = send_ats[start : start + CHUNK]
                ids = [uuid.uuid4() for _ in chunk]
                with conn.transaction():
                    near = [(i, at) for i, at in zip(ids, chunk, strict=True) if jobs.within_horizon(at, 600)]
                    job_of = dict(zip([i for i, _ in near], jobs.defer_sends(conn, near), strict=True))
                    conn.execute(
                        rig.queries["bulk_insert_emails"],
                        {
                            "owner_id": self.owner_id,
                            "from_addr": self.settings.mail_from,
                            "to_addr": "rcpt@example.com",
                            "subject": subject,
                            "body": "A benchmark email.\n",
                            "domain": self.settings.mail_domain,
                            "ids": ids,
                            "ats": chunk,
                            "job_ids": [job_of.get(i) for i in ids],
                        },
                    )

    def send_times(self) -> dict[str, tuple[dt.datetime, str]]:
        with db.connect(self.database_url) as conn:
            rows = conn.execute("SELECT message_id, send_at, status FROM emails WHERE subject = 'bench'").fetchall()
        return {r["message_id"]: (r["send_at"], r["status"]) for r in rows}

    def lateness(self) -> list[float]:
        due = self.send_times()
        return [at - due[mid][0].timestamp() for at, mid in self.sink.received() if mid in due]

    def cpu_meter(self) -> rig.CpuMeter:
        """The CPU of this deployment: its workers, its database's backends, Redis (when private), the sink."""
        return rig.stack_meter(
            workers=lambda: [w.pid for w in self.workers],
            sink=self.sink,
            database=urllib.parse.urlsplit(self.database_url).path.lstrip("/"),
            redis_pid=self.redis_pid,
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


class Ours:
    """Builds the template databases once; each run gets its own copy."""

    def __init__(self, work: pathlib.Path, redis_url: str, redis_pid: int | None = None):
        """``redis_pid``: the Redis at ``redis_url`` when it is the benchmark's own (its CPU is then counted)."""
        self.work = work
        self.redis_url = redis_url
        self.redis_pid = redis_pid
        self.template = rig.unique_name("tpl")
        self.backlog_template: str | None = None
        self._runs = 0

    def prepare(self) -> None:
        url = rig.create_database(self.template)
        migrate.migrate(url)

    def prepare_backlog(self, count: int) -> float:
        """Build a template with ``count`` emails due next month; return the seconds it took."""
        started = time.perf_counter()
        name = rig.unique_name("backlog")
        url = rig.create_database(name, self.template)
        with db.connect(url) as conn:
            owner = emails.ensure_user(conn, email="backlog@example.com")
            for start in range(0, count, 250_000):
                conn.execute(
                    rig.queries["insert_backlog"],
                    {
                        "owner_id": owner.id,
                        "from_addr": "Reach D. Box <noreply@localhost>",
                        "count": min(250_000, count - start),
                        "tag": str(start),
                    },
                )
            conn.execute("VACUUM ANALYZE")
        self.backlog_template = name
        return time.perf_counter() - started

    def cleanup(self) -> None:
        for name in (self.template, self.backlog_template):
            if name:
                rig.drop_database(name)

    @contextlib.contextmanager
    def deployment(self, *, backlog: bool = False, env: dict[str, str] | None = None) -> Iterator[Deployment]:
        """A fresh database (with the backlog if asked), a sink and this run's settings."""
        self._runs += 1
        name = rig.unique_name("run")
        template = self.backlog_template if backlog else self.template
        assert template is not None
        url = rig.create_database(name, template)
        run_dir = self.work / f"ours-{self._runs}"
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with rig.sink(run_dir / "sink") as sink:
                worker_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
                worker_env |= {
                    "DATABASE_URL": url,
                    "REDIS_URL": self.redis_url,
                    "REDIS_PREFIX": f"rdbx-bench-{os.getpid()}-{self._runs}:",
                    "MAIL_TRANSPORTS": f"bench=smtp://127.0.0.1:{sink.port}",
                    "MAIL_DOMAIN": "bench.localhost",
                    "LOG_FORMAT": "json",
                } | (env or {})
                settings = config_module.load(worker_env)
                with db.connect(url) as conn:
                    owner = emails.ensure_user(conn, email="bench@example.com")
                deployment = Deployment(
                    database_url=url,
                    sink=sink,
                    env=worker_env,
                    settings=settings,
                    logs=run_dir,
                    owner_id=owner.id,
                    redis_pid=self.redis_pid,
                )
                try:
                    yield deployment
                finally:
                    deployment.stop()
        finally:
            rig.drop_database(name)


def at_once(n: int, lead: float) -> tuple[dt.datetime, list[dt.datetime]]:
    """``n`` send times all equal to now + ``lead`` seconds."""
    t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead)
    return t0, [t0] * n


def spread(n: int, seconds: float, lead: float) -> tuple[dt.datetime, list[dt.datetime]]:
    """``n`` send times evenly spread over ``seconds``, starting now + ``lead``."""
    t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead)
    return t0, [t0 + dt.timedelta(seconds=seconds * i / n) for i in range(n)]


def throughput(ours: Ours, *, n: int, workers: int = 2, backlog: bool = False, lead: float = 3.0) -> dict[str, Any]:
    """``n`` emails due at one instant; emails/s from that instant to the last delivery.

    And the CPU every process of the deployment spent per email, from the end of
    the scheduling to the last delivery. ``lead``: seconds from scheduling to that
    instant (plus a little per email), time for the scheduling and the workers to be waiting.
    """
    with ours.deployment(backlog=backlog) as d:
        d.start_workers(workers)
        t0, times = at_once(n, lead=lead + n / 4000)
        d.schedule(times)
        late = time.time() - t0.timestamp()
        meter = d.cpu_meter()
        meter.start()
        last = d.sink.wait_for(n, timeout=60 + n / 50)
        spent = meter.stop()
        return {
            "emails_s": n / (last - t0.timestamp()),
            "scheduled_late_s": max(late, 0.0),
            **rig.cpu_per_email(spent, n),
        }


def enqueue(ours: Ours, *, n: int) -> dict[str, Any]:
    """One client schedules ``n`` emails one at a time through ``emails.schedule``: emails/s.

    Each one is what an API request does below HTTP: validate, then store the
    email and defer its job in one transaction. They are due in five minutes
    (within the horizon, so each defers its job) and no worker runs: only the
    enqueueing is timed.
    """
    with ours.deployment() as d, db.connect(d.database_url) as conn:
        owner = emails.ensure_user(conn, email="bench@example.com")
        due = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
        started = time.perf_counter()
        for _ in range(n):
            draft = validation.validate(
                to="rcpt@example.com", subject="bench", body_text="A benchmark email.\n", send_at=due
            )
            emails.schedule(conn, owner=owner, draft=draft, settings=d.settings)
        return {"enqueue_s": n / (time.perf_counter() - started)}


def burst(ours: Ours, *, n: int, workers: int = 2, backlog: bool = False, lead: float = 3.0) -> dict[str, Any]:
    """``n`` emails due at the same instant: how long after it the last one arrives."""
    with ours.deployment(backlog=backlog) as d:
        d.start_workers(workers)
        t0, times = at_once(n, lead=lead)
        d.schedule(times)
        last = d.sink.wait_for(n, timeout=60)
        return {"last_s": last - t0.timestamp(), **rig.lateness_stats(d.lateness())}


def spread_run(
    ours: Ours, *, n: int, seconds: float, workers: int = 2, backlog: bool = False, lead: float = 3.0
) -> dict[str, Any]:
    """``n`` emails evenly spread over ``seconds``: lateness of each at the sink."""
    with ours.deployment(backlog=backlog) as d:
        d.start_workers(workers)
        _, times = spread(n, seconds, lead=lead)
        d.schedule(times)
        d.sink.wait_for(n, timeout=seconds + 60)
        return rig.lateness_stats(d.lateness())
