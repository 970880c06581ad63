"""Bulk actions on 10,000 emails: confirm, then the job's work to done, then undo; median of runs.

    .venv/bin/python -m bench.bulk [--emails 10000] [--runs 3] [--background 100000]

A private scratch database holds ``--background`` other emails of the organization (sent, as
most are) and, for each run of each action, ``--emails`` new scheduled emails due in five
minutes, each with its send job (deferred as the API's schedule defers one: within the
horizon), and a subject of their own that the action's search matches. Each run times
``bulk.confirm`` (the count typed, the snapshot, the audit line and the job, one transaction),
then ``bulk.run``: what the worker's job (tasks/queue/bulk.py) runs, here in this process, so
without the worker's pick-up (a NOTIFY: milliseconds); then ``bulk.undo``. A reschedule
shifts by +1h, so every email also gets a new job. The table shows the median of ``--runs``
runs of each step, in seconds, and the emails per second from confirm to done.
"""

from __future__ import annotations

import argparse
import time

from bench.web_support import median, scratch_database, table
from tasks.core import config, db
from tasks.domain import bulk, emails, orgs
from tasks.domain.models import Scope, in_org
from tasks.queue import jobs

USER = "bench@example.com"

FILL = """
INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at, message_id,
                    status, sent_at, data_started_at)
SELECT %(org_id)s, %(owner_id)s, 'Acme <news@acme.example>', ARRAY['user' || n || '@example.com'],
       %(subject)s || ' ' || n, 'b', %(at)s, %(at)s, '<' || %(subject)s || '-' || n || '@bench>',
       %(status)s, CASE WHEN %(status)s = 'sent' THEN now() END, CASE WHEN %(status)s = 'sent' THEN now() END
  FROM generate_series(1, %(n)s) n
RETURNING id, send_at
"""


def fill(conn: db.Conn, scope: Scope, subject: str, n: int, *, status: str = "scheduled") -> None:
    """``n`` emails; scheduled ones due in five minutes with their send jobs, as schedule() leaves them."""
    at = conn.execute("SELECT now() + interval '5 minutes' AS at").fetchone()
    assert at is not None
    with conn.transaction():
        rows = conn.execute(
            FILL,
            {
                "org_id": scope.org_id,
                "owner_id": scope.user_id,
                "subject": subject,
                "at": at["at"],
                "n": n,
                "status": status,
            },
        ).fetchall()
        if status == "scheduled":
            ids = jobs.defer_sends(conn, [(r["id"], r["send_at"]) for r in rows])
            conn.execute(
                "UPDATE emails e SET job_id = t.job FROM unnest(%s::uuid[], %s::bigint[]) t(id, job) WHERE e.id = t.id",
                ([r["id"] for r in rows], ids),
            )


def one_run(conn: db.Conn, scope: Scope, settings: config.Settings, action: str, n: int, k: int) -> list[float]:
    """(confirm, run, undo) in seconds, on ``n`` new emails."""
    subject = f"bench{action}{k}"
    fill(conn, scope, subject, n)
    conn.execute("ANALYZE emails")
    params = bulk.parse_params(action, {"shift": "+1h"} if action == "reschedule" else {})
    selection = bulk.Selection(q=f"subject:{subject}", view="scheduled")
    t0 = time.perf_counter()
    bulk_id = bulk.confirm(conn, scope, selection, action, params, confirm_count=str(n))
    t1 = time.perf_counter()
    done = bulk.run(conn, bulk_id, settings)
    t2 = time.perf_counter()
    assert done is not None and done["applied"] == n, done
    undone = bulk.undo(conn, scope, bulk_id, settings=settings)
    t3 = time.perf_counter()
    assert undone.restored == n, undone
    return [t1 - t0, t2 - t1, t3 - t2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=10_000, help="emails each bulk action acts on")
    parser.add_argument("--background", type=int, default=100_000, help="other (sent) emails of the organization")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: list[list[object]] = []
    with scratch_database() as database_url:
        settings = config.load({"DATABASE_URL": database_url, "MAIL_DOMAIN": "bench.localhost"})
        # The undo window is a constant: long enough here for the undo that follows a 10,000-email run.
        bulk.UNDO_WINDOW = bulk.UNDO_WINDOW * 30
        with db.connect(database_url) as conn:
            user = emails.ensure_user(conn, email=USER, name="Bench")
            scope = in_org(orgs.personal_org_id(conn, user.id), user.id)
            fill(conn, scope, "background", args.background, status="sent")
            for action in ("cancel", "reschedule"):
                runs = [one_run(conn, scope, settings, action, args.emails, k) for k in range(args.runs)]
                confirm, run, undo = (median(r[i] for r in runs) for i in range(3))
                total = confirm + run
                rows.append(
                    [action, f"{args.emails:,}", f"{confirm:.2f}", f"{run:.2f}", f"{total:.2f}",
                     f"{args.emails / total:,.0f}", f"{undo:.2f}"]
                )  # fmt: skip
    title = f"Bulk actions on {args.emails:,} emails (+{args.background:,} others), median of {args.runs} runs (s)"
    print(table(title, ["action", "emails", "confirm", "job", "confirm→done", "emails/s", "undo"], rows))


if __name__ == "__main__":
    main()
