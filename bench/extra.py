"""Scenarios beyond timing: a crash, a rate limit, the web API, memory."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime as dt
import http.client
import json
import math
import os
import subprocess
import time
from typing import Any

from bench import ours as ours_module
from bench import rig
from bench.ours import Ours
from tasks.core import db


def _counts(database_url: str) -> dict[str, int]:
    with db.connect(database_url) as conn:
        rows = conn.execute(rig.queries["bench_status_counts"], {"pattern": "bench"}).fetchall()
    return {r["status"]: r["n"] for r in rows}


def crash(ours: Ours, *, n: int, env: dict[str, str] | None = None, lead: float = 2.0) -> dict[str, Any]:
    """kill -9 one of two workers a quarter through; a new one starts (as a supervisor would)."""
    with ours.deployment(env=env) as d:
        first, _ = d.start_workers(2)
        t0, times = ours_module.at_once(n, lead=lead + n / 4000)
        d.schedule(times)
        d.sink.wait_for(n // 4, timeout=120)
        first.kill()
        killed = time.time()
        d.start_workers(1)
        stalled_after = d.settings.worker_stalled_after
        rig.wait_until(
            lambda: set(_counts(d.database_url)) <= {"sent", "uncertain"},
            timeout=60 + stalled_after * 3 + n / 50,
            interval=0.2,
            what="every email to end sent or uncertain",
        )
        time.sleep(0.1)
        counts = _counts(d.database_url)
        received = collections.Counter(mid for _, mid in d.sink.received())
        due = d.send_times()
        lost = sum(1 for mid, (_, status) in due.items() if status == "sent" and received[mid] == 0)
        with db.connect(d.database_url) as conn:
            row = conn.execute(rig.queries["first_recovery"]).fetchone()
            stuck = conn.execute(rig.queries["doing_jobs"]).fetchone()
        resumed = row["at"].timestamp() - killed if row and row["at"] else float("nan")
        return {
            "sent": counts.get("sent", 0),
            "uncertain": counts.get("uncertain", 0),
            "lost": lost + n - sum(counts.values()),
            "duplicated": sum(1 for c in received.values() if c > 1),
            "stuck_jobs": stuck["n"] if stuck else 0,
            "resume_s": resumed,
        }


def max_rate(ours: Ours, *, n: int, count: int, seconds: float, workers: int = 2, lead: float = 3.0) -> dict[str, Any]:
    """``n`` emails due at once under ``count/seconds``: busiest window and drain time vs the ideal."""
    env = {"RATE_LIMITS": f"bench={count}/{seconds:g}s"}
    with ours.deployment(env=env) as d:
        d.start_workers(workers)
        t0, times = ours_module.at_once(n, lead=lead)
        d.schedule(times)
        last = d.sink.wait_for(n, timeout=60 + n / count * seconds * 1.5)
        arrivals = [at for at, _ in d.sink.received()]
        ideal = (math.ceil(n / count) - 1) * seconds
        drain = last - t0.timestamp()
        return {
            "max_window": rig.max_in_window(arrivals, seconds),
            "limit": count,
            "drain_s": drain,
            "ideal_s": ideal,
            "drain_vs_ideal": drain / ideal if ideal else float("nan"),
        }


def memory(ours: Ours, *, n: int, lead: float = 2.0) -> dict[str, Any]:
    """One worker sends ``n`` emails; its RSS after a tenth of them and at the end."""
    with ours.deployment() as d:
        [worker] = d.start_workers(1)
        _, times = ours_module.at_once(n, lead=lead + n / 4000)
        d.schedule(times)
        samples: list[tuple[int, float]] = []
        deadline = time.monotonic() + 120 + n / 50
        while time.monotonic() < deadline:
            sent = d.sink.count()
            samples.append((sent, rig.rss_mb(worker.pid)))
            if sent >= n:
                break
            time.sleep(0.5)
        warm = next(rss for sent, rss in samples if sent >= n / 10)
        end = samples[-1][1]
        return {
            "rss_warm_mb": warm,
            "rss_end_mb": end,
            "growth_mb": end - warm,
            "rss_peak_mb": max(r for _, r in samples),
        }


def api(ours: Ours, *, requests: int, clients: int = 20) -> dict[str, Any]:
    """POST /api/v1/emails from ``clients`` concurrent clients: latency p50/p99.

    "Not available" until the web issue's API is there (an unauthenticated POST
    answers 404 rather than 401).
    """
    with ours.deployment() as d:
        port = rig.free_port()
        web = rig.Proc(
            [rig.PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()"],
            d.env | {"WEB_BIND": f"127.0.0.1:{port}", "SECRET_KEY": "bench-" + "x" * 40},
            d.logs / "web.log",
        )
        try:
            rig.wait_until(lambda: _answers(port), timeout=30, what="the web app")
            token = _token(d) if _status(port, "POST", "/api/v1/emails") != 404 else None
            if token is None:
                return {"available": False}
            latencies = _post_many(port, token, requests, clients)
        finally:
            web.stop()
        return {"available": True, **rig.lateness_stats(latencies)}


def _token(d: ours_module.Deployment) -> str | None:
    result = subprocess.run(
        [rig.PYTHON, "-m", "tasks", "token", "create", "--user", "bench@example.com"],
        env=d.env,
        cwd=rig.ROOT,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip().split()[-1] if result.returncode == 0 and result.stdout.strip() else None


def _status(port: int, method: str, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=b"{}", headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError):
        return _status(port, "GET", "/healthz") == 200
    return False


def _post_many(port: int, token: str, requests: int, clients: int) -> list[float]:
    body = {
        "to": ["rcpt@example.com"],
        "subject": "bench api",
        "body_text": "A benchmark email.",
        "send_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
    }

    def client(k: int) -> list[float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        out = []
        for i in range(requests // clients):
            started = time.perf_counter()
            conn.request(
                "POST",
                "/api/v1/emails",
                body=json.dumps(body),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"bench-{os.getpid()}-{k}-{i}",
                },
            )
            response = conn.getresponse()
            response.read()
            if response.status >= 300:
                raise RuntimeError(f"POST /api/v1/emails answered {response.status}")
            out.append(time.perf_counter() - started)
        return out

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return [x for chunk in pool.map(client, range(clients)) for x in chunk]
