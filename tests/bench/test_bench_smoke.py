"""The benchmark harness itself, in one short run of each scenario, so it cannot rot."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import psycopg
import pytest

from bench.web_support import server_url
from tests.support.procs import ROOT

pytestmark = pytest.mark.slow


def test_the_quick_benchmark_runs_every_scenario_and_writes_its_table(tmp_path: pathlib.Path) -> None:
    """`python -m bench --smoke` (a quick run, smaller) measures us and raw Procrastinate, one row per
    figure; BullMQ is left out."""
    out = tmp_path / "RESULTS.md"

    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=280,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    for scenario in ("throughput", "cpu", "enqueue", "burst", "spread", "backlog", "crash", "rate", "api", "rss"):
        assert f"| {scenario} |" in text, scenario
    # The quick run (run by `make test`) needs no Node: BullMQ's columns say why they are empty.
    assert "BullMQ: not run (--quick" in text
    assert "## Machine" in text and "sink alone" in text
    rows = [line for line in text.splitlines() if line.startswith("| throughput |")]
    [throughput] = rows
    ours, base = (cell.strip() for cell in throughput.split("|")[3:5])
    assert float(ours.replace(",", "")) > 0 and float(base.replace(",", "")) > 0
    [enqueue] = [line for line in text.splitlines() if line.startswith("| enqueue |")]
    ours, base = (cell.strip() for cell in enqueue.split("|")[3:5])
    assert float(ours.replace(",", "")) > 0 and float(base.replace(",", "")) > 0
    crash = {
        line.split("|")[2].strip(): line.split("|")[3].strip() for line in text.splitlines() if "| crash |" in line
    }
    assert crash["lost"] == "0" and crash["duplicated"] == "0"


def test_the_recurrences_benchmark_runs_and_prints_its_table() -> None:
    """`python -m bench.recurrences`, small: the four variants measured, every row filled."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.recurrences", "--recurrences", "2000", "--spread", "40", "--seconds", "3",
         "--ticks", "1", "--lead", "1"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=280,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("median of"))
    assert all(v in header for v in ("no recurrence", "2,000 active", "same mail, one-off", "occurrence spread"))
    p99 = next(line for line in lines if "lateness p99" in line and line.startswith("spread"))
    assert all(float(cell) >= 0 for cell in p99.split("|")[1:])
    # The last column's spread is made of occurrences: all of them were sent.
    calm = next(line for line in lines if "due while no burst" in line)
    assert float(calm.split("|")[4]) >= 39
    first = next(line for line in lines if line.startswith("first tick: occurrences created"))
    assert float(first.split("|")[1]) == 0 and float(first.split("|")[2]) > 0


def test_the_alert_latency_benchmark_kills_the_workers_and_times_the_slack_message() -> None:
    """`python -m bench.alert_latency`, quick settings: one run, the time within its bounds."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.alert_latency", "--workers", "1", "--runs", "1", "--heartbeat", "0.5",
         "--stalled-after", "2", "--interval", "0.5"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = next(line for line in result.stdout.splitlines() if line.startswith("median"))
    measured = float(summary.split()[1])
    assert 1.5 - 0.1 <= measured <= 2.5 + 1.0, summary  # from STALLED_AFTER - HEARTBEAT to + INTERVAL, some slack


def test_the_providers_benchmark_runs_and_prints_its_table() -> None:
    """`python -m bench.providers`, small: each API transport's row filled, every email sent."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.providers", "--emails", "20", "--runs", "1"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")}
    for name in ("ses:// (moto server)", "sendgrid:// (stand-in)"):
        assert float(rows[name][2]) > 0 and rows[name][6].strip() == "0", rows[name]


def test_the_search_benchmark_runs_and_prints_its_table() -> None:
    """`python -m bench.search`, small: every kind of query timed, and its plan printed."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.search", "--emails", "3000", "--others", "300", "--repeat", "1", "--runs", "1",
         "--explain"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for kind in ("free text", "status:", "domain:", "before: / after:", "negation", "count (saved search)"):
        assert f"\n{kind} " in result.stdout, kind
    assert "### q='to:user123@'" in result.stdout and "Execution Time" in result.stdout
    assert "\nharder (added) " in result.stdout
    assert "worst p99:" in result.stdout


def test_the_search_benchmark_keeps_its_database_for_the_next_run() -> None:
    """`--keep NAME`: the first run loads the emails, the next reuses them; another size is refused."""
    name = f"rdbx_search_keep_{os.getpid()}"
    command = [sys.executable, "-m", "bench.search", "--others", "300", "--repeat", "1", "--runs", "1", "--keep", name]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    try:
        runs = [
            subprocess.run(
                [*command, "--emails", str(n)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
            )
            for n in (2000, 2000, 3000)
        ]
    finally:
        with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # generated name

    assert runs[0].returncode == 0 and "loaded 2,300 emails" in runs[0].stdout, runs[0].stdout[-3000:]
    assert runs[1].returncode == 0 and "reusing the 2,300 emails" in runs[1].stdout, runs[1].stdout[-3000:]
    assert "loaded" not in runs[1].stdout and "worst p99:" in runs[1].stdout
    assert runs[2].returncode != 0 and "not 3,000 + 300" in runs[2].stderr, runs[2].stderr[-3000:]


def test_the_bulk_benchmark_runs_and_prints_its_table() -> None:
    """`python -m bench.bulk`, small: a cancel and a reschedule timed, each applied to every email and undone."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.bulk", "--emails", "300", "--background", "100", "--runs", "1"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "\ncancel      300 " in result.stdout and "\nreschedule  300 " in result.stdout, result.stdout


def test_the_webhooks_benchmark_runs_and_prints_its_table() -> None:
    """`python -m bench.webhooks`, small: every event delivered and its rate in the table."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.webhooks", "--events", "50", "--runs", "1"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    median = next(line for line in result.stdout.splitlines() if line.startswith("| **median**"))
    assert median.split("|")[2].strip() == "50" and float(median.split("|")[4].strip(" *")) > 0
