"""Why an email has not gone yet, in plain words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest

from tasks.domain import explain, zones
from tasks.domain.models import Email, Status

NOW = dt.datetime(2030, 1, 7, 8, 0, tzinfo=dt.UTC)


def email(**changes: Any) -> Email:
    base = Email(
        id=uuid.uuid4(),
        org_id=1,
        owner_id=1,
        from_addr="f@x",
        reply_to=None,
        to_addrs=["a@example.com"],
        cc_addrs=[],
        bcc_addrs=[],
        subject="S",
        body_text="B",
        body_html=None,
        send_at=NOW,
        send_tz="Europe/Paris",
        status=Status.SCHEDULED,
        attempts=0,
        next_attempt_at=NOW + dt.timedelta(minutes=3),
        waiting_reason=None,
        last_error=None,
        message_id="<m@x>",
        transport=None,
        provider_reply=None,
        refused_recipients={},
        job_id=None,
        idempotency_key=None,
        created_at=NOW,
        updated_at=NOW,
        data_started_at=None,
        sent_at=None,
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "Waiting for its time: it goes out at Mon 7 Jan 2030 09:03:00 CET (in 3 min)."),
        (
            {"waiting_reason": "waiting for a rate-limit slot"},
            "Waiting for a rate-limit slot until Mon 7 Jan 2030 09:03:00 CET",
        ),
        (
            {"waiting_reason": "retrying after a temporary error", "attempts": 2, "last_error": "451 try later"},
            "Retrying after a temporary error; the next attempt is at Mon 7 Jan 2030 09:03:00 CET (in 3 min). "
            "Last error: 451 try later.",
        ),
        ({"next_attempt_at": NOW - dt.timedelta(minutes=5)}, "no worker seems to be running"),
        ({"status": "sending", "attempts": 1}, "Being sent right now (attempt 1)."),
        (
            {"status": "uncertain", "last_error": "The connection dropped after DATA"},
            "Uncertain because the connection dropped",
        ),
        ({"status": "failed", "last_error": "550 no such user"}, "Failed: 550 no such user."),
        ({"status": "cancelled"}, "Cancelled: it will not be sent."),
    ],
)
def test_each_state_is_explained(changes: dict[str, object], expected: str) -> None:
    assert expected in explain.why(email(**changes), now=NOW)


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "in 30 s"), (-90, "1 min ago"), (7260, "in 2 h 1 min"), (3 * 86400, "in 3 d")]
)
def test_relative_times(seconds: float, text: str) -> None:
    assert explain.relative(NOW + dt.timedelta(seconds=seconds), NOW) == text


@pytest.mark.parametrize(
    ("at", "zone", "shown"),
    [
        (dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.UTC), "Pacific/Kiritimati", "Fri 31 Dec 9999 23:00:00 UTC"),
        (dt.datetime(1, 1, 1, 0, 0, tzinfo=dt.UTC), "America/Los_Angeles", "Mon 1 Jan 1 00:00:00 UTC"),
        (NOW, "Europe", "Mon 7 Jan 2030 08:00:00 UTC"),
        (NOW, "Mars/Olympus", "Mon 7 Jan 2030 08:00:00 UTC"),
        (NOW, "Europe/Paris", "Mon 7 Jan 2030 09:00:00 CET"),
    ],
)
def test_a_time_its_zone_cannot_show_is_shown_in_utc(at: dt.datetime, zone: str, shown: str) -> None:
    """Whatever a row holds: a zone that is no zone, a local time outside the years 1 to 9999."""
    assert zones.moment(at, zone) == shown
    assert shown in explain.why(email(send_tz=zone, next_attempt_at=at, sent_at=at, status="sent"), now=at)
    assert explain.why(email(send_tz=zone, next_attempt_at=at), now=NOW)  # in the past or the future
