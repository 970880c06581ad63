"""The send task's pure rules: backoff, and the message it puts on the wire."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import uuid
from typing import Any

from tasks.core import config
from tasks.delivery import message
from tasks.delivery.gate import unavailable_backoff
from tasks.delivery.send import backoff
from tasks.domain.models import Email


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    settings = config.load({"RETRY_BACKOFF_BASE": "10", "RETRY_BACKOFF_MAX": "60"})

    waits = {n: [backoff(n, settings) for _ in range(200)] for n in (1, 2, 3, 10)}

    assert all(5 <= w <= 10 for w in waits[1])
    assert all(10 <= w <= 20 for w in waits[2])
    assert all(20 <= w <= 40 for w in waits[3])
    assert all(30 <= w <= 60 for w in waits[10])
    assert len(set(waits[1])) > 100  # jittered, not a fixed delay


def test_the_wait_for_redis_stays_capped_after_thousands_of_failures() -> None:
    """Redis away for a while counts a failure per attempt (thousands): the wait stays capped, no overflow."""
    waits = [unavailable_backoff(failures, 10, 600) for failures in (1, 2, 7, 1025, 50_000)]

    assert 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2
    assert all(30 <= w <= 60 for w in waits[2:])


def make_email(**overrides: Any) -> Email:
    email_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    fields: dict[str, Any] = dict(
        id=email_id,
        org_id=1,
        owner_id=1,
        from_addr="Reach D. Box <noreply@example.com>",
        reply_to="alice@example.com",
        to_addrs=["bob@example.com"],
        cc_addrs=["carol@example.com"],
        bcc_addrs=["secret@example.com"],
        subject="Héllo",
        body_text="Hi Bob",
        body_html="<p>Hi Bob</p>",
        send_at=now,
        send_tz="UTC",
        status="sending",
        attempts=1,
        next_attempt_at=now,
        waiting_reason=None,
        last_error=None,
        message_id=f"<{email_id}@mail.example.com>",
        transport=None,
        provider_reply=None,
        refused_recipients={},
        job_id=1,
        idempotency_key=None,
        created_at=now,
        updated_at=now,
        data_started_at=None,
        sent_at=None,
    )
    return Email(**(fields | overrides))


def test_the_message_carries_its_fixed_id_and_hides_bcc() -> None:
    row = make_email()

    parsed = email.message_from_bytes(message.build(row), policy=email.policy.default)

    assert parsed["Message-ID"] == row.message_id
    assert str(row.id) in parsed["Message-ID"]
    assert parsed["Bcc"] is None and b"secret@example.com" not in message.build(row)
    assert parsed["Reply-To"] == "alice@example.com"
    assert parsed["Subject"] == "Héllo"
    assert parsed.get_body(("plain",)).get_content().strip() == "Hi Bob"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hi Bob</p>"
    assert row.recipients == ["bob@example.com", "carol@example.com", "secret@example.com"]


def test_a_lists_message_to_one_recipient_carries_one_click_unsubscribe() -> None:
    from tasks.domain.unsubscribe import Links

    links = Links("https://reach.example.test/", "a-secret-key")
    one = {"to_addrs": ["bob@example.com"], "cc_addrs": [], "bcc_addrs": []}
    cases = {
        "batch": make_email(**one, batch_id=uuid.uuid4()),
        "recurrence": make_email(**one, recurrence_id=uuid.uuid4(), occurrence_at=dt.datetime.now(dt.UTC)),
        "asked": make_email(**one, list_unsubscribe=True),
        "international": make_email(to_addrs=["bøb@example.com"], cc_addrs=[], bcc_addrs=[], batch_id=uuid.uuid4()),
    }
    for name, row in cases.items():
        parsed = email.message_from_bytes(message.build(row, unsubscribe=links), policy=email.policy.default)
        link = str(parsed["List-Unsubscribe"]).strip()
        assert link == f"<https://reach.example.test/u/{links.token(row.id)}>", name
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click", name
        assert links.read(link[1:-1].rsplit("/", 1)[1]) == row.id, name

    # A one-off that did not ask, a list's message to several, or no PUBLIC_URL: no header.
    for row, given in (
        (make_email(**one), links),
        (make_email(batch_id=uuid.uuid4()), links),
        (make_email(**one, batch_id=uuid.uuid4()), None),
    ):
        assert b"List-Unsubscribe" not in message.build(row, unsubscribe=given)


def test_an_unsubscribe_token_is_refused_when_altered_or_signed_with_another_key() -> None:
    from tasks.domain.unsubscribe import Links

    email_id = uuid.uuid4()
    token = Links("https://a.example", "key-one").token(email_id)

    assert Links("https://a.example", "key-one").read(token) == email_id
    assert Links("https://a.example", "key-two").read(token) is None
    # (The signature's first character: the last one's low bits may be base64 padding.)
    payload, signature = token.rsplit(".", 1)
    altered = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert Links("https://a.example", "key-one").read(altered) is None
    assert Links("https://a.example", "key-one").read("not-a-token") is None
