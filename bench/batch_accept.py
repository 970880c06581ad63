"""How long ``POST /api/v1/batches`` takes to accept 10,000 recipients, against gunicorn.

    .venv/bin/python -m bench.batch_accept [--rows 10000] [--runs 5]

The request is a 10,000-line CSV with a placeholder in subject and body. Two
shapes: every email due at once (10,000 queue jobs deferred in the transaction),
and one a second (only those inside the 10-minute horizon get a job now).
Prints each run's wall time (client side, the whole HTTP request) and the median.
"""

from __future__ import annotations

import argparse
import io
import time
from typing import Any

import requests

from bench.web_support import api_token, bench_env, gunicorn, median, scratch_database, table


def csv_text(rows: int) -> str:
    out = io.StringIO()
    out.write("email,first_name\n")
    for i in range(rows):
        out.write(f"person{i}@example.com,Name{i}\n")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    text = csv_text(args.rows)
    results: dict[str, list[float]] = {"all due now": [], "1 s apart": []}
    with scratch_database() as database_url:
        token = api_token(database_url)
        with gunicorn(bench_env(database_url)) as url:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
            for _ in range(args.runs):
                for shape, delay in (("all due now", 0), ("1 s apart", 1)):
                    body: dict[str, Any] = {
                        "csv": text,
                        "subject": "Hello {{first_name}}",
                        "body_text": "Dear {{first_name}},\nthis is a benchmark.",
                        "min_delay_seconds": delay,
                    }
                    t0 = time.perf_counter()
                    response = session.post(f"{url}/api/v1/batches", json=body, timeout=120)
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 201 or response.json()["accepted"] != args.rows:
                        raise SystemExit(f"unexpected {response.status_code}: {response.text[:300]}")
                    session.post(f"{url}/api/v1/batches/{response.json()['batch']['id']}/cancel", timeout=300)
                    results[shape].append(elapsed)
    rows: list[list[object]] = [
        [shape, *[f"{t:.2f}" for t in times], f"{median(times):.2f}"] for shape, times in results.items()
    ]
    print(
        table(
            f"POST /api/v1/batches with {args.rows} recipients (seconds, whole HTTP request)",
            ["shape", *[f"run {i + 1}" for i in range(args.runs)], "median"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
