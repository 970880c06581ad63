"""The name the worker's SMTP transports greet a server with (EHLO): receiving servers and
spam filters judge a sender by it, so it is the host's fully qualified name, or SMTP_HELO_NAME."""

from __future__ import annotations

import asyncio

import pytest

from tasks.core import config, errors
from tasks.delivery import transports
from tests.support.smtp_sink import Sink

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <1@example.com>\r\n\r\nhi\r\n"


async def allow(refused: dict[str, str]) -> bool:
    return True


def send_once(env: dict[str, str]) -> None:
    settings = config.load(env)
    [transport] = [transports.build(spec, settings) for spec in settings.mail_transports]

    async def go() -> None:
        try:
            await transport.send(
                sender="a@example.com", recipients=["b@example.com"], message=MESSAGE, before_data=allow
            )
        finally:
            await transport.close()

    asyncio.run(go())


def test_smtp_helo_name_is_what_the_server_sees(env: dict[str, str], sink: Sink) -> None:
    send_once(env | {"SMTP_HELO_NAME": "mta.reachdbox.example"})

    assert sink.helo_names == ["mta.reachdbox.example"]


def test_without_it_the_greeting_is_the_hosts_name_not_localhost(env: dict[str, str], sink: Sink) -> None:
    """Python's socket.getfqdn() (the SMTP client's default) says ``localhost`` on hosts whose
    /etc/hosts maps their own name to 127.0.0.1, as Debian and containers do."""
    send_once(env)

    assert sink.helo_names == [transports.host_name()]
    assert sink.helo_names[0] not in ("localhost", "localhost.localdomain")


@pytest.mark.parametrize(
    ("hostname", "resolved", "expected"),
    [
        ("vm", ["vm", "localhost"], "vm"),  # /etc/hosts: 127.0.0.1 localhost vm
        ("mail", ["mail.example.com", "mail"], "mail.example.com"),
        ("web-1.example.net", ["localhost"], "web-1.example.net"),
        ("box", ["localhost.localdomain", "127.0.0.1", "box.lan"], "box.lan"),
        ("localhost", ["localhost"], "localhost"),  # nothing better: SMTP_HELO_NAME is the way
    ],
)
def test_the_host_name_is_the_first_qualified_one_that_is_not_localhost(
    hostname: str, resolved: list[str], expected: str
) -> None:
    assert transports.choose_host_name(hostname, resolved) == expected


@pytest.mark.parametrize(
    "value", ["not a name", "mail.example.com\r\nRSET", "[300.1.2.3]", "[::1]", "-bad-.example.com"]
)
def test_a_helo_name_that_is_no_domain_or_address_literal_is_refused(value: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.load({"SMTP_HELO_NAME": value})

    assert info.value.field == "SMTP_HELO_NAME"


@pytest.mark.parametrize("value", ["[192.0.2.25]", "[IPv6:2001:db8::25]"])
def test_an_address_literal_is_a_valid_helo_name(value: str) -> None:
    assert config.load({"SMTP_HELO_NAME": value}).smtp_helo_name == value
