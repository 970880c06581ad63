"""Say in plain words where an email stands and why it has not gone yet."""

from __future__ import annotations

import datetime as dt
from typing import assert_never

from tasks.domain.models import Email, Status
from tasks.domain.zones import moment

#: A due email not claimed after this long suggests no worker is running.
OVERDUE = dt.timedelta(minutes=1)


def relative(at: dt.datetime, now: dt.datetime) -> str:
    """Return ``in 3 min`` / ``5 s ago`` style text."""
    seconds = (at - now).total_seconds()
    future = seconds >= 0
    s = abs(seconds)
    if s < 60:
        text = f"{int(s)} s"
    elif s < 3600:
        text = f"{int(s // 60)} min"
    elif s < 86400:
        text = f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    else:
        text = f"{int(s // 86400)} d"
    return f"in {text}" if future else f"{text} ago"


def why(email: Email, now: dt.datetime | None = None) -> str:
    """Explain the email's state to the person who sent it (times in the zone they chose)."""
    now = now or dt.datetime.now(dt.UTC)
    at = email.next_attempt_at
    when = f"{moment(at, email.send_tz)} ({relative(at, now)})"
    reason = (email.waiting_reason or "").strip()
    if email.status == Status.SCHEDULED:
        if at > now:
            if "rate" in reason.lower():
                return f"Waiting for a rate-limit slot until {when}: the provider allows only so many emails at once."
            if reason:
                detail = f" Last error: {email.last_error}." if email.last_error else ""
                return f"{reason[:1].upper()}{reason[1:]}; the next attempt is at {when}.{detail}"
            if email.attempts and email.last_error:
                return (
                    f"Retrying after an error (attempt {email.attempts} failed: {email.last_error}); "
                    f"the next attempt is at {when}."
                )
            return f"Waiting for its time: it goes out at {when}."
        if now - at > OVERDUE:
            return (
                f"Due since {relative(at, now).removesuffix(' ago')} and not picked up yet: "
                "no worker seems to be running (start one with `python -m tasks worker`)."
            )
        return "Due now: waiting for a worker to pick it up."
    if email.status == Status.SENDING:
        return f"Being sent right now (attempt {email.attempts})."
    if email.status == Status.SENT:
        sent = moment(email.sent_at, email.send_tz) if email.sent_at else "?"
        via = f" via {email.transport}" if email.transport else ""
        reply = f"; the server answered {email.provider_reply!r}" if email.provider_reply else ""
        return f"Sent at {sent}{via}{reply}."
    if email.status == Status.FAILED:
        return f"Failed: {email.last_error or 'the mail server refused it'}. You can send it again."
    if email.status == Status.UNCERTAIN:
        cause = email.last_error or "the connection was lost after the message was handed over"
        return (
            f"Uncertain because {cause[:1].lower()}{cause[1:]}: the server may or may not have accepted it. "
            "Check with the recipient before sending it again."
        )
    if email.status == Status.CANCELLED:
        return "Cancelled: it will not be sent."
    if email.status == Status.OFFLINE:
        return (
            "Logged offline: every mail transport was down, so it was written to the offline log instead of "
            "being sent. It goes out, once, when an operator replays the log after the provider is back "
            "(`python -m tasks replay-offline`); you can still cancel it."
        )
    assert_never(email.status)  # mypy: every status is explained above
