"""The send task against a real SMTP server, through a real worker process."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models
from tasks.domain.models import Email, User
from tests.support.procs import wait_until
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow


def schedule(conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], **fields: Any) -> Email:
    fields.setdefault("send_at", dt.datetime.now(dt.UTC))
    return emails.schedule(conn, owner=owner, draft=make_draft(**fields), settings=settings)[0]


def final(conn: Conn, email: Email, *statuses: str, timeout: float = 20) -> Email:
    return wait_until(
        lambda: (e := emails.get(conn, models.OPERATOR, email.id)).status in statuses and e,
        timeout=timeout,
        what=f"email to become {'/'.join(statuses)}",
    )


def kinds(conn: Conn, email: Email) -> list[str]:
    return [e.kind for e in emails.timeline(conn, models.OPERATOR, email.id)]


def test_an_email_arrives_at_its_time_with_its_message_id(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """Scheduled for now + 2 s: not early, and within 1 s after (no 5 s poll)."""
    workers()
    send_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)

    email = schedule(conn, owner, settings, make_draft, send_at=send_at)
    [received] = sink.wait_for(1, timeout=10)

    lateness = received.at - send_at.timestamp()
    print(f"lateness of the 2 s email: {lateness * 1000:.1f} ms")
    assert 0 <= lateness < 1.0
    assert received.message_id == email.message_id
    done = final(conn, email, "sent")
    assert done.provider_reply == "250 2.0.0 OK queued"
    # One event per step: DATA's beginning is on the row and in the outcome's event.
    assert kinds(conn, email) == ["scheduled", "claimed", "sent"]
    sent = conn.execute("SELECT detail FROM email_events WHERE email_id = %s AND kind = 'sent'", (email.id,)).fetchone()
    assert done.data_started_at is not None
    assert dt.datetime.fromisoformat(sent["detail"]["data_started_at"]) == done.data_started_at


@pytest.mark.parametrize("stage", ["data", "rcpt"])
def test_temporary_refusals_are_retried_and_delivered_once(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any, stage: str
) -> None:
    replies = sink.data_replies if stage == "data" else sink.rcpt_replies
    replies.extend(["421 4.3.0 Try again later", "451 4.3.0 Mailbox busy"])
    workers()

    email = final(conn, schedule(conn, owner, settings, make_draft), "sent")

    assert email.attempts == 3
    assert sink.by_message_id()[email.message_id] == 1 and len(sink.messages) == 1
    events = emails.timeline(conn, models.OPERATOR, email.id)
    retries = [e for e in events if e.kind == "retry_scheduled"]
    assert [r.detail["error"].split(": ", 1)[1] for r in retries] == [
        "421 4.3.0 Try again later",
        "451 4.3.0 Mailbox busy",
    ]
    # Each retry is a new job, due after a backoff (base 0.2 s: at least 0.1 s after the failed
    # attempt began), and never claimed before it is due.
    claims = [e for e in events if e.kind == "claimed"]
    assert len({c.job_id for c in claims}) == 3
    for claim, retry, next_claim in zip(claims, retries, claims[1:], strict=False):
        due = dt.datetime.fromisoformat(retry.detail["next_attempt_at"])
        assert (due - claim.at).total_seconds() >= 0.1
        assert next_claim.at >= due


def test_a_permanent_refusal_fails_with_the_reply_text(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    sink.data_replies.append("550 5.7.1 Message rejected as spam")
    workers()

    email = final(conn, schedule(conn, owner, settings, make_draft), "failed")

    assert email.last_error == "DATA refused: 550 5.7.1 Message rejected as spam"
    assert email.attempts == 1 and sink.messages == []


def test_a_refused_connection_is_retried_not_failed(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    sink.stop()
    workers()

    email = schedule(conn, owner, settings, make_draft)
    waiting = wait_until(
        lambda: (e := emails.get(conn, models.OPERATOR, email.id)).attempts >= 2 and e.status == "scheduled" and e,
        timeout=20,
        what="two refused attempts",
    )
    sink.start()

    assert "cannot connect" in (waiting.last_error or "")
    assert waiting.waiting_reason == "retrying after a temporary error"
    sent = final(conn, email, "sent")
    assert sink.by_message_id()[sent.message_id] == 1


def test_individually_refused_recipients_are_recorded(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    sink.refuse_rcpt["ghost@example.com"] = "550 5.1.1 No such user"
    workers()

    email = final(
        conn, schedule(conn, owner, settings, make_draft, to=["bob@example.com", "ghost@example.com"]), "sent"
    )

    assert email.refused_recipients == {"ghost@example.com": "550 5.1.1 No such user"}
    [received] = sink.messages
    assert received.rcpt_tos == ("bob@example.com",)


def test_every_recipient_refused_is_a_failure(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    sink.refuse_rcpt["ghost@example.com"] = "550 5.1.1 No such user"
    workers()

    email = final(conn, schedule(conn, owner, settings, make_draft, to=["ghost@example.com"]), "failed")

    assert "every recipient was refused" in (email.last_error or "")
    assert sink.messages == []


def test_a_stall_after_data_leaves_the_email_uncertain_never_resent(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """The provider may have it: the email says so and is not sent again."""
    sink.stall_data.set()
    workers(extra_env={"SMTP_TIMEOUT": "1"})

    email = final(conn, schedule(conn, owner, settings, make_draft), "uncertain")

    assert "during DATA" in (email.last_error or "") and email.data_started_at is not None
    assert email.attempts == 1
    assert kinds(conn, email)[-1] == "uncertain"
    live = conn.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo' AND args->>'email_id' = %s",
        (str(email.id),),
    ).fetchone()
    assert live == {"n": 0}  # no job will ever send it again


def test_an_internationalised_address_goes_out_with_smtputf8(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """josé@example.com: the envelope and the To header carry the address as typed (RFC 6531/6532)."""
    workers()

    email = final(conn, schedule(conn, owner, settings, make_draft, to=["josé@example.com", "bob@example.com"]), "sent")

    [received] = sink.messages
    assert received.rcpt_tos == ("josé@example.com", "bob@example.com")
    assert "To: josé@example.com, bob@example.com\r\n".encode() in received.raw
    assert received.message_id == email.message_id


def test_a_provider_without_smtputf8_fails_such_an_email_at_once_and_says_why(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], workers: Any
) -> None:
    """Not a crash and a loop of recoveries: it ends failed with the reason, nothing sent."""
    plain = Sink(smtputf8=False).start()
    try:
        workers(extra_env={"MAIL_TRANSPORTS": f"smtp://127.0.0.1:{plain.port}"})

        email = final(conn, schedule(conn, owner, settings, make_draft, to=["josé@example.com"]), "failed")

        assert "SMTPUTF8" in (email.last_error or "") and email.attempts == 1
        assert plain.messages == []
        assert "recovered" not in kinds(conn, email)
    finally:
        plain.stop()
