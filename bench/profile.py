"""Where a worker's time goes while a burst drains: round trips, CPU per email, py-spy's frames.

``python -m bench.profile [--emails 5000] [--workers 2] [--runs 3] [--spy]``

Schedules ``--emails`` emails due at one instant (as bench/ours.py's throughput
scenario does), runs real workers against the lean sink (bench/sink.py), and prints
per run: emails/s, CPU per email with each group's share, and what each worker
logged when it stopped: its fetch round trips and jobs fetched, and the round trips
and requests of its group commits (tasks/delivery/groupcommit.py). With ``--spy``,
py-spy samples every worker for 5 s in the middle of the first run and the table of
the frames that hold most of the time follows (self time: where the CPU is spent;
the whole stack: ``--frames``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import time

from bench import ours, rig

SPY_SECONDS = 5


def _spy(pids: list[int], out: pathlib.Path) -> list[subprocess.Popen[bytes]]:
    py_spy = shutil.which("py-spy") or str(pathlib.Path(sys.executable).with_name("py-spy"))
    return [
        subprocess.Popen(
            [py_spy, "record", "-p", str(pid), "-d", str(SPY_SECONDS), "-r", "200", "-f", "raw", "--nonblocking"]
            + ["-o", str(out / f"spy-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def frames(files: list[pathlib.Path], top: int) -> list[tuple[str, float, float]]:
    """(frame, % of samples with it anywhere on the stack, % with it on top), busiest first."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for path in files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            total += n
            names = [re.sub(r" \((.*/)?([^/:]+):\d+\)$", r" (\2)", f) for f in stack.split(";")]
            for name in set(names):
                inclusive[name] += n
            own[names[-1]] += n
    if not total:
        return []
    busiest = sorted(set(inclusive), key=lambda k: (own[k], inclusive[k]), reverse=True)[:top]
    return [(name, 100 * inclusive[name] / total, 100 * own[name] / total) for name in busiest]


def run_once(o: ours.Ours, n: int, workers: int, spy_dir: pathlib.Path | None) -> dict[str, object]:
    with o.deployment() as d:
        procs = d.start_workers(workers)
        t0, times = ours.at_once(n, lead=3 + n / 4000)
        d.schedule(times)
        meter = d.cpu_meter()
        meter.start()
        spies = []
        if spy_dir is not None:
            time.sleep(max(t0.timestamp() - time.time(), 0) + 0.3)  # into the drain
            spies = _spy([p.pid for p in procs], spy_dir)
        last = d.sink.wait_for(n, timeout=60 + n / 50)
        spent = meter.stop()
        for spy in spies:
            spy.wait(SPY_SECONDS + 30)
        d.stop()
        trips: collections.Counter[str] = collections.Counter()
        for log in d.logs.glob("worker-*.log"):
            for line in log.read_text().splitlines():
                if '"round trips"' in line:
                    trips.update({k: v for k, v in json.loads(line).items() if isinstance(v, int)})
        return {"emails_s": n / (last - t0.timestamp()), **rig.cpu_per_email(spent, n), **trips}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spy", action="store_true", help="sample the workers with py-spy in the first run")
    parser.add_argument("--frames", type=int, default=25, help="rows of the py-spy table")
    args = parser.parse_args(argv)
    work = rig.WORK / f"profile-{os.getpid()}"
    spy_dir = work / "spy"
    o = ours.Ours(work, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    o.prepare()
    results = []
    try:
        for i in range(args.runs):
            if args.spy and i == 0:
                spy_dir.mkdir(parents=True, exist_ok=True)
            result = run_once(o, args.emails, args.workers, spy_dir if args.spy and i == 0 else None)
            results.append(result)
            print(f"run {i + 1}: {result}", flush=True)
        keys = [k for k in results[0] if isinstance(results[0][k], int | float)]
        print(f"\n{args.emails} emails due at once, {args.workers} workers, medians of {args.runs} runs\n")
        print("| figure | value |\n|---|---:|")
        for key in keys:
            print(f"| {key} | {statistics.median(float(r[key]) for r in results):,.2f} |")  # type: ignore[arg-type]
        emails = statistics.median(float(r.get("jobs_fetched", 0)) for r in results)  # type: ignore[arg-type]
        for what in ("fetches", "start_data_writes", "finish_writes"):
            count = statistics.median(float(r.get(what, 0)) for r in results)  # type: ignore[arg-type]
            if count:
                print(f"| emails per round trip: {what} | {emails / count:.2f} |")
        if args.spy:
            table = frames(sorted(spy_dir.glob("spy-*.txt")), args.frames)
            print("\n| frame (py-spy, workers) | on the stack | on top |\n|---|---:|---:|")
            for name, anywhere, on_top in table:
                print(f"| `{name}` | {anywhere:.1f} % | {on_top:.1f} % |")
    finally:
        o.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
