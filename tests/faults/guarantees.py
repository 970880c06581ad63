"""The one final check every fault scenario ends with, and the figures it records.

``check`` waits (polling the database) until every email is terminal or the
deadline passes, then asserts what the project promises under faults:

- every email reached a terminal state in time, in one of the expected states;
- none was lost: every ``sent`` email's Message-ID reached the sink;
- none arrived twice unless its row is ``uncertain``;
- no non-terminal email lacks a live job;
- the rate limit, if given, was never exceeded in any sliding window of arrivals.

The figures are merged by scenario name into ``.data/faults/results.json``, from
which ``scripts/guarantees_table.py`` prints the table in docs/guarantees.md.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import pathlib
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import psycopg

from tasks.domain.models import TERMINAL
from tests.support import invariants
from tests.support.smtp_sink import Sink

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".data" / "faults" / "results.json"
#: Events written during an attempt, before its outcome.
ATTEMPT_EVENTS = ("claimed", "data_started")


@dataclasses.dataclass(frozen=True)
class Figures:
    scenario: str
    promise: str
    emails: int
    sent: int
    lost: int
    duplicated: int
    uncertain: int
    failed: int
    seconds_to_recover: float | None
    wall_seconds: float
    at: str = ""


def max_in_window(times: Sequence[float], seconds: float) -> int:
    """The most arrivals in any half-open window ``[t, t + seconds)``."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected fault: when, and which emails were in flight (``sending``) just before it."""

    at: float
    in_flight: tuple[Any, ...] = ()
    #: Of those, the ones whose DATA had begun.
    in_data: tuple[Any, ...] = ()


def inject(conn: psycopg.Connection[Any], action: Callable[[], object]) -> Fault:
    """Note the emails in flight, then run ``action`` (the fault); return what was noted."""
    rows = conn.execute("SELECT id, data_started_at FROM emails WHERE status = 'sending'").fetchall()
    at = time.time()
    action()
    return Fault(
        at=at,
        in_flight=tuple(r["id"] for r in rows),
        in_data=tuple(r["id"] for r in rows if r["data_started_at"] is not None),
    )


def recovery_seconds(conn: psycopg.Connection[Any], sink: Sink, faults: Sequence[Fault]) -> float | None:
    """Seconds from each fault until it was repaired; the worst of them.

    A fault is repaired when sending has resumed (the first delivery after it)
    and every email it caught in flight has left ``sending`` (its first event
    after the fault that is not part of the attempt itself).
    """
    arrivals = sorted(m.at for m in sink.messages)
    worst: float | None = None
    for fault in faults:
        marks = [a for a in arrivals if a > fault.at][:1]
        if fault.in_flight:
            rows = conn.execute(
                """
                SELECT e.email_id, min(e.at) AS at FROM email_events e
                 WHERE e.email_id = ANY(%s) AND e.at > to_timestamp(%s) AND e.kind <> ALL(%s)
                 GROUP BY 1
                """,
                (list(fault.in_flight), fault.at, list(ATTEMPT_EVENTS)),
            ).fetchall()
            moved = {r["email_id"]: r["at"].timestamp() for r in rows}
            still = conn.execute(
                "SELECT count(*) AS n FROM emails WHERE id = ANY(%s) AND status = 'sending'", (list(fault.in_flight),)
            ).fetchone()
            if still and still["n"]:
                return None  # never repaired: the other assertions say why
            marks += moved.values()
        if marks:
            took = max(marks) - fault.at
            worst = took if worst is None else max(worst, took)
    return worst


def _not_terminal(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM emails WHERE status <> ALL(%s)", (list(TERMINAL),)).fetchone()
    return row["n"] if row else 0


def save(figures: Figures, path: pathlib.Path = RESULTS) -> None:
    """Merge these figures into the results file, by scenario name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        results = {}
    results[figures.scenario] = dataclasses.asdict(figures)
    path.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")


def check(
    conn: psycopg.Connection[Any],
    sink: Sink,
    *,
    scenario: str,
    promise: str,
    deadline_s: float,
    started_at: float,
    faults: Sequence[Fault] = (),
    limit: tuple[int, float] | None = None,
    expect: Collection[str] = ("sent", "uncertain"),
    horizon: float = 600.0,
    record: bool = True,
) -> Figures:
    """Wait until every email is terminal (up to ``deadline_s`` after ``started_at``), assert, record."""
    deadline = started_at + deadline_s
    while _not_terminal(conn) and time.time() < deadline:
        time.sleep(0.1)
    finished_at = time.time()
    # Let a late duplicate, if any, land before counting (the sink is fast; workers are idle now).
    time.sleep(0.5)

    rows = conn.execute("SELECT id, status, message_id FROM emails").fetchall()
    by_status = collections.Counter(r["status"] for r in rows)
    received = sink.by_message_id()
    known = {r["message_id"] for r in rows}
    status_of = {r["message_id"]: r["status"] for r in rows}
    not_terminal = [r for r in rows if r["status"] not in TERMINAL]
    sent_missing = [r for r in rows if r["status"] == "sent" and received[r["message_id"]] == 0]
    duplicated = [mid for mid, n in received.items() if n > 1]
    bad_duplicates = [mid for mid in duplicated if status_of.get(mid) != "uncertain"]
    strangers = [mid for mid in received if mid not in known]
    orphans = invariants.waiting_without_job(conn, horizon) + invariants.sending_without_job(conn)

    figures = Figures(
        scenario=scenario,
        promise=promise,
        emails=len(rows),
        sent=by_status.get("sent", 0),
        lost=len(sent_missing) + len(not_terminal),
        duplicated=len(duplicated),
        uncertain=by_status.get("uncertain", 0),
        failed=by_status.get("failed", 0),
        seconds_to_recover=recovery_seconds(conn, sink, faults),
        wall_seconds=round(finished_at - started_at, 1),
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    if figures.seconds_to_recover is not None:
        figures = dataclasses.replace(figures, seconds_to_recover=round(figures.seconds_to_recover, 1))
    if record:
        save(figures)
    print(f"\n[guarantees] {json.dumps(dataclasses.asdict(figures))}")

    assert not not_terminal, f"{len(not_terminal)} emails not terminal {deadline_s}s after the start: {dict(by_status)}"
    assert set(by_status) <= set(expect), f"unexpected end states: {dict(by_status)} (expected {sorted(expect)})"
    assert not sent_missing, f"{len(sent_missing)} emails marked sent never reached the sink"
    assert not bad_duplicates, f"{len(bad_duplicates)} emails arrived twice without being uncertain"
    assert not strangers, f"{len(strangers)} deliveries match no email"
    assert not orphans, f"{len(orphans)} non-terminal emails lack a live job"
    if limit is not None:
        count, seconds = limit
        most = max_in_window([m.at for m in sink.messages], seconds)
        assert most <= count, f"{most} emails arrived within {seconds}s; the limit is {count}"
    return figures
