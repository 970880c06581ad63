"""Time from a worker fleet dying (SIGKILL) to the Slack message saying so, with default settings.

    .venv/bin/python -m bench.alert_latency [--workers 2] [--runs 3]
        [--heartbeat S] [--stalled-after S] [--interval S]   # other than the defaults (the smoke test's)

Real ``python -m tasks worker`` processes and a real ``python -m tasks monitor``
(WORKER_HEARTBEAT, WORKER_STALLED_AFTER and MONITOR_INTERVAL at their defaults)
on a scratch database; a local HTTP server stands in for Slack's incoming
webhook. Each run kills every worker at once with SIGKILL, notes the time, and
waits for the "No worker is alive" message; then starts the workers again and
waits for the "resolved" one. Same machine, same clock.

What bounds it: a worker's last heartbeat is up to WORKER_HEARTBEAT (2 s) old when
it dies; it counts as dead WORKER_STALLED_AFTER (10 s) after that heartbeat; the
monitor sees it at its next round, within MONITOR_INTERVAL (5 s). So from 8 s to
15 s, plus the post itself (milliseconds).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from bench.web_support import ROOT, bench_env, median, scratch_database, table
from tasks.core import config, db
from tests.support.slack_receiver import Message, SlackReceiver


def _registered(database_url: str, count: int) -> bool:
    with db.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM procrastinate_workers WHERE last_heartbeat > now() - interval '5 seconds'"
        ).fetchone()
    return bool(row and row["n"] >= count)


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def more(event: str, than: int) -> Callable[[list[Message]], bool]:
    """More than ``than`` no_worker messages of ``event``."""
    return lambda ms: len([m for m in ms if m.alert_key == "no_worker" and m.event == event]) > than


def _active(log: pathlib.Path) -> bool:
    for line in log.read_text(errors="replace").splitlines():
        try:
            if json.loads(line).get("event") == "monitor active":
                return True
        except ValueError:
            continue
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--heartbeat", help="WORKER_HEARTBEAT (default: its default)")
    parser.add_argument("--stalled-after", help="WORKER_STALLED_AFTER (default: its default)")
    parser.add_argument("--interval", help="MONITOR_INTERVAL (default: its default)")
    args = parser.parse_args()
    chosen = {
        name: value
        for name, value in (
            ("WORKER_HEARTBEAT", args.heartbeat),
            ("WORKER_STALLED_AFTER", args.stalled_after),
            ("MONITOR_INTERVAL", args.interval),
        )
        if value
    }
    defaults = config.load(chosen)
    receiver = SlackReceiver().start()
    logs = pathlib.Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    rows: list[list[object]] = []
    latencies: list[float] = []
    with scratch_database() as database_url:
        env = bench_env(database_url, SLACK_WEBHOOK_URL=receiver.url(), LOG_LEVEL="INFO", LOG_FORMAT="json")
        for name in ("WORKER_HEARTBEAT", "WORKER_STALLED_AFTER", "MONITOR_INTERVAL", "ALERT_MIN_INTERVAL"):
            env.pop(name, None)  # the defaults, whatever the shell says
        env |= chosen | {"ALERT_MIN_INTERVAL": "0"}  # each run raises anew (the interval would hold back the second)

        def start_workers() -> list[subprocess.Popen[bytes]]:
            started = [
                subprocess.Popen(
                    [sys.executable, "-m", "tasks", "worker"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(args.workers)
            ]
            _wait(lambda: _registered(database_url, args.workers), 60, "the workers to register")
            return started

        workers = start_workers()
        monitor_log = logs / "monitor.log"
        with open(monitor_log, "ab") as out:
            monitor = subprocess.Popen(
                [sys.executable, "-m", "tasks", "monitor"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            _wait(lambda: _active(monitor_log), 30, "the monitor to become active")
            # A monitor just started looks at the workers after WORKER_STALLED_AFTER (their time to register).
            time.sleep(defaults.worker_stalled_after + defaults.monitor_interval)
            assert not receiver.matching(key="no_worker"), "no_worker raised while workers were alive"
            for run in range(1, args.runs + 1):
                raised_before = len(receiver.matching(key="no_worker", event="raised"))
                # At a random moment of the monitor's round and of the workers' heartbeats: right
                # after the last message, every run would kill at the same phase of both.
                time.sleep(random.uniform(0, defaults.monitor_interval + defaults.worker_heartbeat))
                killed = time.monotonic()
                for worker in workers:
                    worker.kill()
                for worker in workers:
                    worker.wait(10)
                receiver.wait_for(more("raised", raised_before), timeout=120, what="the no_worker message")
                arrived = receiver.matching(key="no_worker", event="raised")[-1].arrived
                latencies.append(arrived - killed)
                rows.append([run, args.workers, f"{arrived - killed:.1f} s"])
                resolved_before = len(receiver.matching(key="no_worker", event="resolved"))
                workers = start_workers()
                receiver.wait_for(more("resolved", resolved_before), timeout=60, what="the resolved message")
        finally:
            for worker in workers:
                worker.kill()
            monitor.terminate()
            monitor.wait(30)
            receiver.stop()
    print(
        table(
            "Worker fleet killed (SIGKILL) → Slack message"
            f" (WORKER_HEARTBEAT {defaults.worker_heartbeat:g} s, WORKER_STALLED_AFTER"
            f" {defaults.worker_stalled_after:g} s, MONITOR_INTERVAL {defaults.monitor_interval:g} s)",
            ["run", "workers killed", "kill → message"],
            rows,
        )
    )
    low = defaults.worker_stalled_after - defaults.worker_heartbeat
    high = defaults.worker_stalled_after + defaults.monitor_interval
    print(f"median {median(latencies):.1f} s, max {max(latencies):.1f} s; expected between {low:g} s and {high:g} s")


if __name__ == "__main__":
    main()
