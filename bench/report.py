"""The benchmark's one table, the machine it ran on, and bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import math
import os
import pathlib
import platform
import shutil
import subprocess
from typing import Any

import psycopg

from bench import rig

SCENARIOS = ("throughput", "enqueue", "burst", "spread", "backlog", "crash", "rate", "api", "rss")

#: The stacks side by side: the suffix of their results' keys and their column's name.
STACKS = (("", "ours"), ("_base", "raw Procrastinate"), ("_bullmq5", "BullMQ c5"), ("_bullmq50", "BullMQ c50"))
#: The CPU groups of a stack's processes (bench/rig.py: stack_meter), in the table's order.
CPU_GROUPS = (("workers", "workers"), ("postgres", "PostgreSQL backends"), ("redis", "Redis"), ("sink", "sink"))

Cell = tuple[Any, str]
#: scenario, metric, one cell per stack (value, unit), whether ratios make sense, target.
Row = tuple[str, str, list[Cell], bool, str]


def machine() -> dict[str, str]:
    """Describe where the figures come from."""
    cpu = "?"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = pathlib.Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    with psycopg.connect(rig.server_url("postgres")) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    node = shutil.which("node")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else ""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{int(mem) // 1024} MB",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "postgresql": row[0] if row else "?",
        "redis": redis_version[2].removeprefix("v=") if len(redis_version) > 2 else "?",
        "node": node_version.removeprefix("v") or "not installed",
    }


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "never"
        if math.isnan(value):
            return "-"
        return (
            f"{value:,.0f}{unit}"
            if abs(value) >= 100
            else f"{value:.2f}{unit}"
            if abs(value) < 10
            else f"{value:.1f}{unit}"
        )
    return f"{value}{unit}"


def _ratio(ours: Any, base: Any) -> str:
    if not isinstance(ours, int | float) or not isinstance(base, int | float) or not base or math.isinf(base):
        return "-"
    if math.isnan(ours) or math.isnan(base):
        return "-"
    return f"{ours / base:.2f}x"


def table(results: dict[str, dict[str, Any]], size: dict[str, Any], runs: int, bullmq: str | None = None) -> str:
    """One Markdown table: scenario, metric, each stack's figure, ours / each other stack, target.

    ``bullmq`` says why the BullMQ columns are empty, when they are.
    """
    rows: list[Row] = []

    def only_ours(value: Any, unit: str = "") -> list[Cell]:
        return [(value, unit), (None, ""), (None, ""), (None, "")]

    def add(
        scenario: str, metric: str, key: str, unit: str, target: str, *, ratios: bool = True, source: str = ""
    ) -> None:
        """One row: ``key`` of each stack's results of ``source`` (by default, of ``scenario``)."""
        cells = [(results.get((source or scenario) + suffix, {}).get(key), unit) for suffix, _ in STACKS]
        rows.append((scenario, metric, cells, ratios, target))

    n = size["throughput"]
    if "throughput" in results:
        add("throughput", f"{n:,} due at once, 2 workers: emails/s", "emails_s", "", ">= 1.0x BullMQ c5")
        add(
            "cpu",
            f"throughput run: CPU per email, all processes ({n:,} emails)",
            "cpu_ms",
            " ms",
            "",
            source="throughput",
        )
        for group, label in CPU_GROUPS:
            add("cpu", f"share of it: {label}", f"cpu_{group}_pct", " %", "", ratios=False, source="throughput")
    if "enqueue" in results:
        e = size["enqueue"]
        add(
            "enqueue",
            f"{e:,} one at a time, one client: emails/s (BullMQ: no worker, one figure)",
            "enqueue_s",
            "",
            ">= 1.0x raw",
        )
    if "burst" in results:
        b = size["burst"]
        add("burst", f"{b} due at once: last received after (s)", "last_s", " s", "<= 0.5 s")
        for p in ("p50", "p95", "p99", "max"):
            add("burst", f"lateness {p}", f"{p}_ms", " ms", "")
    if "spread" in results:
        sn, secs = size["spread"]
        for p in ("p50", "p95", "p99", "max"):
            add("spread", f"{sn} over {secs:g} s: lateness {p}", f"{p}_ms", " ms", "<= 25 ms" if p == "p99" else "")
    if "backlog" in results:
        count = size["backlog"]
        empty = {
            "emails_s": results.get("throughput", {}).get("emails_s"),
            "last_s": results.get("burst", {}).get("last_s"),
            "spread_p99_ms": results.get("spread", {}).get("p99_ms"),
        }
        small = size["backlog_baseline_n"]
        for key, label, unit in (
            ("emails_s", "throughput emails/s", ""),
            ("last_s", "burst: last received after (s)", " s"),
            ("spread_p99_ms", "spread lateness p99", " ms"),
        ):
            ours = results["backlog"].get(key)
            cells = only_ours(ours, unit)
            cells[1] = (results.get("backlog_base", {}).get(key), unit)
            rows.append(
                (
                    "backlog",
                    f"{count:,} future emails: {label} (baseline: {small} emails)",
                    cells,
                    True,
                    f"within 10% of empty: {_ratio(ours, empty[key])}",
                )
            )
    if "crash" in results:
        for key, label, target in (
            ("sent", "kill -9 mid-run: sent", ""),
            ("uncertain", "uncertain (said so, not re-sent)", ""),
            ("lost", "lost", "0"),
            ("duplicated", "duplicated", "0"),
            ("stuck_jobs", "jobs left 'doing' at the end", "0"),
            ("resume_s", "seconds from the kill to recovery", ""),
        ):
            add("crash", label, key, "", target)
    if "rate" in results:
        r = results["rate"]
        rn, count, secs = size["rate"]
        rows.append(
            (
                "rate",
                f"{rn} due, limit {count}/{secs:g}s: busiest window",
                only_ours(r.get("max_window")),
                False,
                f"<= {count}",
            )
        )
        rows.append(
            ("rate", f"drain time (ideal {_fmt(r.get('ideal_s'))} s)", only_ours(r.get("drain_s"), " s"), False, "")
        )
        rows.append(("rate", "drain time / ideal", only_ours(r.get("drain_vs_ideal")), False, "<= 1.05"))
    if "api" in results:
        a = results["api"]
        if a.get("available"):
            for p in ("p50", "p99"):
                rows.append(
                    (
                        "api",
                        f"POST /api/v1/emails, 20 clients: {p}",
                        only_ours(a.get(f"{p}_ms"), " ms"),
                        False,
                        "<= 50 ms" if p == "p99" else "",
                    )
                )
        else:
            rows.append(
                ("api", "POST /api/v1/emails, 20 clients", only_ours("not available"), False, "after the web issue")
            )
    if "rss" in results:
        m = results["rss"]
        rows.append(
            (
                "rss",
                f"1 worker, {size['rss']:,} emails: RSS after 10%",
                only_ours(m.get("rss_warm_mb"), " MB"),
                False,
                "",
            )
        )
        rows.append(("rss", "RSS at the end", only_ours(m.get("rss_end_mb"), " MB"), False, ""))
        rows.append(("rss", "growth over the run", only_ours(m.get("growth_mb"), " MB"), False, "flat"))
        others = [(results.get("throughput" + suffix, {}).get("rss_mb"), " MB") for suffix, _ in STACKS]
        if any(value is not None for value, _ in others[1:]):
            rows.append(("rss", "a worker's RSS after its throughput run", [(None, ""), *others[1:]], False, ""))
    lines = [
        f"Medians of {runs} run(s), each stack's runs interleaved with the others' "
        "(crash: the worst run; rss: one run over all its emails). "
        "Raw Procrastinate: a bare task sending with smtplib, default settings. "
        "BullMQ c5 / c50: 2 Node processes, each a BullMQ Worker at concurrency 5 or 50 sending with "
        "nodemailer (a new SMTP connection per email), on a Redis of its own. "
        "Ratios are ours / that stack.",
        "",
    ]
    if bullmq:
        lines += [f"BullMQ: {bullmq}.", ""]
    lines += [
        "| scenario | metric | "
        + " | ".join(name for _, name in STACKS)
        + " | ours/raw | ours/c5 | ours/c50 | target |",
        "|---|---|" + "---:|" * (len(STACKS) + 3) + "---|",
    ]
    for scenario, metric, cells, ratios, target in rows:
        shown = [_fmt(value, unit) for value, unit in cells]
        ours = cells[0][0]
        compared = [_ratio(ours, value) if ratios else "-" for value, _ in cells[1:]]
        lines.append(f"| {scenario} | {metric} | " + " | ".join(shown + compared) + f" | {target} |")
    return "\n".join(lines)


def document(
    table_text: str, machine_info: dict[str, str], runs: list[tuple[str, dict[str, Any]]], *, quick: bool
) -> str:
    """The whole of bench/RESULTS.md: machine, table, then the hand-written analysis."""
    notes = pathlib.Path(__file__).with_name("ANALYSIS.md")
    parts = [
        "# Benchmark results",
        "",
        "Generated by `make bench` (`python -m bench" + (" --quick" if quick else "") + "`); do not edit by hand:",
        "the analysis below is kept in bench/ANALYSIS.md.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine_info.items()),
        "",
        "## Results",
        "",
        table_text,
        "",
    ]
    if notes.exists():
        parts += [notes.read_text(encoding="utf-8"), ""]
    parts += ["## Every run", "", "```"]
    for label, result in runs:
        parts.append(f"{label}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in result.items()))
    parts += ["```", ""]
    return "\n".join(parts)
