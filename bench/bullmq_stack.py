"""The second baseline: BullMQ on Node, sending with nodemailer, driven like raw Procrastinate.

Same plan, same sink, same machine: jobs due at one instant (or due in five
minutes, for enqueueing), two worker processes, the sink's receive times and
Message-IDs as the only clock. What differs is the stack itself: ``node
bench/bullmq/worker.mjs`` (a BullMQ Worker, concurrency from its argument,
nodemailer's default transport: a new SMTP connection per email) on a Redis of
the benchmark's own (``redis-server --save "" --appendonly no`` on a free port),
fed by ``node bench/bullmq/producer.mjs`` (one client, ``queue.add`` one job at a
time, each delayed to the common due instant).

BullMQ, ioredis and nodemailer are pinned in bench/bullmq/package-lock.json and
installed by ``npm ci`` under .data/bench/bullmq/ the first time a bench needs
them (again when the lock file changes), outside the source tree. The two
scripts are copied next to them on every install check: Node finds an ES
module's packages from the script's own directory. Node and npm come from apt
(``make bench`` installs them when missing); nothing else needs them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

from bench import rig

#: The sources: package.json, package-lock.json and the scripts.
SOURCE = pathlib.Path(__file__).with_name("bullmq")
#: Where they are installed and run from.
DIR = rig.WORK / "bullmq"
#: Written after a successful install: the lock file's hash it installed.
STAMP = DIR / "node_modules" / ".reachdbox-installed"
SCRIPTS = ("worker.mjs", "producer.mjs")
#: The two concurrencies measured (jobs in flight per worker process).
CONCURRENCIES = (5, 50)
_runs = itertools.count(1)


def unavailable() -> str | None:
    """Why BullMQ cannot run here, or None when it can (node, npm and redis-server found)."""
    missing = [name for name in ("node", "npm", "redis-server") if shutil.which(name) is None]
    if missing:
        return "not run: " + " and ".join(missing) + " not found (`make bench` installs Node from apt)"
    return None


def install() -> None:
    """Copy the scripts to DIR; ``npm ci`` the pinned packages there unless that exact set is installed."""
    DIR.mkdir(parents=True, exist_ok=True)
    for name in SCRIPTS:
        shutil.copyfile(SOURCE / name, DIR / name)
    wanted = hashlib.sha256((SOURCE / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(SOURCE / name, DIR / name)
    # --ignore-scripts: no install script runs (msgpackr's optional native build falls back to JS).
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        cwd=DIR,
        check=True,
        timeout=600,
    )
    STAMP.write_text(wanted + "\n")


@dataclasses.dataclass
class BullRun:
    """One run's world: a queue on the private Redis, the sink, Node worker processes."""

    redis: rig.RedisServer
    queue: str
    sink: rig.Sink
    logs: pathlib.Path
    concurrency: int
    pool: bool = False
    due: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)
    workers: list[rig.Proc] = dataclasses.field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}

    def start_workers(self, n: int) -> list[rig.Proc]:
        """Start ``n`` worker processes and wait until each says it is connected."""
        args = [
            "node",
            str(DIR / "worker.mjs"),
            "--redis-port",
            str(self.redis.port),
            "--queue",
            self.queue,
            "--smtp-port",
            str(self.sink.port),
            "--concurrency",
            str(self.concurrency),
            *(["--pool"] if self.pool else []),
        ]
        started = [
            rig.Proc(args, self.env(), self.logs / f"bullmq-worker-{len(self.workers) + i}.log") for i in range(n)
        ]
        self.workers += started
        for worker in started:
            rig.wait_until(functools.partial(self._ready, worker), timeout=60, what="a BullMQ worker to connect")
        return started

    def _ready(self, worker: rig.Proc) -> bool:
        if not worker.alive():
            raise RuntimeError(f"a BullMQ worker exited: {worker.log.read_text()[-2000:]}")
        return b"ready\n" in worker.log.read_bytes()

    def produce(self, count: int, due: dt.datetime) -> dict[str, Any]:
        """``queue.add`` ``count`` jobs one at a time, each delayed to ``due``; the producer's own timing."""
        tag = f"bullmq-{len(self.due)}"
        result = subprocess.run(
            [
                "node",
                str(DIR / "producer.mjs"),
                "--redis-port",
                str(self.redis.port),
                "--queue",
                self.queue,
                "--count",
                str(count),
                "--due-ms",
                str(round(due.timestamp() * 1000)),
                "--tag",
                tag,
            ],
            env=self.env(),
            cwd=rig.ROOT,
            capture_output=True,
            text=True,
            timeout=60 + count / 50,
        )
        if result.returncode != 0:
            raise RuntimeError(f"the BullMQ producer failed: {result.stderr[-2000:]}")
        for i in range(count):
            self.due[f"<{tag}-{i}@bench.localhost>"] = due
        produced: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return produced

    def lateness(self) -> list[float]:
        return [at - self.due[mid].timestamp() for at, mid in self.sink.received() if mid in self.due]

    def cpu_meter(self) -> rig.CpuMeter:
        """The CPU of this run: the Node workers, Redis, the sink."""
        return rig.stack_meter(
            workers=lambda: [w.pid for w in self.workers], sink=self.sink, redis_pid=self.redis.proc.pid
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(10)
        self.workers.clear()


class BullMQ:
    """The stack: packages installed once, then a fresh queue and sink per run on one private Redis."""

    def __init__(self, work: pathlib.Path, redis: rig.RedisServer):
        self.work = work
        self.redis = redis

    def prepare(self) -> None:
        install()

    @contextlib.contextmanager
    def run(self, concurrency: int = CONCURRENCIES[0], *, pool: bool = False) -> Iterator[BullRun]:
        number = next(_runs)
        self.redis.flush()
        run_dir = self.work / f"bullmq-{number}"
        run_dir.mkdir(parents=True, exist_ok=True)
        with rig.sink(run_dir / "sink") as sink:
            run = BullRun(
                redis=self.redis,
                queue=f"bench-{number}",
                sink=sink,
                logs=run_dir,
                concurrency=concurrency,
                pool=pool,
            )
            try:
                yield run
            finally:
                run.stop()


def throughput(stack: BullMQ, *, n: int, concurrency: int, workers: int = 2) -> dict[str, Any]:
    """``n`` jobs due at one instant; emails/s from that instant to the last delivery, and CPU per email."""
    with stack.run(concurrency) as r:
        r.start_workers(workers)
        # One add at a time is slower than the bulk inserts of the others: a longer lead.
        t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3 + n / 1000)
        r.produce(n, t0)
        late = dt.datetime.now(dt.UTC).timestamp() - t0.timestamp()
        meter = r.cpu_meter()
        meter.start()
        last = r.sink.wait_for(n, timeout=60 + n / 5)
        spent = meter.stop()
        return {
            "emails_s": n / (last - t0.timestamp()),
            "scheduled_late_s": max(late, 0.0),
            "rss_mb": max(rig.rss_mb(w.pid) for w in r.workers),
            **rig.cpu_per_email(spent, n),
        }


def burst(stack: BullMQ, *, n: int, concurrency: int, workers: int = 2) -> dict[str, Any]:
    """``n`` jobs due at the same instant: how long after it the last one arrives, and each one's lateness."""
    with stack.run(concurrency) as r:
        r.start_workers(workers)
        t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3 + n / 1000)
        r.produce(n, t0)
        last = r.sink.wait_for(n, timeout=60 + n / 5)
        return {"last_s": last - t0.timestamp(), **rig.lateness_stats(r.lateness())}


def enqueue(stack: BullMQ, *, n: int) -> dict[str, Any]:
    """One client adds ``n`` jobs one at a time, due in five minutes, no worker running: jobs/s."""
    with stack.run() as r:
        produced = r.produce(n, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
        return {"enqueue_s": n / produced["seconds"]}
