"""``python -m tasks monitor`` as processes: two run, one is active; killed while an
alert is open, the other takes over and never raises it a second time.

"Open" is once the raise is recorded: Slack has no idempotency key, so a monitor
killed in the milliseconds between Slack's answer and that commit is the one case
where the next one posts the raise again (at least once rather than maybe never).

Real processes, a real test database, a real HTTP server standing in for Slack.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Iterator

import pytest

from tasks.core import db
from tests.support import procs
from tests.support.slack_receiver import SlackReceiver


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    server = SlackReceiver().start()
    yield server
    server.stop()


def start_monitor(env: dict[str, str], log_dir: pathlib.Path, n: int) -> procs.Process:
    return procs.Process([sys.executable, "-m", "tasks", "monitor"], env, log_dir / f"monitor-{n}.log")


def active(monitor: procs.Process) -> bool:
    """Whether the process said it took the lock (its JSON log)."""
    for line in monitor.output().splitlines():
        try:
            if json.loads(line).get("event") == "monitor active":
                return True
        except ValueError:
            continue
    return False


def test_the_monitor_killed_while_an_alert_is_open_another_takes_over_without_raising_it_again(
    env: dict[str, str],
    receiver: SlackReceiver,
    tmp_path: pathlib.Path,
    workers: procs.Workers,
    database_url: str,
) -> None:
    monitor_env = env | {
        "SLACK_WEBHOOK_URL": receiver.url(),
        "MONITOR_INTERVAL": "0.2",
        "ALERT_MIN_INTERVAL": "0",
        "WORKER_STALLED_AFTER": "4.5",  # also how long a monitor just started waits before judging the workers
    }
    monitors = [start_monitor(monitor_env, tmp_path, n) for n in range(2)]
    try:
        # No worker runs: exactly one of the two raises it, and records it (the alert is open).
        receiver.wait_for(lambda ms: any(m.alert_key == "no_worker" for m in ms), timeout=30, what="no_worker")
        with db.connect(database_url) as conn:
            procs.wait_until(
                lambda: conn.execute(
                    "SELECT 1 FROM alerts WHERE key = 'no_worker' AND raised_at IS NOT NULL"
                ).fetchone(),
                timeout=10,
                what="the raised alert to be recorded",
            )
        first = procs.wait_until(
            lambda: next((m for m in monitors if active(m)), None), timeout=10, what="the active monitor's log"
        )
        other = next(m for m in monitors if m is not first)
        assert not active(other)

        first.kill()  # SIGKILL while the alert is open: its session, and the lock, go with it
        procs.wait_until(lambda: active(other), timeout=10, what="the other monitor to take over")
        workers()  # the alert's cause goes away: the new active monitor resolves it

        receiver.wait_for(
            lambda ms: any(m.alert_key == "no_worker" and m.event == "resolved" for m in ms),
            timeout=30,
            what="no_worker resolved",
        )
        assert [m.event for m in receiver.matching(key="no_worker")] == ["raised", "resolved"]
        assert other.proc.poll() is None, other.output()
    finally:
        for m in monitors:
            m.stop()
    assert other.proc.returncode == 0  # SIGTERM: a clean stop
