"""What the operator's surface costs as the tables grow: one /metrics scrape, one ``status``.

    python -m bench.ops_scrape [--sizes 10000,100000] [--runs 5]

Creates a throwaway database next to DATABASE_URL's, fills it with finished emails
(four timeline events each, as a real send leaves), and prints the median of
``--runs`` timings per size. Every number /metrics serves is computed from
PostgreSQL at scrape time, so this is the price of that choice.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import urllib.parse
from collections.abc import Callable

import psycopg

from tasks.core import config, db, migrate
from tasks.ops import overview as ops
from webapp import create_app

FILL = """
INSERT INTO users (email) VALUES ('bench@example.com') ON CONFLICT DO NOTHING;
INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                    message_id, status, attempts, transport, sent_at, data_started_at)
SELECT (SELECT org_id FROM memberships WHERE user_id = 1), 1, 'noreply@example.com', ARRAY['bob@example.com'],
       'bench', 'body', now(), now(),
       '<' || gen_random_uuid() || '@bench>', 'sent', 1, 'primary', now(), now()
  FROM generate_series(1, %(n)s);
INSERT INTO email_events (org_id, email_id, kind, detail)
SELECT e.org_id, e.id, k.kind, CASE k.kind
         WHEN 'claimed' THEN jsonb_build_object('attempt', 1, 'late_ms', (random() * 50)::int)
         ELSE jsonb_build_object('attempt', 1, 'transport', 'primary') END
  FROM emails e CROSS JOIN (VALUES ('scheduled'), ('claimed'), ('data_started'), ('sent')) AS k(kind);
ANALYZE;
"""


def timed(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(url: str, runs: int) -> tuple[float, float]:
    """Return the median milliseconds of one /metrics scrape and of one ``status`` overview."""
    env = {"DATABASE_URL": url, "MAIL_TRANSPORTS": "primary=smtp://127.0.0.1:1"}
    settings = config.load(os.environ | env)
    client = create_app({"ENV": env}).test_client()
    assert client.get("/metrics").status_code == 200
    scrape = timed(lambda: client.get("/metrics"), runs)
    with db.connect(url) as conn:
        overview = timed(lambda: ops.overview(conn, settings), runs)
    return scrape, overview


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parts = urllib.parse.urlsplit(base)
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    name = f"rdbx_bench_ops_{os.getpid()}"
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    print(f"{'emails':>9} {'events':>9} {'/metrics ms':>12} {'status ms':>10}   (median of {args.runs})")
    for size in (int(s) for s in args.sizes.split(",")):
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")  # generated name
            conn.execute(f"CREATE DATABASE {name}")
        try:
            migrate.migrate(url)
            with db.connect(url) as conn:
                conn.execute(FILL.replace("%(n)s", str(size)))  # a number we made
            scrape, overview = measure(url, args.runs)
            print(f"{size:>9} {size * 4:>9} {scrape:>12.1f} {overview:>10.1f}")
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
