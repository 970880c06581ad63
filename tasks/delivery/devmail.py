"""The built-in dev mailbox: an SMTP sink that keeps what it receives in PostgreSQL.

``python -m tasks devmail`` listens on DEVMAIL_ADDR; the ``devmail://`` transport
sends there, and the dashboard's dev mailbox page shows the captured mail. Each
new message prunes all but the newest ``DEVMAIL_KEEP``.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from tasks.core import db, stopping
from tasks.core.config import Settings

log = structlog.get_logger("tasks.delivery.devmail")

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_headers = email.parser.BytesHeaderParser(policy=email.policy.default)


class Mailbox:
    """aiosmtpd handler: store each message, prune past ``keep``, answer 250 with its mailbox id."""

    def __init__(self, pool: db.AsyncPool, *, keep: int = 500):
        self.pool = pool
        self.keep = keep

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        headers = _headers.parsebytes(raw)
        async with self.pool.connection() as conn:
            row = await db.one_async(
                conn,
                "insert_devmail",
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                message_id=headers.get("Message-ID"),
                subject=str(headers.get("Subject", "")),
                raw=raw,
            )
            await db.run_async(conn, "prune_devmail", keep=self.keep)
        assert row is not None
        return f"250 OK stored as devmail-{row['id']}"


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Listen on DEVMAIL_ADDR until SIGTERM/SIGINT (from the very start: it may come while connecting)."""
    with stopping.StopSignals() as stop:
        pool = db.async_pool(settings.database_url, size=4, name="reachdbox-devmail")
        server: asyncio.Server | None = None
        try:
            await stop.until(pool.open(wait=True, timeout=30))
            mailbox = Mailbox(pool, keep=settings.devmail_keep)
            server = await asyncio.get_running_loop().create_server(
                lambda: SMTP(
                    mailbox,
                    hostname="devmail.localhost",
                    data_size_limit=MAX_MESSAGE_BYTES,
                    enable_SMTPUTF8=True,
                ),
                host=settings.devmail_host,
                port=settings.devmail_port,
            )
            log.info("dev mailbox listening", addr=f"{settings.devmail_host}:{settings.devmail_port}")
            if ready is not None:
                ready.set()
            await stop.requested.wait()
        except stopping.Stopped:
            pass
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()
            await pool.close()
