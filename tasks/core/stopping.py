"""SIGINT and SIGTERM for the long-running commands (worker, dev mailbox), at any moment.

The first signal asks for a graceful stop, whatever the process is doing: connecting,
waiting for its database, running jobs. A second one stops it at once
(``KeyboardInterrupt``, which ``python -m tasks`` turns into a quiet exit).

One handler for the whole run, installed first: a Ctrl-C in the terminal reaches
every process of the group (``make run`` included), often while they still start.
asyncio's default handler cancels the main task then, which tears the start down
half-way (and a cancellation that lands as ``asyncio.wait_for`` finishes is lost on
Python 3.11, leaving a process that ignored its Ctrl-C); Procrastinate's handlers
cover only the time its worker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """A stop was requested before the awaited step finished (it was cancelled)."""


class StopSignals:
    """Turn SIGINT/SIGTERM into a stop request while the ``with`` block runs (main thread only)."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._callbacks: list[Callable[[], None]] = []
        self._signals = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        # signal.signal rather than loop.add_signal_handler: Procrastinate, when told to
        # install its own, saves and puts back the Python-level handler.
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            raise KeyboardInterrupt  # asked twice: stop now
        # Signal handlers run between two bytecodes, maybe inside the loop's own code:
        # act from a callback of the loop.
        self._loop.call_soon_threadsafe(self._request)

    def _request(self) -> None:
        self.requested.set()
        for callback in self._callbacks:
            callback()

    @contextlib.contextmanager
    def on_stop(self, callback: Callable[[], None]) -> Iterator[None]:
        """Call ``callback`` when a stop is requested inside the block (not if it already was)."""
        self._callbacks.append(callback)
        try:
            yield
        finally:
            self._callbacks.remove(callback)

    async def until(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless a stop is requested first: then cancel it and raise ``Stopped``."""
        task = asyncio.ensure_future(awaitable)
        waiter = asyncio.ensure_future(self.requested.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # let it clean up; its outcome is not wanted
                if not task.cancelled():
                    with contextlib.suppress(BaseException):
                        task.result()
        if task.cancelled():
            raise Stopped
        return task.result()
