"""What row-level security costs the web: ``POST /api/v1/emails`` under 20 clients, and the
dashboard's list of an organization holding 100,000 emails, with the policies on and off.

    .venv/bin/python -m bench.rls_cost [--clients 20] [--requests 50] [--runs 3] [--emails 100000] [--pages 100]

One gunicorn, one scratch database. The runs alternate: policies on (as deployed), then
off (``ALTER TABLE ... DISABLE ROW LEVEL SECURITY`` on every tenant table, by the owner
role), so both see the same machine at nearly the same moment. Off, the web role still
sets and resets its organization on each request: what is measured is the policies
themselves (the extra ``org_id = current_org_id()`` each statement carries). The list's
two parts (the page of items, the counts per tab) are also timed alone, in SQL, as the web
role: the same comparison without HTTP's noise. Prints the medians of the runs' p50/p99.
"""

from __future__ import annotations

import argparse
import re
import time

import requests

from bench.api_latency import one_run
from bench.web_support import api_token, bench_env, gunicorn, median, pct, scratch_database, table
from tasks.core import db

TENANT_TABLES = (
    "emails",
    "email_events",
    "batches",
    "api_tokens",
    "chart_owner_minutes",
    "invitations",
    "memberships",
    "organizations",
)
USER = "bench@example.com"
FILL = """
INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                    message_id, status, sent_at, data_started_at)
SELECT m.org_id, m.user_id, 'noreply@example.com', ARRAY['r' || n || '@example.com'], 'Newsletter ' || n, 'b',
       now() - n * interval '1 minute', now() - n * interval '1 minute', '<fill-' || n || '@bench>',
       CASE WHEN n %% 10 = 0 THEN 'scheduled' ELSE 'sent' END,
       CASE WHEN n %% 10 = 0 THEN NULL ELSE now() END, CASE WHEN n %% 10 = 0 THEN NULL ELSE now() END
  FROM memberships m JOIN users u ON u.id = m.user_id, generate_series(1, %(n)s) AS n
 WHERE u.email = %(email)s
"""


def policies(database_url: str, on: bool) -> None:
    with db.connect(database_url) as conn:
        for name in TENANT_TABLES:
            action = "ENABLE" if on else "DISABLE"
            conn.execute(f"ALTER TABLE {name} {action} ROW LEVEL SECURITY")  # our table names


def signed_in(url: str) -> requests.Session:
    """A browser session through the dev login, as the benchmark's user."""
    session = requests.Session()
    page = session.get(f"{url}/auth/login", timeout=10).text
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert token, "no CSRF token on the sign-in page"
    answer = session.post(f"{url}/auth/dev", data={"csrf_token": token[1], "email": USER}, timeout=10)
    assert answer.ok, answer.status_code
    return session


def list_pages(session: requests.Session, url: str, pages: int) -> list[float]:
    out = []
    for i in range(pages):
        view = ("all", "sent", "scheduled")[i % 3]
        t0 = time.perf_counter()
        response = session.get(f"{url}/?view={view}", timeout=30)
        out.append(time.perf_counter() - t0)
        assert response.ok and "data-email-id" in response.text, response.status_code
    return out


def statements(database_url: str, repeat: int) -> dict[str, list[float]]:
    """The dashboard list's statements alone, as the web role in the organization: seconds each."""
    from tasks.domain import listing
    from tasks.domain.models import in_org

    out: dict[str, list[float]] = {}
    with db.connect(database_url) as conn:
        row = conn.execute(
            "SELECT m.org_id, m.user_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = %s",
            (USER,),
        ).fetchone()
        assert row is not None
        scope = in_org(row["org_id"], row["user_id"])
        conn.execute("SET ROLE reach_web")
        db.run(conn, "set_org", org_id=str(row["org_id"]))
        for _ in range(repeat):
            for name, call in (
                ("sql_list", lambda: listing.items_page(conn, scope, view="all", cursor=None, limit=25)),
                ("sql_counts", lambda: listing.counts(conn, scope)),
            ):
                t0 = time.perf_counter()
                call()
                out.setdefault(name, []).append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="API requests per client per run")
    parser.add_argument("--runs", type=int, default=3, help="runs with the policies on, and as many off")
    parser.add_argument("--emails", type=int, default=100_000, help="emails in the organization for the list")
    parser.add_argument("--pages", type=int, default=100, help="dashboard lists read per run")
    args = parser.parse_args()
    with scratch_database() as database_url:
        token = api_token(database_url, USER)
        with db.connect(database_url) as conn:
            conn.execute(FILL, {"n": args.emails, "email": USER})
            conn.execute("ANALYZE")
        with gunicorn(bench_env(database_url)) as url:
            session = signed_in(url)
            one_run(url, token, args.clients, 5)  # warm up pools and connections
            list_pages(session, url, 10)
            results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
            for _ in range(args.runs):
                for on in (True, False):
                    policies(database_url, on)
                    latencies, _elapsed = one_run(url, token, args.clients, args.requests)
                    results.setdefault(("api", on), []).append((pct(latencies, 0.5), pct(latencies, 0.99)))
                    pages = list_pages(session, url, args.pages)
                    results.setdefault(("list", on), []).append((pct(pages, 0.5), pct(pages, 0.99)))
                    for name, times in statements(database_url, args.pages).items():
                        results.setdefault((name, on), []).append((pct(times, 0.5), pct(times, 0.99)))
            policies(database_url, True)
    rows: list[list[object]] = []
    for what, label in (
        ("api", f"POST /api/v1/emails, {args.clients} clients"),
        ("list", f"GET / ({args.emails:,} emails)"),
        ("sql_list", "  its list (items_page), in SQL"),
        ("sql_counts", "  its counts per tab, in SQL"),
    ):
        for on in (False, True):
            runs = results[(what, on)]
            p50 = median(r[0] for r in runs) * 1000
            p99 = median(r[1] for r in runs) * 1000
            rows.append([label, "on" if on else "off", f"{p50:.1f}", f"{p99:.1f}"])
    print(table(f"Row-level security, median of {args.runs} runs each (ms)", ["what", "RLS", "p50", "p99"], rows))


if __name__ == "__main__":
    main()
