"""The SMTP sink's fault modes, toggled at run time, behave as the scenarios assume."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator

import pytest

from tests.support.smtp_sink import Sink

MESSAGE = "Message-ID: <m1@test>\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def fresh_sink() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


def send(sink: Sink, timeout: float = 5) -> None:
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=timeout) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)


def test_a_stopped_sink_refuses_connections_until_started(fresh_sink: Sink) -> None:
    """stop(): connect is refused; start(): the same port answers again."""
    fresh_sink.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fresh_sink.port), timeout=2)
    assert fresh_sink.refusing
    fresh_sink.start()
    send(fresh_sink)
    assert len(fresh_sink.messages) == 1 and not fresh_sink.refusing


def test_unavailable_answers_421_and_closes_until_cleared(fresh_sink: Sink) -> None:
    """A 421 refuses MAIL and ends the connection; cleared, mail goes through."""
    fresh_sink.unavailable = "421 4.3.2 Service not available"

    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(fresh_sink)
    assert refused.value.smtp_code == 421
    assert fresh_sink.messages == [] and fresh_sink.refused_commands == 1
    fresh_sink.unavailable = None
    send(fresh_sink)
    assert len(fresh_sink.messages) == 1


def test_stall_after_accept_keeps_the_message_and_never_answers(fresh_sink: Sink) -> None:
    """The client times out waiting for the reply to DATA although the sink has the message."""
    fresh_sink.stall_after_accept.set()

    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
        send(fresh_sink, timeout=1)
    assert fresh_sink.by_message_id() == {"<m1@test>": 1}
    assert fresh_sink.stalled == 1


def test_stall_data_drops_the_message(fresh_sink: Sink) -> None:
    """The plain stall: the client times out and the sink keeps nothing."""
    fresh_sink.stall_data.set()

    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError)):
        send(fresh_sink, timeout=1)
    assert fresh_sink.messages == [] and fresh_sink.stalled == 1
