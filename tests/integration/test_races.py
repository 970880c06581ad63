"""Cancel racing the worker's claim: exactly one of them wins, every time."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models
from tasks.domain.models import User
from tests.support import invariants
from tests.support.procs import wait_until
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow


def test_cancel_racing_the_claim_200_times(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    workers: Any,
    database_url: str,
) -> None:
    """Each email ends cancelled and never received, or sent once with the cancel told it was too late."""
    workers()
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    batch = [
        emails.schedule(
            conn, owner=owner, draft=make_draft(send_at=start + dt.timedelta(milliseconds=15 * i)), settings=settings
        )[0]
        for i in range(200)
    ]
    rng = random.Random(7)

    def cancel_near_its_time(email: Any) -> str:
        # Aim at the moment the worker claims it, a little before or after.
        target = email.send_at.timestamp() + rng.uniform(-0.03, 0.03)
        time.sleep(max(0.0, target - time.time()))
        with db.connect(database_url) as c:
            try:
                emails.cancel(c, models.OPERATOR, email.id)
            except errors.TooLate:
                return "too_late"
        return "cancelled"

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        outcomes = dict(zip([e.id for e in batch], pool.map(cancel_near_its_time, batch), strict=True))
    wait_until(lambda: set(invariants.counts(conn)) <= {"sent", "cancelled"}, timeout=30, what="all to settle")

    received = sink.by_message_id()
    for email in batch:
        status = emails.get(conn, models.OPERATOR, email.id).status
        if outcomes[email.id] == "cancelled":
            assert status == "cancelled" and received[email.message_id] == 0, email.id
        else:
            assert status == "sent" and received[email.message_id] == 1, email.id
    tally = list(outcomes.values())
    print(f"cancel race: {tally.count('cancelled')} cancelled in time, {tally.count('too_late')} too late")
    assert tally.count("cancelled") >= 10 and tally.count("too_late") >= 10
