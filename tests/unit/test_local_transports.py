"""console:// and jsonl:// (the offline log), on a real file system."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import stat

import pytest

from tasks.delivery import transports
from tasks.delivery.transports import ConsoleTransport, JsonlTransport

MESSAGE = (
    b"From: Reach <noreply@example.com>\r\nTo: bob@example.com\r\nSubject: Caf\xc3\xa9\r\n"
    b"Message-ID: <1@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe secret body\r\n"
)


async def allow(refused: dict[str, str]) -> bool:
    return True


async def deny(refused: dict[str, str]) -> bool:
    return False


def send(transport: transports.Transport, before_data: transports.BeforeData = allow) -> transports.Delivery:
    return asyncio.run(
        transport.send(
            sender="noreply@example.com", recipients=["bob@example.com"], message=MESSAGE, before_data=before_data
        )
    )


def test_the_offline_log_appends_the_whole_message_as_one_json_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "offline.jsonl"
    log = JsonlTransport(path=str(path), name=f"jsonl://{path}", label="jsonl")

    first, second = send(log), send(log)

    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    assert len(lines) == 2 and first.reply == second.reply == f"logged offline to {path}"
    assert record["message"].encode("utf-8") == MESSAGE
    assert (record["message_id"], record["sender"], record["recipients"]) == (
        "<1@example.com>",
        "noreply@example.com",
        ["bob@example.com"],
    )
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds bodies


def test_the_offline_log_writes_nothing_when_the_email_changed_before_data(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "offline.jsonl"

    with pytest.raises(transports.Aborted):
        send(JsonlTransport(path=str(path), name="jsonl", label="jsonl"), before_data=deny)

    assert not path.exists()


def test_an_unwritable_offline_log_is_a_temporary_error(tmp_path: pathlib.Path) -> None:
    """Nothing was delivered anywhere: the email retries later (with backoff)."""
    log = JsonlTransport(path=str(tmp_path / "missing-dir" / "offline.jsonl"), name="jsonl", label="jsonl")

    with pytest.raises(transports.Transient) as info:
        send(log)

    assert "cannot write the offline log" in info.value.message


def test_the_console_prints_headers_and_body_size_never_the_body(capsys: pytest.CaptureFixture[str]) -> None:
    delivery = send(ConsoleTransport(name="console://", label="console"))

    printed = capsys.readouterr().out
    assert delivery.reply == "250 printed to the console"
    assert "Subject: Café" in printed and "Envelope-To: bob@example.com" in printed
    assert "(body: 17 bytes, not shown)" in printed
    assert "secret body" not in printed
