"""Measure an SMTP sink alone: how many messages/s it takes from reused connections.

The benchmark must measure the workers, not the sink; the harness prints this
figure next to the throughput so the reader can check the sink had headroom.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import aiosmtplib

MESSAGE = (
    b"From: bench@example.com\r\nTo: rcpt@example.com\r\nSubject: load\r\n"
    b"Message-ID: <%d.%d@load.example.com>\r\n\r\n" + b"x" * 400 + b"\r\n"
)


async def _client(port: int, n: int, worker: int) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    await smtp.connect()
    for i in range(n):
        await smtp.sendmail("bench@example.com", ["rcpt@example.com"], MESSAGE % (worker, i))
    await smtp.quit()


def _process(port: int, n: int, connections: int, index: int) -> None:
    async def run() -> None:
        await asyncio.gather(*(_client(port, n, index * 1000 + c) for c in range(connections)))

    asyncio.run(run())


def measure(port: int, *, messages: int = 4000, procs: int = 2, connections: int = 5) -> float:
    """Send ``messages`` from ``procs`` processes with reused connections; return messages/s."""
    per = max(1, messages // (procs * connections))
    children = [multiprocessing.Process(target=_process, args=(port, per, connections, i)) for i in range(procs)]
    started = time.perf_counter()
    for child in children:
        child.start()
    for child in children:
        child.join()
    return per * procs * connections / (time.perf_counter() - started)
