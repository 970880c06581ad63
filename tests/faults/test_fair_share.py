"""10,000 emails due in the same second under a provider limit (scenario 9)."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import pytest

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import batch_plan, batches, emails, validation
from tasks.domain.models import User
from tests.faults import guarantees, measures
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow

BURST = 10_000
COUNT, WINDOW = 1500, 10.0
#: The window plus RATE_LIMIT_MARGIN (0.2 s, at most 5% of the window): the pace of the slots.
SPAN = WINDOW + 0.2
#: Other users' emails, due at these offsets into the burst (seconds).
OTHERS = (1.0, 12.0, 24.0, 36.0, 48.0)


def test_9_ten_thousand_due_in_one_second_drain_at_the_limit_and_others_are_not_starved(
    fault_conn: Conn, fault_settings: Settings, fault_owner: User, sink: Sink, fault_workers: Any
) -> None:
    """One user's 10,000 emails due at once, 1500/10s on the provider, five other users sending meanwhile.

    The provider sees at most 1500 in any 10 s, the queue drains in as many windows as the mail needs,
    no job is claimed twice, and each other user's email leaves within one window of its time
    (arrival order would put it behind the whole burst: up to 45 s).
    """
    limits = {"RATE_LIMITS": f"smtp={COUNT}/{WINDOW:g}s", "WORKER_CONCURRENCY": "20"}
    for _ in range(2):
        fault_workers(extra_env=limits)
    due = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=4)
    plan = batch_plan.prepare(
        settings=fault_settings,
        addresses="\n".join(f"burst{i}@example.com" for i in range(BURST)),
        subject="burst",
        body_text="one of ten thousand",
        start_at=due.isoformat(),
    )
    batches.create(fault_conn, owner=fault_owner, plan=plan, settings=fault_settings)
    others = [emails.ensure_user(fault_conn, email=f"other{i}@example.com", name=f"Other {i}") for i in range(5)]
    times = {}
    for user, offset in zip(others, OTHERS, strict=True):
        at = due + dt.timedelta(seconds=offset)
        draft = validation.validate(to=["friend@example.com"], subject="not starved", body_text="hi", send_at=at)
        email, _ = emails.schedule(fault_conn, owner=user, draft=draft, settings=fault_settings)
        times[email.message_id] = at.timestamp()
    started_at = time.time()

    total = BURST + len(OTHERS)
    ideal = (math.ceil(total / COUNT) - 1) * SPAN
    figures = guarantees.check(
        fault_conn,
        sink,
        scenario="9. 10,000 due at once under 1500/10s",
        promise=(
            "never over the limit at the provider; drains at the limit, about one claim per email; "
            "other users wait a window at most, not behind the burst"
        ),
        deadline_s=ideal + 60,
        started_at=started_at,
        limit=(COUNT, WINDOW),
        expect=("sent",),
    )

    arrivals = sorted(m.at for m in sink.messages)
    drain = arrivals[-1] - due.timestamp()
    late = {mid: m.at - times[mid] for m in sink.messages if (mid := m.message_id) in times}
    claims = fault_conn.execute(
        """
        SELECT count(*) AS claims, count(DISTINCT job_id) AS jobs, count(DISTINCT email_id) AS emails
          FROM email_events WHERE kind = 'claimed'
        """
    ).fetchone()
    print(
        f"[scenario 9] drain {drain:.1f}s (the last window opens at {ideal:.1f}s); other users' lateness "
        f"{sorted(round(v, 1) for v in late.values())}s; {claims['claims']} claims for {claims['emails']} emails"
    )
    measures.note(
        figures.scenario,
        limit=f"{COUNT}/{WINDOW:g}s",
        drain_s=round(drain, 1),
        last_window_opens_s=round(ideal, 1),
        other_users_lateness_s=sorted(round(v, 1) for v in late.values()),
        claims=claims["claims"],
    )
    assert figures.sent == total
    # At the limit: every window full but the last (a busy machine's workers may lag a little behind).
    assert drain <= ideal + 2 * SPAN
    assert len(late) == len(OTHERS) and max(late.values()) <= 2 * SPAN
    assert claims["claims"] == claims["jobs"], "a job was claimed twice"
    # The burst is queued at its turns in bulk: most emails are claimed once, at their turn.
    assert claims["claims"] <= 1.2 * total
