"""A real SMTP server (aiosmtpd, in a thread) that records what it receives and
answers as a test scripts it: 4xx/5xx replies, refused connections, stalls.

Fault modes a test toggles at run time, from its own thread, while workers send:

- refused connections: ``stop()`` closes the listener (connect gets ECONNREFUSED) until
  ``start()``; ``refusing`` tells which;
- a provider in trouble: ``unavailable = "421 4.3.2 ..."`` answers MAIL, RCPT and DATA with
  that reply (a 421 also closes the connection, as RFC 5321 says) until set back to None;
- a stall after DATA: ``stall_data`` (the message is dropped) or ``stall_after_accept`` (the
  message is kept, as a provider that took it but whose reply was lost) holds the final reply
  back until the client gives up (or the flag is cleared).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import email.parser
import email.policy
import socket
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller

_headers = email.parser.BytesHeaderParser(policy=email.policy.default)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class Received:
    at: float
    message_id: str | None
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    raw: bytes


class Sink:
    """Record messages; replies come from the scripts, else 250.

    With ``auth=(user, password)`` it requires SMTP AUTH (over plain text: loopback only).
    """

    def __init__(self, port: int | None = None, *, auth: tuple[str, str] | None = None, smtputf8: bool = True):
        self.port = port or free_port()
        self.auth = auth
        #: Whether it offers SMTPUTF8 (internationalised addresses), as most providers do.
        self.smtputf8 = smtputf8
        #: Successful SMTP AUTH logins.
        self.logins = 0
        #: The name each client gave in its HELO/EHLO, per transaction (MAIL FROM).
        self.helo_names: list[str] = []
        self.messages: list[Received] = []
        #: Replies for the next RCPT commands / DATA ends, e.g. "451 4.3.0 busy".
        self.rcpt_replies: collections.deque[str] = collections.deque()
        self.data_replies: collections.deque[str] = collections.deque()
        #: Per-recipient refusals: address -> reply, applied on every attempt.
        self.refuse_rcpt: dict[str, str] = {}
        #: Seconds to wait before answering DATA (to catch emails mid-send).
        self.data_delay = 0.0
        #: While set, DATA is not answered (the client times out); the message is dropped.
        self.stall_data = threading.Event()
        #: While set, DATA is not answered either, but the message is kept first: the
        #: provider has it, the client never hears so.
        self.stall_after_accept = threading.Event()
        #: While not None, the reply to every MAIL, RCPT and DATA (a 421 closes the connection).
        self.unavailable: str | None = None
        #: Commands answered with ``unavailable``, and DATA replies held back by a stall.
        self.refused_commands = 0
        self.stalled = 0
        #: When set, RCPT is never answered: a timeout before DATA.
        self.stall_rcpt = threading.Event()
        self.data_started = threading.Event()
        self._cond = threading.Condition()
        self._controller: Controller | None = None
        self._stall_release: asyncio.Event | None = None

    # aiosmtpd handler hooks -------------------------------------------------
    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.helo_names.append(session.host_name)
        if (refusal := self._unavailable(server)) is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.stall_rcpt.is_set():
            await asyncio.sleep(3600)
        if (refusal := self._unavailable(server)) is not None:
            return refusal
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        if self.rcpt_replies:
            reply = self.rcpt_replies.popleft()
            if not reply.startswith("2"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started.set()
        if (refusal := self._unavailable(server)) is not None:
            return refusal
        if self.stall_after_accept.is_set():
            self._keep(envelope)
            await self._stall(self.stall_after_accept)
            return "250 2.0.0 OK queued"
        if self.stall_data.is_set():
            await self._stall(self.stall_data)
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_replies:
            reply = self.data_replies.popleft()
            if not reply.startswith("2"):
                return reply
        self._keep(envelope)
        return "250 2.0.0 OK queued"

    def _unavailable(self, server: Any) -> str | None:
        reply = self.unavailable
        if reply is None:
            return None
        with self._cond:
            self.refused_commands += 1
        if reply.startswith("421"):
            # Closed after the reply is written (the write is buffered before this runs).
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def _stall(self, flag: threading.Event) -> None:
        """Hold the reply while ``flag`` is set; the client's timeout closes the connection
        (which cancels this)."""
        with self._cond:
            self.stalled += 1
        deadline = time.monotonic() + 3600
        while flag.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _keep(self, envelope: Any) -> None:
        raw = envelope.original_content or b""
        headers = _headers.parsebytes(raw)
        received = Received(
            at=time.time(),
            message_id=headers.get("Message-ID"),
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            subject=str(headers.get("Subject", "")),
            raw=raw,
        )
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    # control ----------------------------------------------------------------
    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(auth_data, LoginPassword) and self.auth == (
            auth_data.login.decode(),
            auth_data.password.decode(),
        )
        if ok:
            self.logins += 1
        return AuthResult(success=ok)

    def start(self) -> Sink:
        extra: dict[str, Any] = {}
        if self.auth is not None:
            extra = {"authenticator": self._authenticate, "auth_require_tls": False}
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="sink.localhost",
            ready_timeout=10,
            enable_SMTPUTF8=self.smtputf8,
            **extra,
        )
        self._controller.start()
        return self

    @property
    def refusing(self) -> bool:
        """Whether connections are refused now (between ``stop`` and ``start``)."""
        return self._controller is None

    def stop(self) -> None:
        """Stop listening: new connections are refused until ``start`` again."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """Wait until at least ``count`` messages have arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"sink got {len(self.messages)} of {count} messages in {timeout}s")
                self._cond.wait(left)
            return list(self.messages)

    def by_message_id(self) -> collections.Counter[str | None]:
        with self._cond:
            return collections.Counter(m.message_id for m in self.messages)
