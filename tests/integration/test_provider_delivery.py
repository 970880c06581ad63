"""SES and SendGrid through their APIs, end to end: real workers, the real clients, local
stand-ins (moto's SES, a SendGrid that checks each request). Each scripted answer gives its
behaviour in the chain: sent with the provider's id on the email and its timeline, retried
no sooner than Retry-After, counted by the breaker until the chain falls through, failed,
uncertain, or logged offline."""

from __future__ import annotations

import base64
import datetime as dt
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import present
from tasks.domain.models import User
from tests.integration.test_fallback import breaker, events, final, schedule
from tests.integration.test_rate_limits import max_in_window
from tests.support import ses_standin
from tests.support.sendgrid_standin import SendgridStandIn
from tests.support.ses_standin import SesStandIn

pytestmark = pytest.mark.slow

MAIL_FROM = "noreply@example.com"


@pytest.fixture(scope="module")
def ses_server() -> Iterator[SesStandIn]:
    server = SesStandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sendgrid_server() -> Iterator[SendgridStandIn]:
    server = SendgridStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def ses(ses_server: SesStandIn) -> SesStandIn:
    ses_server.reset()
    ses_server.verify(MAIL_FROM)
    return ses_server


@pytest.fixture
def sendgrid(sendgrid_server: SendgridStandIn) -> Iterator[SendgridStandIn]:
    sendgrid_server.reset()
    yield sendgrid_server
    assert sendgrid_server.violations == []  # every request matched SendGrid's documented schema


@pytest.fixture
def api_env(env: dict[str, str], ses: SesStandIn, sendgrid: SendgridStandIn, tmp_path: pathlib.Path) -> dict[str, str]:
    """SendGrid first, SES next, the offline log last; one provider failure opens a breaker."""
    return (
        env
        | ses_standin.CREDENTIALS
        | {
            "MAIL_TRANSPORTS": f"sendgrid://{sendgrid.api_key}@ ses://eu-west-1 jsonl://{tmp_path / 'offline.jsonl'}",
            "MAIL_FROM": f"Reach D. Box <{MAIL_FROM}>",
            "SES_ENDPOINT_URL": ses.url,
            "SENDGRID_API_URL": sendgrid.url,
            "BREAKER_THRESHOLD": "1",
            "BREAKER_COOLDOWN": "60",
            "RETRY_BACKOFF_BASE": "0.05",
            "RETRY_BACKOFF_MAX": "0.1",
            "SMTP_TIMEOUT": "1",
        }
    )


def test_sent_through_sendgrid_with_its_id_on_the_email_its_timeline_and_its_json(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sendgrid: SendgridStandIn,
    api_env: dict[str, str],
    workers: Any,
) -> None:
    worker = workers(extra_env=api_env | {"LOG_LEVEL": "DEBUG"})

    email = final(conn, schedule(conn, owner, settings, make_draft, cc=["carol@example.com"]), "sent")

    [kept] = sendgrid.accepted
    assert email.transport == "sendgrid" and email.provider_message_id == kept.message_id
    assert email.provider_reply == f"202 SendGrid accepted it: X-Message-Id {kept.message_id}"
    [sent] = events(conn, email, "sent")
    assert sent.detail["provider_message_id"] == kept.message_id
    assert present.email_json(email)["provider_message_id"] == kept.message_id
    assert kept.body["headers"]["Message-ID"] == email.message_id
    assert kept.body["custom_args"]["email_id"] == str(email.id)
    assert kept.body["personalizations"][0]["cc"] == [{"email": "carol@example.com"}]
    logged = worker.output()  # even at DEBUG: neither the API key nor the body
    assert email.message_id in logged or str(email.id) in logged
    assert sendgrid.api_key not in logged and email.body_text not in logged


def test_the_rate_limit_of_an_api_transport_holds_at_the_request(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sendgrid: SendgridStandIn,
    api_env: dict[str, str],
    workers: Any,
) -> None:
    """RATE_LIMITS names the API transport by its label like an SMTP one: 6 emails due at once,
    3/2s, the requests SendGrid receives never more than 3 in any 2 s; none waits as an attempt."""
    workers(extra_env=api_env | {"RATE_LIMITS": "sendgrid=3/2s"})
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    batch = [schedule(conn, owner, settings, make_draft, send_at=due, subject=f"#{n}") for n in range(6)]

    sent = [final(conn, email, "sent") for email in batch]

    times = [a.at for a in sendgrid.accepted]
    assert len(times) == 6 and max_in_window(times, 2.0) <= 3
    assert {e.transport for e in sent} == {"sendgrid"} and {e.attempts for e in sent} == {1}


def test_throttled_by_sendgrid_waits_its_retry_after_and_the_chain_falls_through_to_ses(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    ses: SesStandIn,
    sendgrid: SendgridStandIn,
    api_env: dict[str, str],
    workers: Any,
) -> None:
    """429 is the provider's: retried (no sooner than its Retry-After, though the backoff is
    0.1 s), the breaker opens, and the retry goes to SES with our raw message."""
    sendgrid.then("throttle", retry_after=2)
    worker = workers(extra_env=api_env | {"LOG_LEVEL": "DEBUG"})

    email = final(conn, schedule(conn, owner, settings, make_draft), "sent")

    [retry] = events(conn, email, "retry_scheduled")
    [(status, throttled_at)] = sendgrid.answers
    assert retry.detail["transport"] == "sendgrid" and "SendGrid 429: too many requests" in retry.detail["error"]
    assert status == 429 and email.data_started_at is not None
    # The second attempt began no sooner than Retry-After from the 429 (the backoff alone: 0.1 s).
    assert email.data_started_at.timestamp() - throttled_at >= 2.0
    assert breaker(conn, "sendgrid")["state"] == "open"
    [kept] = ses.sent()
    assert (email.transport, email.attempts, email.provider_message_id) == ("ses", 2, kept.id)
    assert f"Message-ID: {email.message_id}" in kept.raw_data
    assert sendgrid.accepted == []
    logged = worker.output()  # even at DEBUG: not the message (botocore's DEBUG has it, in base64)
    assert kept.id in logged and email.body_text not in logged
    assert base64.b64encode(kept.raw_data.encode())[:60].decode() not in logged


@pytest.mark.parametrize("case", ["sendgrid 400", "sendgrid timeout after send", "ses refuses"])
def test_each_scripted_failure_gives_its_behaviour(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    ses: SesStandIn,
    sendgrid: SendgridStandIn,
    api_env: dict[str, str],
    workers: Any,
    case: str,
) -> None:
    """A refusal of the message fails it (the breaker does not count it); a timeout once the
    request was sent is uncertain (the provider did get it: never sent again)."""
    chain = api_env
    if case == "sendgrid 400":
        sendgrid.then("reject", message="The from address does not match a verified Sender Identity.", field="from")
    elif case == "sendgrid timeout after send":
        sendgrid.then("stall_after_accept", hold=3)
    else:
        chain = api_env | {"MAIL_TRANSPORTS": "ses://eu-west-1", "MAIL_FROM": "unverified@example.com"}
    workers(extra_env=chain)

    email = final(conn, schedule(conn, owner, settings, make_draft), "failed", "uncertain", "sent")
    sendgrid.release()

    assert email.attempts == 1
    if case == "sendgrid 400":
        assert email.status == "failed" and breaker(conn, "sendgrid")["state"] == "closed"
        assert email.last_error == ("SendGrid 400: The from address does not match a verified Sender Identity. (from)")
    elif case == "sendgrid timeout after send":
        assert email.status == "uncertain" and email.data_started_at is not None
        assert (email.last_error or "").startswith("no answer from sendgrid://api.sendgrid.com once the request was")
        assert len(sendgrid.accepted) == 1 and ses.sent() == []
    else:
        assert email.status == "failed" and "MessageRejected" in (email.last_error or "")
        assert breaker(conn, "ses")["state"] == "closed" and ses.sent() == []


def test_with_both_apis_down_the_email_goes_to_the_offline_log(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    ses: SesStandIn,
    sendgrid: SendgridStandIn,
    api_env: dict[str, str],
    workers: Any,
) -> None:
    sendgrid.then("unavailable", status=503)
    ses.then("unavailable", status=500, code="InternalFailure")
    workers(extra_env=api_env)

    email = final(conn, schedule(conn, owner, settings, make_draft), "offline")

    retries = events(conn, email, "retry_scheduled")
    assert [r.detail["transport"] for r in retries] == ["sendgrid", "ses"]
    assert "SES 500 InternalFailure" in retries[1].detail["error"]
    assert (breaker(conn, "sendgrid")["state"], breaker(conn, "ses")["state"]) == ("open", "open")
    assert email.transport == "jsonl" and email.provider_message_id is None
