"""A lean SMTP sink for benchmarks: answers 250 to everything, records receive time and Message-ID.

aiosmtpd is the right server for tests (it checks the protocol); for a benchmark
its per-command cost would be measured instead of ours, so this sink does
only what a benchmark needs. Several
processes can share one port (SO_REUSEPORT); each appends
``<receive time> <Message-ID>`` lines to its own file, flushed every 20 ms.

``python -m bench.sink --port P --out DIR [--procs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pathlib
import re
import signal
import socket
import time

_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(<[^>\r\n]*>)")
_EHLO = b"250-sink.localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 33554432\r\n"
_END = b"\r\n.\r\n"


class SmtpSink(asyncio.Protocol):
    """One SMTP connection: commands line by line, then DATA until ``<CRLF>.<CRLF>``."""

    def __init__(self, records: list[bytes]):
        self.records = records
        self.buffer = bytearray()
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink.localhost ESMTP bench sink\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        assert self.transport is not None
        while True:
            if self.in_data:
                end = self.buffer.find(_END)
                if end < 0:
                    return
                message = bytes(self.buffer[: end + 2])
                del self.buffer[: end + len(_END)]
                self.in_data = False
                match = _MESSAGE_ID.search(message, 0, message.find(b"\r\n\r\n") + 2 or len(message))
                self.records.append(b"%.6f %s\n" % (time.time(), match[1] if match else b"-"))
                self.transport.write(b"250 2.0.0 OK queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(_EHLO)
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 Bye\r\n")
                self.transport.close()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.transport.write(b"250 OK\r\n")


async def _serve(port: int, out: pathlib.Path) -> None:
    records: list[bytes] = []
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    server = await loop.create_server(lambda: SmtpSink(records), sock=sock)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    with open(out, "ab", buffering=0) as f:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.02)
            except TimeoutError:
                pass
            if records:
                batch, records[:] = b"".join(records), []
                f.write(batch)
        server.close()
        if records:
            f.write(b"".join(records))


def serve(port: int, out: pathlib.Path) -> None:
    """Run one sink process until SIGTERM."""
    asyncio.run(_serve(port, out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="directory for the received-*.log files")
    parser.add_argument("--procs", type=int, default=1)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    children = [
        multiprocessing.Process(target=serve, args=(args.port, args.out / f"received-{i}.log"), daemon=True)
        for i in range(args.procs)
    ]
    for child in children:
        child.start()

    def stop_children(*_: object) -> None:
        for c in children:
            if c.pid:
                os.kill(c.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_children)
    for child in children:
        child.join()


def read(out: pathlib.Path) -> list[tuple[float, str]]:
    """Return every ``(receive time, Message-ID)`` recorded so far, oldest first."""
    rows: list[tuple[float, str]] = []
    for path in out.glob("received-*.log"):
        for line in path.read_bytes().splitlines():
            at, _, message_id = line.partition(b" ")
            rows.append((float(at), message_id.decode()))
    rows.sort()
    return rows


def count(out: pathlib.Path) -> int:
    """Count the messages received so far (cheap: newlines)."""
    return sum(path.read_bytes().count(b"\n") for path in out.glob("received-*.log"))


if __name__ == "__main__":
    main()
