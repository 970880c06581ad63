"""ses:// and sendgrid://, the real clients (aiobotocore, httpx) against local stand-ins: each
scripted answer gives its class (delivered with the provider's id, permanent, temporary with
Retry-After, uncertain), and nothing is sent when the email changed before the request."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.delivery import message, providers, transports
from tests.support import ses_standin
from tests.support.sendgrid_standin import SendgridStandIn
from tests.support.ses_standin import SesStandIn
from tests.support.smtp_sink import free_port
from tests.unit.test_send_rules import make_email

SENDER = "noreply@example.com"


@pytest.fixture(scope="module")
def ses() -> Iterator[SesStandIn]:
    server = SesStandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[SendgridStandIn]:
    server = SendgridStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def aws(ses: SesStandIn, monkeypatch: pytest.MonkeyPatch) -> SesStandIn:
    """The stand-in, fresh, with our sender verified; AWS's credential chain finds test keys."""
    for key, value in ses_standin.CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    ses.reset()
    ses.verify(SENDER)
    return ses


@pytest.fixture
def sg(sendgrid: SendgridStandIn) -> Iterator[SendgridStandIn]:
    sendgrid.reset()
    yield sendgrid
    assert sendgrid.violations == []  # every request matched SendGrid's documented schema


def ses_transport(url: str, timeout: float = 2.0, entry: str = "ses://eu-west-1") -> providers.SesTransport:
    spec = transports.parse_transport(entry)
    return providers.SesTransport(spec, name=spec.name, label="ses", timeout=timeout, pool_size=2, endpoint=url)


def sendgrid_transport(url: str, key: str = "SG.test-key.standin", timeout: float = 2.0) -> providers.SendgridTransport:
    spec = transports.parse_transport("sendgrid://")
    return providers.SendgridTransport(
        spec, name=spec.name, label="sendgrid", timeout=timeout, pool_size=2, base_url=url, api_key=key
    )


def send(
    transport: transports.Transport, *, sender: str = SENDER, allow: bool = True, **fields: Any
) -> tuple[transports.Delivery | transports.SendError, list[bool], bytes]:
    """One send on a fresh loop (the client closed in it): its delivery or error, and whether
    ``before_data`` was asked."""
    row = make_email(id=uuid.uuid4(), **fields)
    raw = message.build(row)
    asked: list[bool] = []

    async def before_data(refused: dict[str, str]) -> bool:
        asked.append(True)
        return allow

    async def go() -> transports.Delivery | transports.SendError:
        try:
            return await transport.send(sender=sender, recipients=row.recipients, message=raw, before_data=before_data)
        except transports.SendError as exc:
            return exc
        finally:
            await transport.close()

    return asyncio.run(go()), asked, raw


# --- SES ---------------------------------------------------------------------------------


def test_ses_takes_our_raw_message_and_gives_its_message_id(aws: SesStandIn) -> None:
    result, asked, raw = send(ses_transport(aws.url))

    assert isinstance(result, transports.Delivery), result
    [kept] = aws.sent()
    assert result.provider_message_id == kept.id and kept.id in result.reply
    assert kept.raw_data.encode() == raw  # byte for byte: our Message-ID and headers
    assert kept.source == SENDER
    assert sorted(kept.destinations[:3]) == ["bob@example.com", "carol@example.com", "secret@example.com"]
    assert asked == [True]


def test_ses_sends_with_the_configuration_set_named_in_the_url(aws: SesStandIn) -> None:
    """Where SES's event destinations are defined: the request names it."""
    aws.client().create_configuration_set(ConfigurationSetName="events-1")

    result, _, _ = send(ses_transport(aws.url, entry="ses://eu-west-1?configuration_set=events-1"))

    assert isinstance(result, transports.Delivery), result
    [request] = aws.requests
    assert request["ConfigurationSetName"] == "events-1"
    assert request["FromEmailAddress"] == SENDER and set(request["Content"]) == {"Raw"}


@pytest.mark.parametrize(
    ("script", "kind", "fault", "retry_after"),
    [
        ({"kind": "throttle", "retry_after": 3}, transports.Transient, True, 3.0),
        ({"kind": "throttle"}, transports.Transient, True, None),
        ({"kind": "unavailable"}, transports.Transient, True, None),
        ({"kind": "unavailable", "status": 500, "code": "InternalFailure"}, transports.Transient, True, None),
    ],
)
def test_ses_throttling_and_5xx_are_temporary_and_the_providers_fault(
    aws: SesStandIn, script: dict[str, Any], kind: type, fault: bool, retry_after: float | None
) -> None:
    aws.then(**script)

    result, _, _ = send(ses_transport(aws.url))

    assert type(result) is kind, result
    assert isinstance(result, transports.SendError)
    assert (result.provider_fault, result.retry_after) == (fault, retry_after)
    assert aws.sent() == [] and len(aws.answers) == 1  # one request: botocore does not retry by itself


def test_ses_refusing_the_message_is_permanent_and_not_the_providers_fault(aws: SesStandIn) -> None:
    result, _, _ = send(ses_transport(aws.url), sender="unverified@example.com")

    assert isinstance(result, transports.Permanent), result
    assert result.code == 400 and "MessageRejected" in result.message and not result.provider_fault
    assert aws.sent() == []


def test_ses_timing_out_after_the_request_is_uncertain_though_ses_has_it(aws: SesStandIn) -> None:
    aws.then("stall_after_accept", hold=5)

    started = time.monotonic()
    result, _, _ = send(ses_transport(aws.url, timeout=0.5))
    aws.release()

    assert isinstance(result, transports.Uncertain), result
    assert time.monotonic() - started < 4
    assert len(aws.sent()) == 1  # it was sent: never to be sent again


def test_ses_unreachable_is_temporary_and_nothing_changed_before_the_request_sends_nothing(aws: SesStandIn) -> None:
    result, _, _ = send(ses_transport(f"http://127.0.0.1:{free_port()}"))
    aborted, asked, _ = send(ses_transport(aws.url), allow=False)

    assert isinstance(result, transports.Transient) and result.provider_fault, result
    assert isinstance(aborted, transports.Aborted) and asked == [True]
    assert aws.sent() == [] and aws.answers == []


# --- SendGrid ----------------------------------------------------------------------------


def test_sendgrid_takes_the_message_as_json_and_gives_its_x_message_id(sg: SendgridStandIn) -> None:
    result, asked, _ = send(sendgrid_transport(sg.url))

    assert isinstance(result, transports.Delivery), result
    [kept] = sg.accepted
    assert result.provider_message_id == kept.message_id and result.reply.startswith("202 ")
    assert kept.body["headers"]["Message-ID"].endswith("@mail.example.com>")
    assert kept.body["custom_args"]["email_id"] in kept.body["headers"]["Message-ID"]
    assert asked == [True]


def test_sendgrid_refusing_the_request_is_permanent_with_its_reason(sg: SendgridStandIn) -> None:
    sg.then("reject", message="The to email does not contain a valid address.", field="personalizations.0.to")

    result, _, _ = send(sendgrid_transport(sg.url))

    assert isinstance(result, transports.Permanent) and not result.provider_fault, result
    assert result.code == 400
    assert result.message == ("SendGrid 400: The to email does not contain a valid address. (personalizations.0.to)")


def test_sendgrid_wrong_key_is_temporary_and_the_providers_fault(sg: SendgridStandIn) -> None:
    result, _, _ = send(sendgrid_transport(sg.url, key="SG.wrong.key"))

    assert isinstance(result, transports.Transient) and result.provider_fault and result.code == 401, result
    assert "SG.wrong.key" not in result.message


@pytest.mark.parametrize(
    ("script", "code", "retry_after"),
    [
        ({"kind": "throttle", "retry_after": 7}, 429, 7.0),
        ({"kind": "throttle"}, 429, "reset"),  # no Retry-After: SendGrid's X-RateLimit-Reset
        ({"kind": "unavailable", "retry_after": 2}, 503, 2.0),
        ({"kind": "unavailable", "status": 500}, 500, None),
    ],
)
def test_sendgrid_throttling_and_5xx_are_temporary_honouring_its_wait(
    sg: SendgridStandIn, script: dict[str, Any], code: int, retry_after: float | str | None
) -> None:
    sg.then(**script)

    result, _, _ = send(sendgrid_transport(sg.url))

    assert isinstance(result, transports.Transient) and result.provider_fault and result.code == code, result
    if retry_after == "reset":
        assert result.retry_after is not None and 0 <= result.retry_after <= 2
    else:
        assert result.retry_after == retry_after
    assert sg.accepted == [] and len(sg.answers) == 1


def test_sendgrid_timing_out_after_the_request_is_uncertain_though_it_has_it(sg: SendgridStandIn) -> None:
    sg.then("stall_after_accept", hold=5)

    result, _, _ = send(sendgrid_transport(sg.url, timeout=0.5))
    sg.release()

    assert isinstance(result, transports.Uncertain), result
    assert len(sg.accepted) == 1


def test_sendgrid_unreachable_is_temporary(sg: SendgridStandIn) -> None:
    result, _, _ = send(sendgrid_transport(f"http://127.0.0.1:{free_port()}"))
    aborted, _, _ = send(sendgrid_transport(sg.url), allow=False)

    assert isinstance(result, transports.Transient) and result.provider_fault, result
    assert isinstance(aborted, transports.Aborted)
    assert sg.answers == []
