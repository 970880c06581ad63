"""``python -m bench``: run every scenario (ours and the raw-Procrastinate baseline), print one table.

``make bench`` runs the full version (each scenario 3 times, medians) and
writes bench/RESULTS.md; ``--quick`` runs one short run of each (CI).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import baseline, extra, ours, report, rig, sinkload

FULL: dict[str, Any] = {
    "runs": 3,
    "throughput": 5000,
    "burst": 300,
    "spread": (300, 20.0),
    "backlog": 1_000_000,
    "backlog_baseline_n": 200,
    "crash": 2000,
    "rate": (500, 100, 5.0),
    "rss": 50_000,
    "api": 400,
    "sink": 6000,
    "crash_env": {},
    "baseline_all": True,
    # A flatness check over 50,000 emails (~3 minutes): once, not three times.
    "rss_runs": 1,
}
QUICK: dict[str, Any] = {
    "runs": 1,
    "throughput": 300,
    "burst": 100,
    "spread": (40, 2.0),
    "backlog": 5_000,
    "backlog_baseline_n": 0,
    "crash": 150,
    "rate": (60, 20, 2.0),
    "rss": 600,
    "api": 40,
    "sink": 600,
    "crash_env": {"WORKER_HEARTBEAT": "0.5", "WORKER_STALLED_AFTER": "2"},
    "rss_runs": 1,
    # CI checks the harness, not the figures: the baseline runs only its throughput.
    "baseline_all": False,
}


#: Failures are not averaged away: for these the table shows the worst run.
WORST = frozenset({"lost", "duplicated", "stuck_jobs", "uncertain", "resume_s"})
#: Every run of every scenario, for the per-run section of RESULTS.md.
RUNS: list[tuple[str, dict[str, Any]]] = []


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric median over runs (failure counts: the worst run; non-numbers: the first run's)."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if not all(isinstance(v, int | float) for v in values):
            out[key] = values[0]
        else:
            out[key] = max(values) if key in WORST else statistics.median(values)
    return out


def repeat(times: int, label: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    results = []
    for i in range(times):
        started = time.perf_counter()
        results.append(run())
        RUNS.append((label, results[-1]))
        print(f"  {label} run {i + 1}/{times}: {results[-1]} ({time.perf_counter() - started:.0f}s)", flush=True)
    return median_of(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run of each scenario (CI)")
    parser.add_argument("--runs", type=int, help="runs per scenario (default 3, quick 1)")
    parser.add_argument("--out", type=pathlib.Path, help="write the table here (default bench/RESULTS.md; quick: none)")
    parser.add_argument("--only", help="comma-separated scenarios: " + ", ".join(report.SCENARIOS))
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    runs = args.runs or size["runs"]
    only = set(args.only.split(",")) if args.only else set(report.SCENARIOS)
    out = args.out if args.out is not None else (None if args.quick else pathlib.Path(__file__).with_name("RESULTS.md"))
    work = rig.WORK / f"run-{os.getpid()}"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    ours_rig, base_rig = ours.Ours(work, redis_url), baseline.Baseline(work)
    results: dict[str, dict[str, Any]] = {}
    machine = report.machine()
    started = time.perf_counter()
    try:
        ours_rig.prepare()
        base_rig.prepare()
        with rig.sink(work / "sink-alone") as alone:
            machine["sink alone (msg/s, reused connections)"] = (
                f"{sinkload.measure(alone.port, messages=size['sink']):.0f}"
            )
        if "throughput" in only:
            n = size["throughput"]
            results["throughput"] = repeat(runs, "ours throughput", lambda: ours.throughput(ours_rig, n=n))
            results["throughput_base"] = repeat(runs, "baseline throughput", lambda: baseline.throughput(base_rig, n=n))
        if "burst" in only:
            n = size["burst"]
            results["burst"] = repeat(runs, "ours burst", lambda: ours.burst(ours_rig, n=n))
            if size["baseline_all"]:
                results["burst_base"] = repeat(runs, "baseline burst", lambda: baseline.burst(base_rig, n=n))
        if "spread" in only:
            n, secs = size["spread"]
            results["spread"] = repeat(runs, "ours spread", lambda: ours.spread_run(ours_rig, n=n, seconds=secs))
            if size["baseline_all"]:
                results["spread_base"] = repeat(
                    runs, "baseline spread", lambda: baseline.spread(base_rig, n=n, seconds=secs)
                )
        if "backlog" in only:
            count = size["backlog"]
            built = ours_rig.prepare_backlog(count)
            print(f"  backlog of {count:,} future emails built in {built:.0f}s", flush=True)
            if size["backlog_baseline_n"]:
                base_rig.prepare_backlog(count)
            n, (sn, secs), bn = size["throughput"], size["spread"], size["burst"]
            results["backlog"] = repeat(
                runs,
                "ours backlog",
                lambda: {
                    **{"emails_s": ours.throughput(ours_rig, n=n, backlog=True)["emails_s"]},
                    **{"last_s": ours.burst(ours_rig, n=bn, backlog=True)["last_s"]},
                    **{"spread_p99_ms": ours.spread_run(ours_rig, n=sn, seconds=secs, backlog=True)["p99_ms"]},
                },
            )
            small = size["backlog_baseline_n"]
            if small:  # (the quick run skips the baseline here: its 5 s poll makes it slow)
                results["backlog_base"] = repeat(
                    runs,
                    "baseline backlog",
                    lambda: {
                        "emails_s": baseline.throughput(base_rig, n=small, backlog=True)["emails_s"],
                        "last_s": baseline.burst(base_rig, n=small, backlog=True)["last_s"],
                        "spread_p99_ms": baseline.spread(base_rig, n=small, seconds=secs, backlog=True)["p99_ms"],
                    },
                )
        if "crash" in only:
            n = size["crash"]
            results["crash"] = repeat(runs, "ours crash", lambda: extra.crash(ours_rig, n=n, env=size["crash_env"]))
            if size["baseline_all"]:
                results["crash_base"] = repeat(runs, "baseline crash", lambda: baseline.crash(base_rig, n=n, wait=10))
        if "rate" in only:
            n, count, secs = size["rate"]
            results["rate"] = repeat(
                runs, "ours rate limit", lambda: extra.max_rate(ours_rig, n=n, count=count, seconds=secs)
            )
        if "api" in only:
            results["api"] = repeat(runs, "ours api", lambda: extra.api(ours_rig, requests=size["api"]))
        if "rss" in only:
            n = size["rss"]
            results["rss"] = repeat(min(runs, size["rss_runs"]), "ours rss", lambda: extra.memory(ours_rig, n=n))
    finally:
        ours_rig.cleanup()
        base_rig.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    table = report.table(results, size, runs)
    print()
    print(table)
    print(f"\n(bench took {time.perf_counter() - started:.0f}s)")
    if out is not None:
        out.write_text(report.document(table, machine, RUNS, quick=args.quick), encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
