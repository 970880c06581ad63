"""The benchmark's one table, the machine it ran on, and bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import math
import os
import pathlib
import platform
import subprocess
from typing import Any

import psycopg

from bench import rig

SCENARIOS = ("throughput", "burst", "spread", "backlog", "crash", "rate", "api", "rss")


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
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{int(mem) // 1024} MB",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "postgresql": row[0] if row else "?",
        "redis": redis_version[2].removeprefix("v=") if len(redis_version) > 2 else "?",
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


def table(results: dict[str, dict[str, Any]], size: dict[str, Any], runs: int) -> str:
    """One Markdown table: scenario, metric, ours, baseline, ratio (ours / baseline), target."""
    rows: list[tuple[str, str, Any, Any, str]] = []

    def add(scenario: str, metric: str, key: str, unit: str, target: str, base_key: str | None = None) -> None:
        ours = results.get(scenario, {}).get(key)
        base = results.get(f"{scenario}_base", {}).get(base_key or key)
        rows.append((scenario, metric, (ours, unit), (base, unit), target))

    n = size["throughput"]
    if "throughput" in results:
        add("throughput", f"{n:,} due at once, 2 workers: emails/s", "emails_s", "", ">= 700")
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
            vs_empty = _ratio(ours, empty[key])
            rows.append(
                (
                    "backlog",
                    f"{count:,} future emails: {label} (baseline: {small} emails)",
                    (ours, unit),
                    (results.get("backlog_base", {}).get(key), unit),
                    f"within 10% of empty: {vs_empty}",
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
                (r.get("max_window"), ""),
                (None, ""),
                f"<= {count}",
            )
        )
        rows.append(
            ("rate", f"drain time (ideal {_fmt(r.get('ideal_s'))} s)", (r.get("drain_s"), " s"), (None, ""), "")
        )
        rows.append(("rate", "drain time / ideal", (r.get("drain_vs_ideal"), ""), (None, ""), "<= 1.05"))
    if "api" in results:
        a = results["api"]
        if a.get("available"):
            for p in ("p50", "p99"):
                rows.append(("api", f"POST /api/v1/emails, 20 clients: {p}", (a.get(f"{p}_ms"), " ms"), (None, ""), ""))
        else:
            rows.append(
                ("api", "POST /api/v1/emails, 20 clients", ("not available", ""), (None, ""), "after the web issue")
            )
    if "rss" in results:
        m = results["rss"]
        rows.append(
            ("rss", f"1 worker, {size['rss']:,} emails: RSS after 10%", (m.get("rss_warm_mb"), " MB"), (None, ""), "")
        )
        rows.append(("rss", "RSS at the end", (m.get("rss_end_mb"), " MB"), (None, ""), ""))
        rows.append(("rss", "growth over the run", (m.get("growth_mb"), " MB"), (None, ""), "flat"))
        base_rss = results.get("throughput_base", {}).get("rss_mb")
        if base_rss is not None:
            rows.append(("rss", "baseline worker RSS after its throughput run", (None, ""), (base_rss, " MB"), ""))
    lines = [
        f"Medians of {runs} run(s) (crash: the worst run; rss: one run over all its emails). "
        "Ratio = ours / baseline (raw Procrastinate, smtplib, default settings).",
        "",
        "| scenario | metric | ours | baseline | ratio | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for scenario, metric, (ours, unit), (base, bunit), target in rows:
        lines.append(
            f"| {scenario} | {metric} | {_fmt(ours, unit)} | {_fmt(base, bunit)} | {_ratio(ours, base)} | {target} |"
        )
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
