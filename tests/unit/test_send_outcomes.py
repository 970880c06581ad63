"""Each outcome of an attempt, written by its one writer (``send.record``): the status, the
event and the job it leaves, exactly once (a second write finds the email no longer the job's)."""

from __future__ import annotations

import asyncio
import datetime as dt
import typing
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.delivery import outcomes, runtime, send
from tasks.domain import emails
from tasks.domain.models import Email, User

SOON = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
#: Each outcome type: an example, the email's status after it, the events it writes,
#: the name the log gives it, and whether its statement ends the running job.
CASES: dict[type, tuple[outcomes.Outcome, str, list[str], str, bool]] = {
    outcomes.Sent: (outcomes.Sent(transport="smtp", reply="250 OK", refused={}), "sent", ["sent"], "sent", True),
    outcomes.Offline: (
        outcomes.Offline(transport="jsonl", reply="logged", refused={}), "offline", ["offline"], "offline", True,
    ),
    outcomes.Failed: (
        outcomes.Failed(transport="smtp", code=550, error="550 no", refused={}), "failed", ["failed"], "failed", True,
    ),
    outcomes.Uncertain: (
        outcomes.Uncertain(transport="smtp", error="lost", refused={}), "uncertain", ["uncertain"], "uncertain", True,
    ),
    outcomes.Retry: (
        outcomes.Retry(transport="smtp", code=451, error="451 later"),
        "scheduled", ["retry_scheduled"], "scheduled", True,
    ),
    outcomes.BreakersOpen: (
        outcomes.BreakersOpen(at=SOON, error="every breaker is open"),
        "scheduled", ["transport_unavailable"], "no_transport", True,
    ),
    outcomes.RateLimited: (
        outcomes.RateLimited(transport="smtp", at=SOON, slot=SOON, rate_transport=None, limit="user: 1/60s"),
        "scheduled", ["rate_limited"], "rate_limited", True,
    ),
    outcomes.LimiterDown: (
        outcomes.LimiterDown(transport="smtp", at=SOON, error="rate limiter unavailable: refused"),
        "scheduled", ["limiter_unavailable"], "limiter_unavailable", True,
    ),
    outcomes.Held: (
        outcomes.Held(transport="smtp", at=SOON, kind="org_suspended", reason="organization suspended: unpaid"),
        "scheduled", ["org_suspended"], "org_suspended", True,
    ),
    outcomes.Aborted: (outcomes.Aborted(transport="smtp", error="changed"), "sending", [], "aborted", False),
}  # fmt: skip
FINAL = (outcomes.Sent, outcomes.Offline, outcomes.Failed, outcomes.Uncertain)


def test_every_outcome_type_has_its_case() -> None:
    assert set(CASES) == set(typing.get_args(outcomes.Outcome))


async def _record_twice(database_url: str, settings: Settings, email: Email, outcome: outcomes.Outcome) -> list[Any]:
    pool = db.async_pool(database_url, size=1)  # the group commits' (final outcomes)
    await pool.open(wait=True)
    rt = runtime.Runtime.create(settings, pool, worker_name="test")
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            assert email.job_id is not None
            return [await send.record(rt, conn, email, email.job_id, outcome) for _ in range(2)]
    finally:
        await rt.close()
        await pool.close()


@pytest.mark.parametrize("kind", list(CASES), ids=lambda k: k.__name__)
def test_each_outcome_is_written_once_with_its_status_and_event(
    kind: type,
    conn: Conn,
    database_url: str,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
) -> None:
    outcome, status, events, name, ends_job = CASES[kind]
    email, _ = emails.schedule(conn, owner=owner, draft=make_draft(), settings=settings)
    row = db.one(conn, "claim_email", email_id=email.id, job_id=email.job_id, worker="test")
    assert row is not None
    claimed = Email.from_row(row)
    conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (email.job_id,))
    if isinstance(outcome, FINAL):  # DATA began (as it has before any of these)
        db.one(
            conn,
            "start_data_many",
            ids=[email.id],
            job_ids=[email.job_id],
            transports=["smtp"],
            refused=[Jsonb({})],
            from_addrs=[email.from_addr],
            reply_tos=[email.reply_to],
        )

    first, second = asyncio.run(_record_twice(database_url, settings, claimed, outcome))

    after = conn.execute("SELECT status, job_id FROM emails WHERE id = %s", (email.id,)).fetchone()
    written = [
        r["kind"]
        for r in conn.execute(
            "SELECT kind FROM email_events WHERE email_id = %s AND kind NOT IN ('scheduled', 'claimed') ORDER BY id",
            (email.id,),
        )
    ]
    job_left = conn.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s", (email.job_id,)).fetchone()
    assert after is not None and after["status"] == status
    assert (first.name, first.ended_job) == (name, ends_job)
    assert (job_left is None) == ends_job  # the outcome's statement ended the running job itself
    if isinstance(outcome, FINAL):
        # Written once; the second arrives late, and is kept on the timeline as such.
        assert written == [*events, "late_outcome"]
        assert first.status == status and first.waiting_reason is None
    elif status == "scheduled":
        # Waiting again with a new job; the second write found the email moved and wrote nothing.
        assert written == events and second == outcomes.MOVED
        assert first.status == "scheduled" and first.waiting_reason and first.next_attempt_at
        assert after["job_id"] not in (None, email.job_id)
    else:
        assert written == [] and first.status is None and second.name == "aborted"
