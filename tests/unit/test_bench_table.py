"""The benchmark's comparison machinery: the table's columns and ratios, interleaved runs, CPU accounting."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from bench import __main__ as bench_main
from bench import report, rig

SIZE = bench_main.QUICK | {"throughput": 5000, "enqueue": 2000, "burst": 300}


def rows_of(text: str) -> dict[str, list[str]]:
    """Each table row's cells after the metric, by metric."""
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| scenario"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[1]] = cells[2:]
    return out


def test_each_stack_has_its_column_and_ours_is_compared_to_each() -> None:
    results: dict[str, dict[str, Any]] = {
        "throughput": {"emails_s": 500.0, "cpu_ms": 3.0, "cpu_workers_pct": 40.0, "cpu_postgres_pct": 50.0},
        "throughput_base": {"emails_s": 250.0, "cpu_ms": 6.0, "cpu_workers_pct": 60.0},
        "throughput_bullmq5": {"emails_s": 1000.0, "cpu_ms": 1.5, "cpu_redis_pct": 20.0},
        "throughput_bullmq50": {"emails_s": 2000.0, "cpu_ms": 1.0},
        "enqueue": {"enqueue_s": 400.0},
        "enqueue_base": {"enqueue_s": 800.0},
        "enqueue_bullmq5": {"enqueue_s": 4000.0},
        "enqueue_bullmq50": {"enqueue_s": 4000.0},
    }

    text = report.table(results, SIZE, runs=3)

    assert "| ours | raw Procrastinate | BullMQ c5 | BullMQ c50 | ours/raw | ours/c5 | ours/c50 |" in text
    rows = rows_of(text)
    assert rows["5,000 due at once, 2 workers: emails/s"] == [
        "500",
        "250",
        "1,000",
        "2,000",
        "2.00x",
        "0.50x",
        "0.25x",
        ">= 1.0x BullMQ c5",
    ]
    assert rows["throughput run: CPU per email, all processes (5,000 emails)"][:7] == [
        "3.00 ms", "6.00 ms", "1.50 ms", "1.00 ms", "0.50x", "2.00x", "3.00x"
    ]  # fmt: skip
    # Shares: a stack without that kind of process shows "-", and shares are not divided.
    assert rows["share of it: PostgreSQL backends"][:7] == ["50.0 %", "-", "-", "-", "-", "-", "-"]
    assert rows["share of it: Redis"][:4] == ["-", "-", "20.0 %", "-"]
    enqueue = next(cells for metric, cells in rows.items() if metric.startswith("2,000 one at a time"))
    assert enqueue[:7] == ["400", "800", "4,000", "4,000", "0.50x", "0.10x", "0.10x"]
    assert "\nBullMQ: " not in text


def test_the_table_says_why_bullmq_is_missing() -> None:
    text = report.table({"throughput": {"emails_s": 500.0}}, SIZE, runs=1, bullmq="not run (--quick)")

    assert "BullMQ: not run (--quick)." in text
    assert rows_of(text)["5,000 due at once, 2 workers: emails/s"][:7] == ["500", "-", "-", "-", "-", "-", "-"]


def test_runs_are_interleaved_each_starting_one_further_and_medians_kept_per_stack() -> None:
    order: list[str] = []
    values = {"a": iter([1.0, 9.0, 5.0]), "b": iter([2.0, 4.0, 3.0]), "c": iter([7.0, 7.0, 8.0])}

    def run(key: str) -> dict[str, Any]:
        order.append(key)
        return {"x": next(values[key])}

    results = bench_main.compare(3, [(k, k, functools.partial(run, k)) for k in "abc"])

    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert results == {"a": {"x": 5.0}, "b": {"x": 3.0}, "c": {"x": 7.0}}


def test_the_cpu_meter_counts_what_each_group_spends_in_the_window() -> None:
    me = os.getpid()
    meter = rig.CpuMeter({"busy": lambda: [me], "gone": lambda: [2**22 + 1]})
    meter.start()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass

    spent = meter.stop()

    assert 0.2 <= spent["busy"] <= 1.0
    assert spent["gone"] == 0
    figures = rig.cpu_per_email({"workers": 0.3, "postgres": 0.1}, emails=100)
    assert figures == {"cpu_ms": 4.0, "cpu_workers_pct": 75.0, "cpu_postgres_pct": 25.0}


def test_descendants_include_the_children_of_a_process() -> None:
    proc = rig.Proc(["sh", "-c", "sleep 30 & wait"], {"PATH": os.environ["PATH"]}, rig.WORK / "descendants.log")
    try:
        found = rig.wait_until(lambda: len(rig.descendants(proc.pid)) >= 2, timeout=10, what="the child")
        assert found and rig.descendants(proc.pid)[0] == proc.pid
    finally:
        proc.kill()
