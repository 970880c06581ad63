"""The dev mailbox page survives whatever a sender put in a message: one captured message
with a charset Python does not know must not turn ``/devmail/`` into a 500 for everyone
until a hundred newer ones push it out."""

from __future__ import annotations

import pathlib
import smtplib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support import procs
from tests.support.smtp_sink import free_port

#: 8-bit text in a charset no codec knows, in the body and in an encoded-word subject.
UNKNOWN_CHARSET = (
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: =?x-no-such-charset?q?caf=E9?=\r\n"
    b"Message-ID: <charset@test>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=x-no-such-charset\r\nContent-Transfer-Encoding: 8bit\r\n"
    b"\r\nA caf\xe9 in an unknown charset.\r\n"
)


@pytest.fixture
def web_env(web_env: dict[str, str]) -> dict[str, str]:
    """Ada is an operator here, so the dev mailbox page is hers to see."""
    return web_env | {"OPERATOR_EMAILS": "ada@example.com"}


@pytest.fixture
def devmail_port(env: dict[str, str], tmp_path: pathlib.Path) -> Iterator[int]:
    """The real dev mailbox (``python -m tasks devmail``) on a free port, storing into this test's database."""
    port = free_port()
    log = tmp_path / "devmail.log"
    process = procs.Process(
        [sys.executable, "-m", "tasks", "devmail"], env | {"DEVMAIL_ADDR": f"127.0.0.1:{port}"}, log
    )
    try:
        procs.wait_until(lambda: "dev mailbox listening" in log.read_text(), timeout=20, what="the dev mailbox")
        yield port
    finally:
        process.stop()


def test_a_message_in_an_unknown_charset_is_shown_with_replacement_characters(
    client: FlaskClient, sign_in: Callable[..., Any], devmail_port: int, conn: Any
) -> None:
    sign_in(client, "ada@example.com")
    with smtplib.SMTP("127.0.0.1", devmail_port, timeout=10) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], UNKNOWN_CHARSET)
    assert conn.execute("SELECT count(*) AS n FROM devmail_messages").fetchone()["n"] == 1

    response = client.get("/devmail/")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "A caf\N{REPLACEMENT CHARACTER} in an unknown charset." in page
    assert "caf\N{REPLACEMENT CHARACTER}</span>" in page  # the subject, in the summary
