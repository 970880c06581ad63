"""What 100,000 active recurrences cost the send path, beside none.

    python -m bench.recurrences [--recurrences 100000] [--runs 1] [--spread 900] [--seconds 60] [--ticks 6]

For each variant (no recurrence, then ``--recurrences`` active ones: 1% every minute, 9%
hourly at a random minute, 90% daily at a random time, half in UTC and half in
Europe/Paris), on a private database with the lean sink and two real workers:

1. The reconciler's first tick creates every occurrence within the horizon (the
   warm-up, as after a deployment: reported, not part of the medians).
2. Spread lateness: ``--spread`` ordinary emails evenly over ``--seconds`` (one minute by
   default, so one minute boundary, when every every-minute recurrence fires at once,
   falls inside) while the workers also send the occurrences that come due; p50/p99 of
   the ordinary emails' lateness at the sink, and of the occurrences'.
3. The promotion's cost per tick, the workers stopped: ``--ticks`` reconciler ticks 5 s
   apart (the periodic task's cadence), each the recurrences' step
   (tasks/queue/occurrences.py) plus the promotion of emails without a job
   (tasks/queue/reconcile.py), on one connection: wall milliseconds and the CPU
   milliseconds of its PostgreSQL backend.

Prints one table of medians over ``--runs``. Not a timed test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import pathlib
import random
import statistics
import tempfile
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench import rig
from bench.ours import Deployment, Ours, spread
from tasks.core import db
from tasks.domain import recurrence_rules
from tasks.queue import occurrences, reconcile

MIX = (("every minute", 0.01), ("hourly", 0.09), ("daily", 0.90))
TICK_SECONDS = 5.0


def rules(n: int, seed: int = 1) -> list[tuple[str, str]]:
    """``n`` (cron, zone) pairs in the benchmark's mix."""
    rnd = random.Random(seed)
    out = []
    for kind, share in MIX:
        for i in range(round(n * share)):
            tz = "UTC" if i % 2 else "Europe/Paris"
            if kind == "every minute":
                out.append(("* * * * *", tz))
            elif kind == "hourly":
                out.append((f"{rnd.randrange(60)} * * * *", tz))
            else:
                out.append((f"{rnd.randrange(60)} {rnd.randrange(24)} * * *", tz))
    return out


def fill(d: Deployment, n: int) -> None:
    """Insert ``n`` active recurrences, each with its cursor on its next occurrence."""
    now = dt.datetime.now(dt.UTC)
    pairs = rules(n)
    with db.connect(d.database_url) as conn:
        for start in range(0, len(pairs), 10_000):
            chunk = pairs[start : start + 10_000]
            conn.execute(
                rig.queries["bulk_insert_recurrences"],
                {
                    "owner_id": d.owner_id,
                    "crons": [c for c, _ in chunk],
                    "tzs": [z for _, z in chunk],
                    "next_ats": [next(recurrence_rules.occurrences(c, z, now)) for c, z in chunk],
                },
            )
        conn.execute("VACUUM ANALYZE recurrences")


def backend_cpu_ms(pid: int) -> float:
    """The CPU time a PostgreSQL backend has spent, in ms, to the nanosecond (``/proc/<pid>/schedstat``;
    the clock ticks of ``/proc/<pid>/stat`` count 10 ms at a time, more than a quiet tick costs)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e6


async def _tick(conn: psycopg.AsyncConnection[dict[str, Any]], rt: Any) -> dict[str, int]:
    made = await occurrences.create_due(conn, rt.settings)
    await occurrences.pause_failing(conn, rt.settings)
    made["promoted"] = await reconcile.promote(rt)
    return made


class _OneConnection:
    """A pool of the one connection the ticks run on (reconcile.promote asks a pool for it)."""

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]], settings: Any):
        self.conn, self.settings, self.pool = conn, settings, self

    def connection(self) -> Any:
        conn = self.conn

        class _Borrowed:
            async def __aenter__(self) -> Any:
                return conn

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Borrowed()


async def ticks(d: Deployment, n: int, *, first_only: bool = False) -> dict[str, Any]:
    """Run reconciler ticks ``TICK_SECONDS`` apart; the wall and backend CPU ms of each."""
    conn = await psycopg.AsyncConnection.connect(d.database_url, autocommit=True, row_factory=dict_row)
    try:
        rt = _OneConnection(conn, d.settings)
        pid = (await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone() or {})["pid"]
        walls, cpus, made = [], [], []
        for i in range(1 if first_only else n):
            if i:
                await asyncio.sleep(TICK_SECONDS)
            cpu_before = backend_cpu_ms(pid)
            started = time.perf_counter()
            stats = await _tick(conn, rt)
            walls.append((time.perf_counter() - started) * 1000)
            cpus.append(backend_cpu_ms(pid) - cpu_before)
            made.append(stats["occurrences"])
        return {
            "tick_ms": statistics.median(walls),
            "tick_pg_cpu_ms": statistics.median(cpus),
            "tick_max_ms": max(walls),
            "occurrences_per_tick": statistics.median(made),
        }
    finally:
        await conn.close()


def lateness_of(d: Deployment, ids: set[str]) -> list[float]:
    with db.connect(d.database_url) as conn:
        due = {r["message_id"]: r["send_at"] for r in conn.execute(rig.queries["occurrence_send_times"])}
    return [at - due[mid].timestamp() for at, mid in d.sink.received() if mid in due and mid in ids]


def run_variant(ours: Ours, *, recurrences: int, spread_n: int, seconds: float, n_ticks: int) -> dict[str, Any]:
    with ours.deployment() as d:
        if recurrences:
            fill(d, recurrences)
        warm = asyncio.run(ticks(d, 1, first_only=True))
        d.start_workers(2)
        _, times = spread(spread_n, seconds, lead=3)
        d.schedule(times)

        with db.connect(d.database_url) as poll:  # one connection for the wait (the server is shared)

            def done() -> bool:
                row = poll.execute(rig.queries["bench_sent"]).fetchone()
                return bool(row and row["n"] >= spread_n)

            rig.wait_until(done, timeout=seconds + 120, interval=0.5, what="the spread emails to be sent")
        time.sleep(0.1)
        ordinary = rig.lateness_stats(d.lateness())
        with db.connect(d.database_url) as conn:
            ids = {r["message_id"] for r in conn.execute(rig.queries["occurrence_send_times"])}
        occ_late = lateness_of(d, ids)
        d.stop()
        cost = asyncio.run(ticks(d, n_ticks))
        return {
            "spread_p50_ms": ordinary["p50_ms"],
            "spread_p99_ms": ordinary["p99_ms"],
            "occurrences_sent": len(occ_late),
            "occurrence_p50_ms": rig.lateness_stats(occ_late)["p50_ms"] if occ_late else float("nan"),
            "occurrence_p99_ms": rig.lateness_stats(occ_late)["p99_ms"] if occ_late else float("nan"),
            "warmup_tick_ms": warm["tick_ms"],
            "warmup_occurrences": warm["occurrences_per_tick"],
            **cost,
        }


ROWS = [
    ("spread_p50_ms", "ordinary emails, spread: lateness p50 (ms)"),
    ("spread_p99_ms", "ordinary emails, spread: lateness p99 (ms)"),
    ("occurrences_sent", "occurrences sent during the spread"),
    ("occurrence_p50_ms", "occurrences: lateness p50 (ms)"),
    ("occurrence_p99_ms", "occurrences: lateness p99 (ms)"),
    ("tick_ms", "reconciler tick (recurrences + promotion): wall (ms)"),
    ("tick_pg_cpu_ms", "reconciler tick: PostgreSQL CPU (ms)"),
    ("tick_max_ms", "reconciler tick: slowest (ms)"),
    ("occurrences_per_tick", "occurrences created per tick"),
    ("warmup_tick_ms", "first tick after start (creates the horizon's): wall (ms)"),
    ("warmup_occurrences", "first tick: occurrences created"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recurrences", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recurrences", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--spread", type=int, default=900, help="ordinary emails in the spread")
    parser.add_argument("--seconds", type=float, default=60.0, help="over this many seconds")
    parser.add_argument("--ticks", type=int, default=6, help="reconciler ticks timed")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-recurrences-") as work,
        rig.private_redis(pathlib.Path(work)) as redis,
    ):
        ours = Ours(
            pathlib.Path(work), redis.url if redis else "redis://127.0.0.1:6379/0", redis.proc.pid if redis else None
        )
        ours.prepare()
        try:
            results: dict[int, list[dict[str, Any]]] = {0: [], args.recurrences: []}
            for _ in range(args.runs):
                for n in results:  # interleaved, so a slow moment of the machine hits both
                    results[n].append(
                        run_variant(ours, recurrences=n, spread_n=args.spread, seconds=args.seconds, n_ticks=args.ticks)
                    )
        finally:
            ours.cleanup()
    labels = {0: "no recurrence", args.recurrences: f"{args.recurrences:,} active"}
    width = max(len(label) for _, label in ROWS)
    print(f"{'median of ' + str(args.runs) + ' run(s)':<{width}} | " + " | ".join(f"{labels[n]:>16}" for n in results))
    print("-" * width + "-|-" + "-|-".join("-" * 16 for _ in results))
    for key, label in ROWS:
        cells = []
        for n in results:
            values = [r[key] for r in results[n] if r[key] == r[key]]
            cells.append(f"{statistics.median(values):>16.1f}" if values else f"{'-':>16}")
        print(f"{label:<{width}} | " + " | ".join(cells))
    mix = ", ".join(f"{int(share * 100)}% {kind}" for kind, share in MIX)
    print(f"mix: {mix}; spread: {args.spread} emails over {args.seconds:g} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
