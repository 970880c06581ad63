"""Where PostgreSQL's time goes while a burst drains: the first emails against the last.

``python -m bench.drain [--emails 5000] [--window 1000] [--workers 2]``

Starts a PostgreSQL of its own (initdb in a temporary directory, a free port,
``pg_stat_statements`` preloaded, ``track_functions=all``), migrates it, schedules
``--emails`` emails due at one instant, runs real workers against the lean sink
(bench/sink.py) and reads ``pg_stat_statements`` and ``pg_stat_user_functions``
twice: over the first ``--window`` emails delivered, and over the last ``--window``
(statistics reset in between). A statement whose cost per call differs between
the two grows with the number of due emails. Also the CPU of every PostgreSQL
process per email, from /proc.

Redis is the one REDIS_URL names (default 127.0.0.1:6379), under a private prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench import ours as ours_module
from bench import rig
from scripts import services

#: Statements and functions whose share of a window is under this are left out of the table.
MIN_SHARE = 0.005
_TICKS = os.sysconf("SC_CLK_TCK")


#: Server options that make every statement (those inside functions too) and function measurable.
PROFILING = (
    "-c shared_preload_libraries=pg_stat_statements",
    "-c pg_stat_statements.track=all",
    "-c track_functions=all",
)


@contextlib.contextmanager
def private_postgres(*extra: str) -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL (initdb in a temporary directory, a free port); yields its URL and postmaster pid.

    ``extra``: more ``-c name=value`` server options, e.g. ``PROFILING``.
    """
    bindir = services._pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
    root = pathlib.Path(tempfile.mkdtemp(prefix="rdbx-drain-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
    port = services.free_port()

    def pg_ctl(*args: str) -> None:
        subprocess.run(
            services._as_postgres([str(bindir / "pg_ctl"), "-D", str(data), *args]),
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    subprocess.run(
        services._as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )
    options = [
        f"-p {port}",
        f"-k {root}",
        "-c listen_addresses=127.0.0.1",
        "-c max_connections=100",
        *extra,
    ]
    pg_ctl("-o", " ".join(options), "-l", str(root / "server.log"), "-w", "-t", "60", "start")
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", pid
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def cpu_seconds(postmaster: int) -> float:
    """CPU (user + system) of the postmaster and every process it started, so far."""
    total = 0.0
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            fields = text[text.rindex(")") + 2 :].split()
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == postmaster:
                # Its own time and that of the children it reaped (autovacuum workers...).
                total += sum(int(f) for f in fields[11:15]) / _TICKS
            elif ppid == postmaster:
                total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def reset(conn: psycopg.Connection[dict[str, Any]]) -> None:
    conn.execute("SELECT pg_stat_statements_reset()")
    conn.execute("SELECT pg_stat_reset()")
    conn.execute("SELECT pg_stat_reset_shared('wal')")


def activity(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, Any]:
    """WAL written and autovacuum runs since the last reset (they are PostgreSQL's cost too)."""
    wal = conn.execute("SELECT wal_records, wal_fpi, wal_bytes::bigint AS wal_bytes FROM pg_stat_wal").fetchone()
    vacuums = conn.execute(
        "SELECT coalesce(sum(autovacuum_count), 0)::int AS autovacuums, coalesce(sum(autoanalyze_count), 0)::int AS"
        " autoanalyzes FROM pg_stat_user_tables"
    ).fetchone()
    return {**(wal or {}), **(vacuums or {})}


def snapshot(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Statements and functions of this database since the last reset, by a readable key."""
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute(
        "SELECT query, toplevel, calls, total_exec_time AS ms, shared_blks_hit AS hit, shared_blks_read AS read"
        "  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchall():
        key = ("" if row["toplevel"] else "(in a function) ") + " ".join(row["query"].split())[:110]
        entry = out.setdefault(key, {"calls": 0, "ms": 0.0, "hit": 0, "read": 0})
        for name in ("calls", "ms", "hit", "read"):
            entry[name] += row[name]
    for row in conn.execute(
        "SELECT funcname, calls, total_time AS ms, self_time FROM pg_stat_user_functions"
    ).fetchall():
        out[f"function {row['funcname']}()"] = {"calls": row["calls"], "ms": row["ms"], "hit": None, "read": None}
    return out


def window(
    d: ours_module.Deployment, conn: psycopg.Connection[dict[str, Any]], postmaster: int, until: int, timeout: float
) -> dict[str, Any]:
    """Reset the statistics, wait until the sink holds ``until`` emails, read them."""
    reset(conn)
    start_count, start_cpu, started = d.sink.count(), cpu_seconds(postmaster), time.monotonic()
    rig.wait_until(lambda: d.sink.count() >= until, timeout=timeout, interval=0.01, what=f"{until} emails")
    stats, other = snapshot(conn), activity(conn)
    sent = d.sink.count() - start_count
    return {
        "emails": sent,
        "seconds": time.monotonic() - started,
        "cpu_ms_per_email": (cpu_seconds(postmaster) - start_cpu) * 1000 / sent,
        "stats": stats,
        **other,
    }


def warm_up(d: ours_module.Deployment, count: int) -> None:
    """Send ``count`` emails a few at a time first, as a system that has been running a while has.

    The workers' pooled connections prepare each statement after five runs, and
    PostgreSQL keeps the plan it makes then: here, while ``emails`` is small.
    """
    target = d.sink.count()
    for start in range(0, count, 10):
        batch = min(10, count - start)
        target += batch
        d.schedule([dt.datetime.now(dt.UTC)] * batch)
        rig.wait_until(functools.partial(_reached, d, target), timeout=60, what="the warm-up emails")


def _reached(d: ours_module.Deployment, count: int) -> bool:
    return d.sink.count() >= count


def run(
    emails: int, size: int, workers: int, rounds: int, redis_url: str, env: dict[str, str], warm: int = 0
) -> list[dict[str, Any]]:
    """Every consecutive window of ``size`` emails, round after round (the same workers throughout)."""
    with private_postgres(*PROFILING) as (server, postmaster):
        os.environ["DATABASE_URL"] = server  # rig creates its databases on this server
        work = rig.WORK / "drain"
        work.mkdir(parents=True, exist_ok=True)
        ours = ours_module.Ours(work, redis_url)
        ours.prepare()
        try:
            with (
                ours.deployment(env=env) as d,
                psycopg.connect(d.database_url, autocommit=True, row_factory=dict_row) as conn,
            ):
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                d.start_workers(workers)
                warm_up(d, warm)
                windows = []
                for r in range(rounds):
                    t0, times = ours_module.at_once(emails, lead=3 + emails / 2000)
                    d.schedule(times)
                    time.sleep(max(0.0, t0.timestamp() - time.time()))
                    base = warm + r * emails
                    for end in range(size, emails + size, size):
                        windows.append(window(d, conn, postmaster, base + min(end, emails), timeout=300))
                        windows[-1]["round"] = r + 1
                return windows
        finally:
            ours.cleanup()


def _short(text: str, width: int = 70) -> str:
    text = re.sub(r"\$\d+", "$", text)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(first: dict[str, Any], last: dict[str, Any]) -> str:
    """Per statement: calls per email, ms per call and buffer hits per call, first vs last window."""
    keys = sorted(
        set(first["stats"]) | set(last["stats"]),
        key=lambda k: -(first["stats"].get(k, {}).get("ms", 0) / first["emails"]),
    )
    total_first = sum(v["ms"] for k, v in first["stats"].items() if not k.startswith(("function", "(in")))
    lines = [
        f"first {first['emails']} emails: {first['seconds']:.2f} s,"
        f" PostgreSQL CPU {first['cpu_ms_per_email']:.2f} ms/email;"
        f" last {last['emails']}: {last['seconds']:.2f} s, {last['cpu_ms_per_email']:.2f} ms/email",
        "",
        "| statement | calls/email first → last | ms/call first → last | blocks hit/call first → last |",
        "|---|---|---|---|",
    ]
    for key in keys:
        a, b = first["stats"].get(key), last["stats"].get(key)
        share = (a["ms"] if a else 0) / total_first if total_first else 0
        if share < MIN_SHARE and not (b and b["ms"] / max(total_first, 1e-9) >= MIN_SHARE):
            continue

        def cells(s: dict[str, Any] | None, n: int) -> tuple[str, str, str]:
            if not s or not s["calls"]:
                return "-", "-", "-"
            hit = "" if s["hit"] is None else f"{s['hit'] / s['calls']:.1f}"
            return f"{s['calls'] / n:.2f}", f"{s['ms'] / s['calls']:.3f}", hit

        ca, cb = cells(a, first["emails"]), cells(b, last["emails"])
        lines.append(f"| `{_short(key)}` | {ca[0]} → {cb[0]} | {ca[1]} → {cb[1]} | {ca[2]} → {cb[2]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=5000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--warm", type=int, default=0, help="send this many emails, ten at a time, before the first burst"
    )
    parser.add_argument("--rounds", type=int, default=1, help="drain this many bursts, one after the other")
    parser.add_argument("--json", type=pathlib.Path, help="also write every window's statistics here")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the workers (repeatable)")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    env = dict(item.split("=", 1) for item in args.env)
    windows = run(args.emails, args.window, args.workers, args.rounds, redis_url, env, args.warm)
    if args.json:
        args.json.write_text(json.dumps(windows, indent=1))
    for i, w in enumerate(windows):
        print(
            f"round {w['round']} window {i + 1}: {w['emails']} emails in {w['seconds']:.2f} s,"
            f" PostgreSQL CPU {w['cpu_ms_per_email']:.2f} ms/email,"
            f" WAL {w['wal_bytes'] / w['emails']:.0f} B and {w['wal_fpi'] / w['emails']:.2f} full pages per email,"
            f" autovacuum {w['autovacuums']}, autoanalyze {w['autoanalyzes']}"
        )
    print()
    print(table(windows[0], windows[-1]))


if __name__ == "__main__":
    main()
