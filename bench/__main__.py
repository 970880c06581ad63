"""``python -m bench``: run every scenario (ours, raw Procrastinate, BullMQ), print one table.

``make bench`` runs the full version (each scenario 3 times, the stacks' runs
interleaved, medians) and writes bench/RESULTS.md; ``--quick`` runs one short
run of each and leaves BullMQ out unless ``--bullmq`` asks for it, so it needs
no Node; ``--smoke`` is a quick run smaller still, with shorter leads: the test
suite's check that every scenario's code runs (tests/bench/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import baseline, bullmq_stack, extra, ours, report, rig, sinkload

FULL: dict[str, Any] = {
    "runs": 3,
    "throughput": 5000,
    "enqueue": 2000,
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
    "enqueue": 100,
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
#: The test suite's run (``--smoke``): every scenario and code path of the quick run, at the
#: smallest sizes that still have each do its work (a kill a quarter through, a rate limit
#: that holds back two windows, a tenth of the emails to warm up on) and with one second
#: between scheduling and the due instant instead of two or three. Its figures mean nothing.
SMOKE: dict[str, Any] = QUICK | {
    "throughput": 100,
    "enqueue": 50,
    "burst": 40,
    "spread": (20, 1.0),
    "backlog": 1_000,
    "crash": 80,
    "rate": (30, 10, 1.0),
    "rss": 200,
    "api": 20,
    "sink": 200,
    "lead": 1.0,
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
    """Run one scenario of one stack ``times`` times; the median of each figure."""
    return compare(times, [("result", label, run)])["result"]


Stack = tuple[str, str, Callable[[], dict[str, Any]]]


def compare(times: int, stacks: list[Stack]) -> dict[str, dict[str, Any]]:
    """Run each stack's scenario ``times`` times, interleaved; each stack's medians, by key.

    Run i goes through every stack once, starting one further along each time,
    so a slow minute of the shared machine falls on all of them rather than on
    whichever would have run then, and none always goes first.
    """
    results: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in stacks}
    for i in range(times):
        turn = i % len(stacks)
        for key, label, run in stacks[turn:] + stacks[:turn]:
            started = time.perf_counter()
            results[key].append(run())
            RUNS.append((label, results[key][-1]))
            elapsed = time.perf_counter() - started
            print(f"  {label} run {i + 1}/{times}: {results[key][-1]} ({elapsed:.0f}s)", flush=True)
    return {key: median_of(values) for key, values in results.items()}


def bullmq_plan(
    args: argparse.Namespace, work: pathlib.Path, redis: rig.RedisServer | None
) -> tuple[bullmq_stack.BullMQ | None, str | None]:
    """The BullMQ stack if this run includes it (installed), else None and why not."""
    wanted = args.bullmq if args.bullmq is not None else not args.quick
    if not wanted:
        return None, "not run (" + (
            "--quick: the quick run needs no Node; add --bullmq" if args.quick else "--no-bullmq"
        ) + ")"
    missing = bullmq_stack.unavailable()
    if missing or redis is None:
        return None, missing or "not run: no redis-server of its own"
    stack = bullmq_stack.BullMQ(work, redis)
    try:
        stack.prepare()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"not run: installing its npm packages failed ({exc})"
    return stack, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run of each scenario")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick run, smaller and with short leads: the test suite's (implies --quick)",
    )
    parser.add_argument("--runs", type=int, help="runs per scenario (default 3, quick 1)")
    parser.add_argument("--out", type=pathlib.Path, help="write the table here (default bench/RESULTS.md; quick: none)")
    parser.add_argument("--only", help="comma-separated scenarios: " + ", ".join(report.SCENARIOS))
    parser.add_argument("--emails", type=int, help="emails in the throughput, burst and enqueue scenarios")
    parser.add_argument(
        "--bullmq",
        action=argparse.BooleanOptionalAction,
        help="run the BullMQ baseline (default: yes, except with --quick; needs node and npm)",
    )
    args = parser.parse_args(argv)
    args.quick = args.quick or args.smoke
    size: dict[str, Any] = dict(SMOKE if args.smoke else QUICK if args.quick else FULL)
    # Seconds from scheduling to the due instant: each scenario's own unless the size says.
    lead: dict[str, Any] = {"lead": size["lead"]} if "lead" in size else {}
    if args.emails:
        size |= {"throughput": args.emails, "burst": args.emails, "enqueue": args.emails}
    runs = args.runs or size["runs"]
    only = set(args.only.split(",")) if args.only else set(report.SCENARIOS)
    out = args.out if args.out is not None else (None if args.quick else pathlib.Path(__file__).with_name("RESULTS.md"))
    work = rig.WORK / f"run-{os.getpid()}"
    results: dict[str, dict[str, Any]] = {}
    machine = report.machine()
    started = time.perf_counter()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        # One Redis of the benchmark's own for ours and BullMQ (never both at once): its
        # CPU is then theirs alone. Without redis-server, ours uses REDIS_URL.
        redis = cleanup.enter_context(rig.private_redis(work / "redis"))
        redis_url = redis.url if redis else os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        ours_rig = ours.Ours(work, redis_url, redis.proc.pid if redis else None)
        base_rig = baseline.Baseline(work)
        cleanup.callback(base_rig.cleanup)
        cleanup.callback(ours_rig.cleanup)
        ours_rig.prepare()
        base_rig.prepare()
        bull, bullmq_note = bullmq_plan(args, work, redis)
        if bull is None:
            print(f"  BullMQ: {bullmq_note}", flush=True)
        with rig.sink(work / "sink-alone") as alone:
            machine["sink alone (msg/s, reused connections)"] = (
                f"{sinkload.measure(alone.port, messages=size['sink']):.0f}"
            )

        def with_bullmq(scenario: str, stacks: list[Stack], run: Callable[..., dict[str, Any]], n: int) -> list[Stack]:
            """``stacks`` and, when BullMQ runs, its two concurrencies."""
            if bull is None:
                return stacks
            return stacks + [
                (
                    f"{scenario}_bullmq{c}",
                    f"bullmq c{c} {scenario}",
                    lambda c=c: run(bull, n=n, concurrency=c),
                )
                for c in bullmq_stack.CONCURRENCIES
            ]

        if "throughput" in only:
            n = size["throughput"]
            stacks: list[Stack] = [
                ("throughput", "ours throughput", lambda: ours.throughput(ours_rig, n=n, **lead)),
                ("throughput_base", "baseline throughput", lambda: baseline.throughput(base_rig, n=n, **lead)),
            ]
            results |= compare(runs, with_bullmq("throughput", stacks, bullmq_stack.throughput, n))
        if "enqueue" in only:
            e = size["enqueue"]
            stacks = [
                ("enqueue", "ours enqueue", lambda: ours.enqueue(ours_rig, n=e)),
                ("enqueue_base", "baseline enqueue", lambda: baseline.enqueue(base_rig, n=e)),
            ]
            if bull is not None:
                # No worker runs while enqueueing: one figure serves both concurrencies.
                stacks.append(("enqueue_bullmq5", "bullmq enqueue", lambda: bullmq_stack.enqueue(bull, n=e)))
            results |= compare(runs, stacks)
            if "enqueue_bullmq5" in results:
                results["enqueue_bullmq50"] = results["enqueue_bullmq5"]
        if "burst" in only:
            b = size["burst"]
            stacks = [("burst", "ours burst", lambda: ours.burst(ours_rig, n=b, **lead))]
            if size["baseline_all"]:
                stacks.append(("burst_base", "baseline burst", lambda: baseline.burst(base_rig, n=b)))
            results |= compare(runs, with_bullmq("burst", stacks, bullmq_stack.burst, b))
        if "spread" in only:
            sn, secs = size["spread"]
            stacks = [("spread", "ours spread", lambda: ours.spread_run(ours_rig, n=sn, seconds=secs, **lead))]
            if size["baseline_all"]:
                stacks.append(("spread_base", "baseline spread", lambda: baseline.spread(base_rig, n=sn, seconds=secs)))
            results |= compare(runs, stacks)
        if "backlog" in only:
            count = size["backlog"]
            built = ours_rig.prepare_backlog(count)
            print(f"  backlog of {count:,} future emails built in {built:.0f}s", flush=True)
            if size["backlog_baseline_n"]:
                base_rig.prepare_backlog(count)
            n, (sn, secs), bn = size["throughput"], size["spread"], size["burst"]
            stacks = [
                (
                    "backlog",
                    "ours backlog",
                    lambda: {
                        "emails_s": ours.throughput(ours_rig, n=n, backlog=True, **lead)["emails_s"],
                        "last_s": ours.burst(ours_rig, n=bn, backlog=True, **lead)["last_s"],
                        "spread_p99_ms": ours.spread_run(ours_rig, n=sn, seconds=secs, backlog=True, **lead)["p99_ms"],
                    },
                )
            ]
            small = size["backlog_baseline_n"]
            if small:  # (the quick run skips the baseline here: its 5 s poll makes it slow)
                stacks.append(
                    (
                        "backlog_base",
                        "baseline backlog",
                        lambda: {
                            "emails_s": baseline.throughput(base_rig, n=small, backlog=True)["emails_s"],
                            "last_s": baseline.burst(base_rig, n=small, backlog=True)["last_s"],
                            "spread_p99_ms": baseline.spread(base_rig, n=small, seconds=secs, backlog=True)["p99_ms"],
                        },
                    )
                )
            results |= compare(runs, stacks)
        if "crash" in only:
            n = size["crash"]
            stacks = [("crash", "ours crash", lambda: extra.crash(ours_rig, n=n, env=size["crash_env"], **lead))]
            if size["baseline_all"]:
                stacks.append(("crash_base", "baseline crash", lambda: baseline.crash(base_rig, n=n, wait=10)))
            results |= compare(runs, stacks)
        if "rate" in only:
            n, count, secs = size["rate"]
            results["rate"] = repeat(
                runs, "ours rate limit", lambda: extra.max_rate(ours_rig, n=n, count=count, seconds=secs, **lead)
            )
        if "api" in only:
            results["api"] = repeat(runs, "ours api", lambda: extra.api(ours_rig, requests=size["api"]))
        if "rss" in only:
            n = size["rss"]
            results["rss"] = repeat(
                min(runs, size["rss_runs"]), "ours rss", lambda: extra.memory(ours_rig, n=n, **lead)
            )
    table = report.table(results, size, runs, bullmq=bullmq_note)
    print()
    print(table)
    print(f"\n(bench took {time.perf_counter() - started:.0f}s)")
    if out is not None:
        out.write_text(report.document(table, machine, RUNS, quick=args.quick), encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
