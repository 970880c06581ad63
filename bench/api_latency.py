"""Latency of ``POST /api/v1/emails`` under 20 concurrent clients, against gunicorn.

    .venv/bin/python -m bench.api_latency [--clients 20] [--requests 50] [--runs 5]

Each client is a thread with its own keep-alive connection and a personal access
token, scheduling emails 5 minutes ahead (so each request also defers a queue job).
Prints p50/p99 per run and the medians over runs. Needs PostgreSQL and Redis
(DATABASE_URL / REDIS_URL); the machine is shared, so expect noise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import time
import uuid

import requests

from bench.web_support import api_token, bench_env, gunicorn, median, pct, scratch_database, table


def one_run(url: str, token: str, clients: int, per_client: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        mine = []
        start_gate.wait()
        for _ in range(per_client):
            body = {
                "to": ["someone@example.com"],
                "subject": "Bench",
                "body_text": "Hello",
                "send_at": (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat(),
            }
            t0 = time.perf_counter()
            response = session.post(
                f"{url}/api/v1/emails", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=30
            )
            mine.append(time.perf_counter() - t0)
            if response.status_code != 201:
                raise SystemExit(f"unexpected {response.status_code}: {response.text[:200]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="requests per client per run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with scratch_database() as database_url:
        token = api_token(database_url)
        with gunicorn(bench_env(database_url)) as url:
            one_run(url, token, args.clients, 5)  # warm up pools and connections
            rows, p50s, p99s, rates = [], [], [], []
            for n in range(1, args.runs + 1):
                latencies, elapsed = one_run(url, token, args.clients, args.requests)
                p50, p99 = pct(latencies, 0.50) * 1000, pct(latencies, 0.99) * 1000
                rate = len(latencies) / elapsed
                p50s.append(p50)
                p99s.append(p99)
                rates.append(rate)
                rows.append([n, len(latencies), f"{p50:.1f}", f"{p99:.1f}", f"{rate:.0f}"])
            rows.append(["median", "", f"{median(p50s):.1f}", f"{median(p99s):.1f}", f"{median(rates):.0f}"])
    print(
        table(
            f"POST /api/v1/emails, {args.clients} concurrent clients, gunicorn.conf.py defaults",
            ["run", "requests", "p50 ms", "p99 ms", "req/s"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
