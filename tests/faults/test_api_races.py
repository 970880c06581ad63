"""Scenario 10: cancel and reschedule racing the send, 1,000 times through the API.

500 emails come due 30 ms apart while two real workers send them; each gets two
operations over HTTP (a real gunicorn), cancel or reschedule, each aimed at the
moment the email is due (a few ms either side), so they race the worker's claim.
Every email's end must agree with what the API answered: a 200 cancel means it
was never delivered; a 409 means it had been claimed already; a 200 reschedule
means it was not delivered before its new time.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import functools
import heapq
import pathlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, validation
from tasks.domain.models import Email, User
from tests.faults import guarantees
from tests.faults.webapi import Api, running_web, token_for
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow

EMAILS = 500
OPS_PER_EMAIL = 2
SPACING = 0.03
AIM = 0.03  # seconds either side of the due time


@dataclasses.dataclass
class Answer:
    kind: str
    code: int
    asked: float
    answered: float
    new_at: dt.datetime | None


class Timeline:
    """Run callables at given times on a thread pool; a callable may schedule more."""

    def __init__(self, threads: int):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._busy = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(threads)
        self.errors: list[BaseException] = []

    def at(self, when: float, action: Callable[[], None]) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, action))
            self._cond.notify_all()

    def _run(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BaseException as exc:  # reported by run(), not lost in a thread
            self.errors.append(exc)
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def run(self) -> None:
        """Dispatch until nothing is queued or running."""
        with self._cond:
            while self._heap or self._busy:
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, action = self._heap[0]
                left = when - time.time()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                self._busy += 1
                self._pool.submit(self._run, action)
        self._pool.shutdown()
        if self.errors:
            raise self.errors[0]


def schedule_spread(conn: Conn, owner: User, settings: Settings, start: dt.datetime) -> list[Email]:
    made = []
    for i in range(EMAILS):
        draft = validation.validate(
            to=[f"race{i}@example.com"],
            subject=f"race #{i}",
            body_text="hello",
            send_at=start + dt.timedelta(seconds=SPACING * i),
        )
        made.append(emails.schedule(conn, owner=owner, draft=draft, settings=settings)[0])
    return made


def test_cancel_and_reschedule_racing_the_send_1000_times_agree_with_what_the_api_answered(
    fault_env: dict[str, str],
    fault_conn: Conn,
    fault_owner: User,
    fault_settings: Settings,
    fault_workers: Any,
    sink: Sink,
    tmp_path: pathlib.Path,
) -> None:
    """No 5xx; 200 cancel: never delivered; 409: claimed before the answer; 200 reschedule:
    not delivered before the new time; and the common check holds."""
    for _ in range(2):
        fault_workers()
    rng = random.Random(10)
    plans = {
        i: [(rng.choice(("cancel", "reschedule")), rng.uniform(-AIM, AIM), rng.uniform(0.2, 1.5)) for _ in range(2)]
        for i in range(EMAILS)
    }
    answers: dict[Any, list[Answer]] = {}
    with running_web(fault_env, tmp_path) as server:
        api = Api(server, token_for(fault_conn, fault_owner))
        clients = threading.local()

        def client() -> Api:
            if not hasattr(clients, "api"):
                clients.api = api.clone()
            return clients.api

        started = time.time()
        batch = schedule_spread(
            fault_conn, fault_owner, fault_settings, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
        )
        timeline = Timeline(threads=32)

        def act(email: Email, index: int, n: int, due: float) -> None:
            kind, _, move_by = plans[index][n]
            asked = time.time()
            new_at = None
            if kind == "cancel":
                response = client().post(f"/emails/{email.id}/cancel")
            else:
                new_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=move_by)
                response = client().patch(f"/emails/{email.id}", {"send_at": new_at.isoformat()})
            answer = Answer(kind, response.status_code, asked, time.time(), new_at)
            answers.setdefault(email.id, []).append(answer)
            if n + 1 < OPS_PER_EMAIL:
                moved = kind == "reschedule" and answer.code == 200
                next_due = new_at.timestamp() if moved and new_at else due
                timeline.at(
                    max(next_due, time.time()) + plans[index][n + 1][1], lambda: act(email, index, n + 1, next_due)
                )

        for i, email in enumerate(batch):
            due = email.send_at.timestamp()
            timeline.at(due + plans[i][0][1], functools.partial(act, email, i, 0, due))
        timeline.run()

    figures = guarantees.check(
        fault_conn,
        sink,
        scenario="10. cancel and reschedule racing the send",
        promise="each email's end agrees with the API's answer: 200 cancel never delivered, 409 already claimed",
        deadline_s=90,
        started_at=started,
        expect=("sent", "cancelled"),
    )

    rows = {
        r["id"]: r
        for r in fault_conn.execute(
            """
            SELECT e.id, e.status, e.message_id, e.data_started_at,
                   (SELECT min(at) FROM email_events v WHERE v.email_id = e.id AND v.kind = 'claimed') AS claimed_at
              FROM emails e
            """
        )
    }
    received = sink.by_message_id()
    codes = [a.code for said in answers.values() for a in said]
    disagreements = []
    for email_id, said in answers.items():
        row = rows[email_id]
        cancelled = any(a.kind == "cancel" and a.code == 200 for a in said)
        delivered = received[row["message_id"]]
        claimed_at = row["claimed_at"].timestamp() if row["claimed_at"] else None
        moved_to = [a.new_at for a in said if a.kind == "reschedule" and a.code == 200]
        problems = []
        if cancelled and (row["status"], delivered) != ("cancelled", 0):
            problems.append("a 200 cancel, yet not cancelled or delivered")
        if not cancelled and (row["status"], delivered) != ("sent", 1):
            problems.append("never cancelled, yet not sent exactly once")
        if any(a.code == 409 and (claimed_at is None or claimed_at > a.answered) for a in said if not cancelled):
            problems.append("409 before any worker had claimed it")
        if moved_to and row["data_started_at"] and row["data_started_at"] < max(moved_to):
            problems.append("delivered before the time it was rescheduled to")
        if problems:
            disagreements.append((email_id, problems, [(a.kind, a.code) for a in said], row["status"]))

    tally = {
        (kind, code): sum(1 for said in answers.values() for a in said if (a.kind, a.code) == (kind, code))
        for kind in ("cancel", "reschedule")
        for code in (200, 409)
    }
    print(
        f"\n[race] {len(codes)} operations: {tally}; {figures.sent} sent, "
        f"{sum(1 for r in rows.values() if r['status'] == 'cancelled')} cancelled"
    )
    assert len(codes) == EMAILS * OPS_PER_EMAIL
    assert set(codes) <= {200, 409}, sorted(set(codes))
    assert disagreements == [], disagreements[:5]
    # The races really happened: both answers to both operations, many times.
    assert all(n >= 20 for n in tally.values()), tally
