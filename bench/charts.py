"""What the charts cost at a million events: the JSON endpoints and the rollup that feeds them.

    python -m bench.charts [--events 1000000] [--runs 15] [--explain]

Creates a throwaway database next to DATABASE_URL's and fills it with finished
emails spread over the last 24 hours (four timeline events each, as a real send
leaves, a few failed, retried or rate-limited), for 100 users, plus 50,000 emails
scheduled for later. Then prints the median and the fastest of ``--runs`` timings of:

- ``/operators/charts.json`` (1h and 24h), ``/charts/mine.json`` and
  ``/charts/lateness.json`` (1h and 24h; the busiest user), through the Flask app
  as a signed-in operator, with the rollup current;
- the same with the rollup never run: everything aggregated from email_events
  (what the rollup saves);
- the 1h chart when the current minute holds a peak minute's events (the
  benchmark's throughput, ~480 emails/s, is ~115,000 events a minute), which are
  read from email_events until the next run;
- one rollup run: the first (a catch-up of the 8 days it keeps) and a steady one;
  and its sent-lateness statement alone (``chart_rollup_lateness``, rolled back)
  over a steady run's three minutes and over the peak minute.

``--explain`` also prints EXPLAIN ANALYZE of the 24-hour read (docs/operators-charts.md).
Not a timed test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tasks.core import db, migrate
from tasks.ops import charts
from webapp import create_app

USERS = 100
FILL = """
INSERT INTO users (email) SELECT 'bench' || i || '@example.com' FROM generate_series(1, %(users)s) i;
UPDATE users SET email = 'ops@example.com' WHERE id = 1;
-- The finished emails, each sent at a random time of the last 24 hours; user 1 is the busiest.
INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                    message_id, status, attempts, transport, sent_at, data_started_at)
SELECT m.org_id, s.owner, 'noreply@example.com',
       ARRAY['bob@example.com'], 'bench', 'body', t, t, '<' || gen_random_uuid() || '@bench>',
       'sent', 1, CASE WHEN i % 3 = 0 THEN 'backup' ELSE 'primary' END, t, t
  FROM (SELECT i, CASE WHEN i % 10 = 0 THEN 1 ELSE 2 + i % (%(users)s - 1) END AS owner,
               now() - random() * interval '24 hours' AS t FROM generate_series(1, %(emails)s) i) s
  JOIN memberships m ON m.user_id = s.owner;
INSERT INTO email_events (org_id, email_id, kind, at, detail)
SELECT e.org_id, e.id,
       CASE WHEN k.kind = 'sent' AND random() < 0.02 THEN 'failed'
            WHEN k.kind = 'scheduled' AND random() < 0.05 THEN 'rate_limited'
            WHEN k.kind = 'data_started' AND random() < 0.03 THEN 'retry_scheduled'
            ELSE k.kind END,
       e.sent_at + k.offset_ms * interval '1 millisecond',
       CASE k.kind WHEN 'claimed' THEN jsonb_build_object('attempt', 1, 'late_ms', (random() * random() * 200)::int)
                   ELSE jsonb_build_object('attempt', 1, 'transport', e.transport) END
  FROM emails e
 CROSS JOIN (VALUES ('scheduled', -60000), ('claimed', -20), ('data_started', -10), ('sent', 0)) AS k(kind, offset_ms);
-- Emails scheduled for later: the depth sampler reads them.
INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at, message_id)
SELECT (SELECT org_id FROM memberships WHERE user_id = 2), 2, 'noreply@example.com', ARRAY['bob@example.com'],
       'later', 'body', t, t, '<' || gen_random_uuid() || '@bench>'
  FROM (SELECT now() + random() * interval '30 days' AS t FROM generate_series(1, 50000)) s;
ANALYZE;
"""
#: One peak minute's events, all in the current minute (not yet rolled up).
PEAK = """
INSERT INTO email_events (org_id, email_id, kind, at, detail)
SELECT e.org_id, e.id, k.kind, now() - random() * (now() - date_trunc('minute', now())),
       jsonb_build_object('attempt', 1, 'late_ms', (random() * 50)::int, 'transport', 'primary')
  FROM (SELECT id, org_id FROM emails WHERE status = 'sent' LIMIT %(n)s) e
 CROSS JOIN (VALUES ('claimed'), ('data_started'), ('sent'), ('scheduled')) AS k(kind);
"""


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Return the median and the fastest milliseconds of ``runs`` calls (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples)


def rollup(url: str) -> None:
    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            await charts.rollup(conn)

    asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parts = urllib.parse.urlsplit(base)
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    name = f"rdbx_bench_charts_{os.getpid()}"
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        migrate.migrate(url)
        started = time.perf_counter()
        with db.connect(url) as conn:
            fill = FILL.replace("%(users)s", str(USERS)).replace("%(emails)s", str(args.events // 4))
            conn.execute(fill)
            events = conn.execute("SELECT count(*) AS n FROM email_events").fetchone()["n"]
        print(f"filled {events:,} events in {time.perf_counter() - started:.0f} s")
        print(f"{'ms (median and fastest of ' + str(args.runs) + ' runs)':<66}  {'median':>9}  {'fastest':>9}")

        env = {
            "DATABASE_URL": url,
            "OPERATOR_EMAILS": "ops@example.com",
            "MAIL_TRANSPORTS": "primary=smtp://127.0.0.1:1",
        }
        client = create_app({"ENV": env, "TESTING": True}).test_client()
        with client.session_transaction() as session:
            session["user_id"], session["session_version"] = 1, 1

        def get(path: str) -> Callable[[], Any]:
            def call() -> None:
                response = client.get(path)
                assert response.status_code == 200, response.data[:300]

            return call

        reads = {
            "/operators/charts.json?range=1h": get("/operators/charts.json?range=1h"),
            "/operators/charts.json?range=24h": get("/operators/charts.json?range=24h"),
            "/charts/mine.json (busiest user)": get("/charts/mine.json?tz=Europe/Paris"),
            "/charts/lateness.json?range=1h&mine=1 (busiest user)": get("/charts/lateness.json?range=1h&mine=1"),
            "/charts/lateness.json?range=24h (busiest user's org)": get("/charts/lateness.json?range=24h"),
        }

        def lateness_rollup(conn: db.Conn, start: dt.datetime, end: dt.datetime) -> Callable[[], Any]:
            """The rollup's sent-lateness statement over [start, end), rolled back (a run recounts)."""

            def call() -> None:
                with conn.transaction(force_rollback=True):
                    db.run(conn, "chart_rollup_clear", start=start, end=end)
                    db.run(conn, "chart_rollup_lateness", start=start, end=end)

            return call

        def report(label: str, ms: tuple[float, float]) -> None:
            print(f"{label:<66}  {ms[0]:>9.1f}  {ms[1]:>9.1f}", flush=True)

        for label, fn in reads.items():
            report(f"{label}, rollup never run", timed(fn, max(args.runs // 2, 1)))
        started = time.perf_counter()
        rollup(url)
        once = (time.perf_counter() - started) * 1000
        report("rollup: first run (catch-up of 8 days), one run", (once, once))
        report("rollup: a steady run (last minutes + depth sample)", timed(lambda: rollup(url), args.runs))
        for label, fn in reads.items():
            report(f"{label}, rollup current", timed(fn, args.runs))
        with db.connect(url) as conn:
            report("depth sample alone", timed(lambda: db.one(conn, "queue_depth_sample"), args.runs))
            now_minute = db.one(conn, "chart_rollup_state")["now_minute"]
            steady = lateness_rollup(conn, now_minute - charts.OVERLAP - dt.timedelta(minutes=1), now_minute)
            report("rollup's sent lateness alone, a steady run's 3 minutes", timed(steady, args.runs))
            if args.explain:
                state = db.one(conn, "chart_rollup_state")
                assert state is not None
                rolled_until = state["rolled_until"]
                params = {
                    "start": state["now_minute"] - dt.timedelta(hours=24) + dt.timedelta(minutes=1),
                    "last": state["now_minute"],
                    "rolled_until": rolled_until,
                    "latest": rolled_until,
                    "kinds": list(charts.KINDS),
                    "retried": list(charts.RETRIED),
                }
                explain = "EXPLAIN (ANALYZE, COSTS OFF, BUFFERS) " + db.queries["chart_series"]
                plan = conn.execute(explain, params).fetchall()
                print("\n".join(r["QUERY PLAN"] for r in plan))
            conn.execute(PEAK.replace("%(n)s", str(115_000 // 4)))
            conn.execute("ANALYZE email_events")
            peak_minute = db.one(conn, "chart_rollup_state")["now_minute"]
            peak = lateness_rollup(conn, peak_minute, peak_minute + dt.timedelta(minutes=1))
            report("rollup's sent lateness alone, the peak minute", timed(peak, args.runs))
        for label in (
            "/operators/charts.json?range=1h",
            "/charts/mine.json (busiest user)",
            "/charts/lateness.json?range=1h&mine=1 (busiest user)",
        ):
            report(f"{label}, a peak minute not yet rolled up", timed(reads[label], args.runs))
    finally:
        with psycopg.connect(admin, autocommit=True) as server:
            server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
