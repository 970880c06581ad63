"""What 100,000 active recurrences cost the send path, beside none and beside the same mail sent one-off.

    python -m bench.recurrences [--recurrences 100000] [--runs 1] [--spread 900] [--seconds 60] [--ticks 6]

Three variants, interleaved in each run, each on a private database with the lean sink and
two real workers:

- **no recurrence**;
- **N active**: ``--recurrences`` active ones (1% every minute, 9% hourly at a random minute,
  90% daily at a random time, half in UTC and half in Europe/Paris). Every cron rule fires at
  second 0 of a minute, so each minute boundary brings ~1.2% of them due at one instant;
- **the same mail, one-off**: no recurrence, but one-off emails due at exactly the instants
  (relative to the spread) and in the numbers of the occurrences the previous variant sent.
  Beside it, the occurrences show what being an occurrence costs: nothing, if they are as
  punctual as one-off mail under the same load.

For each:

1. The reconciler's first tick creates every occurrence within the horizon (the warm-up, as
   after a deployment: reported, not part of the medians).
2. Spread lateness: ``--spread`` ordinary emails evenly over ``--seconds`` (one minute by
   default, so one minute boundary falls inside) while the workers also send the occurrences
   (or their one-off stand-ins); p50/p99 of the ordinary emails' lateness at the sink, also
   for those due while no burst was being sent (from the burst's instant to its last
   delivery), and the burst's own lateness.
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


def fill_spread(d: Deployment, n: int, t0: dt.datetime, seconds: float) -> list[dt.datetime]:
    """Insert ``n`` daily recurrences in UTC whose occurrences make a spread: with rules running
    ``n * 60 / seconds`` times faster than real time (RECURRENCE_TIME_SCALE, which changes
    nothing but the rules' clock), the ``n`` minutes following ``t0`` pass in ``seconds``, and
    each recurrence fires at one of them. Returns their first occurrences (real time)."""
    scale = round(n * 60 / seconds)
    recurrence_rules.set_time_scale(scale)
    origin = recurrence_rules.TIME_ORIGIN
    rule_t0 = origin + (t0 - origin) * scale
    first = rule_t0.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    minutes = [first + dt.timedelta(minutes=i) for i in range(n)]
    crons = [f"{m.minute} {m.hour} * * *" for m in minutes]
    with db.connect(d.database_url) as conn:
        conn.execute(
            rig.queries["bulk_insert_recurrences"],
            {
                "owner_id": d.owner_id,
                "crons": crons,
                "tzs": ["UTC"] * n,
                "next_ats": [origin + (m - origin) / scale for m in minutes],
            },
        )
        conn.execute("VACUUM ANALYZE recurrences")
    return [origin + (m - origin) / scale for m in minutes]


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


def lateness_of(d: Deployment, due: dict[str, dt.datetime]) -> list[tuple[float, float]]:
    """(due instant, lateness) at the sink of each email of ``due`` (Message-ID -> send_at)."""
    return [(due[mid].timestamp(), at - due[mid].timestamp()) for at, mid in d.sink.received() if mid in due]


def _due(d: Deployment, query: str, **params: Any) -> dict[str, dt.datetime]:
    with db.connect(d.database_url) as conn:
        return {r["message_id"]: r["send_at"] for r in conn.execute(rig.queries[query], params)}


def _stats(values: list[float], prefix: str) -> dict[str, float]:
    if not values:
        return {f"{prefix}_p50_ms": float("nan"), f"{prefix}_p99_ms": float("nan")}
    st = rig.lateness_stats(values)
    return {f"{prefix}_p50_ms": st["p50_ms"], f"{prefix}_p99_ms": st["p99_ms"]}


def run_variant(
    ours: Ours,
    *,
    recurrences: int,
    spread_n: int,
    seconds: float,
    n_ticks: int,
    one_off: list[float] | None = None,
    occurrence_spread: bool = False,
    lead: float = 3.0,
) -> dict[str, Any]:
    """One variant: ``recurrences`` active ones beside the spread; or ``one_off``, the seconds after
    the spread's start of one-off stand-ins for the occurrences; or, ``occurrence_spread``, the
    spread itself made of occurrences (fill_spread)."""
    scale = round(spread_n * 60 / seconds) if occurrence_spread else 1
    with ours.deployment(env={"RECURRENCE_TIME_SCALE": str(scale)}) as d:
        try:
            return _measure(d, recurrences, spread_n, seconds, n_ticks, one_off, occurrence_spread, lead)
        finally:
            recurrence_rules.set_time_scale(1)


def _measure(
    d: Deployment,
    recurrences: int,
    spread_n: int,
    seconds: float,
    n_ticks: int,
    one_off: list[float] | None,
    occurrence_spread: bool,
    lead: float,
) -> dict[str, Any]:
    if recurrences:
        fill(d, recurrences)
    expected = 0
    if occurrence_spread:
        t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead + 1)  # (the workers start after the fill)
        expected = sum(at <= t0 + dt.timedelta(seconds=seconds) for at in fill_spread(d, spread_n, t0, seconds))
    warm = asyncio.run(ticks(d, 1, first_only=True))
    d.start_workers(2)
    if not occurrence_spread:
        t0, times = spread(spread_n, seconds, lead=lead)
        if one_off:
            d.schedule([t0 + dt.timedelta(seconds=x) for x in one_off], subject="bench-burst")
        d.schedule(times)
        with db.connect(d.database_url) as poll:  # one connection for the wait (the server is shared)

            def done() -> bool:
                row = poll.execute(rig.queries["bench_sent"]).fetchone()
                return bool(row and row["n"] >= spread_n)

            rig.wait_until(done, timeout=seconds + 120, interval=0.5, what="the spread emails to be sent")
    end = t0 + dt.timedelta(seconds=seconds)
    if recurrences or occurrence_spread:
        burst_due = _due(d, "occurrence_send_times")
    else:
        burst_due = _due(d, "subject_send_times", subject="bench-burst")

    def window() -> dict[str, dt.datetime]:
        # Occurrences are created a lookahead ahead, some after the spread began: read again.
        due = _due(d, "occurrence_send_times") if recurrences or occurrence_spread else burst_due
        return {m: at for m, at in due.items() if at <= end}

    rig.wait_until(
        lambda: len(lateness_of(d, w := window())) >= max(len(w), expected),
        timeout=seconds + 120,
        interval=0.5,
        what="the occurrences (or their stand-ins) to be sent",
    )
    time.sleep(0.1)
    burst = lateness_of(d, window())
    if occurrence_spread:
        # The spread is the occurrences: its rows are theirs, and there is no burst.
        ordinary, burst = burst, []
    else:
        ordinary = lateness_of(d, _due(d, "subject_send_times", subject="bench"))
    # While a burst was being sent: from its instant to its last delivery.
    windows: dict[float, float] = {}
    for due_at, late in burst:
        windows[due_at] = max(windows.get(due_at, 0.0), late)
    calm = [late for due_at, late in ordinary if not any(b <= due_at <= b + w for b, w in windows.items())]
    d.stop()
    cost = asyncio.run(ticks(d, n_ticks))
    return {
        **_stats([late for _, late in ordinary], "spread"),
        **_stats(calm, "calm"),
        "calm_n": len(calm),
        "burst_sent": len(burst),
        **_stats([late for _, late in burst], "burst"),
        "burst_last_ms": max((late for _, late in burst), default=float("nan")) * 1000,
        "burst_offsets": [due_at - t0.timestamp() for due_at, _ in burst],
        "warmup_tick_ms": warm["tick_ms"],
        "warmup_occurrences": warm["occurrences_per_tick"],
        **cost,
    }


ROWS = [
    ("spread_p50_ms", "spread (of occurrences in the last column): lateness p50 (ms)"),
    ("spread_p99_ms", "spread (of occurrences in the last column): lateness p99 (ms)"),
    ("calm_n", "  of which due while no burst was being sent"),
    ("calm_p99_ms", "  those: lateness p99 (ms)"),
    ("burst_sent", "occurrences (or stand-ins) due in the spread's minute"),
    ("burst_p50_ms", "  their lateness p50 (ms)"),
    ("burst_p99_ms", "  their lateness p99 (ms)"),
    ("burst_last_ms", "  the last one's lateness (ms)"),
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
    parser.add_argument(
        "--lead", type=float, default=3.0, help="seconds from scheduling the spread to its start (the tests': 1)"
    )
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
            variants = ("none", "active", "one-off", "occurrences")
            results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
            for _ in range(args.runs):
                # Interleaved, so a slow moment of the machine hits all of them; the one-off
                # stand-ins copy the instants of the occurrences the run before them sent.
                kwargs = {"spread_n": args.spread, "seconds": args.seconds, "n_ticks": args.ticks, "lead": args.lead}
                active = run_variant(ours, recurrences=args.recurrences, **kwargs)
                results["active"].append(active)
                results["one-off"].append(run_variant(ours, recurrences=0, one_off=active["burst_offsets"], **kwargs))
                results["none"].append(run_variant(ours, recurrences=0, **kwargs))
                results["occurrences"].append(run_variant(ours, recurrences=0, occurrence_spread=True, **kwargs))
        finally:
            ours.cleanup()
    labels = {
        "none": "no recurrence",
        "active": f"{args.recurrences:,} active",
        "one-off": "same mail, one-off",
        "occurrences": "occurrence spread",
    }
    width = max(len(label) for _, label in ROWS)
    print(f"{'median of ' + str(args.runs) + ' run(s)':<{width}} | " + " | ".join(f"{labels[v]:>18}" for v in variants))
    print("-" * width + "-|-" + "-|-".join("-" * 18 for _ in variants))
    for key, label in ROWS:
        cells = []
        for v in variants:
            values = [r[key] for r in results[v] if r[key] == r[key]]
            cells.append(f"{statistics.median(values):>18.1f}" if values else f"{'-':>18}")
        print(f"{label:<{width}} | " + " | ".join(cells))
    mix = ", ".join(f"{int(share * 100)}% {kind}" for kind, share in MIX)
    print(f"mix: {mix}; spread: {args.spread} emails over {args.seconds:g} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
