"""The delivery task: one attempt to deliver one webhook, and what it leads to.

Each attempt is signed per the Standard Webhooks specification with the
``standardwebhooks`` library: ``webhook-id`` (the delivery's, the same on every
attempt, so a receiver can tell a retry), ``webhook-timestamp`` and
``webhook-signature`` (one signature per valid secret, the previous one too for a
day after a rotation). It is sent with httpx: WEBHOOK_TIMEOUT for everything,
redirects not followed (a 3xx is a failure), to the address checked by
``safety.PinnedTransport``. A 2xx delivers it. Anything else is logged (the time,
the status code, the latency, the answer's first 1 KB) and retried with
exponential backoff and jitter for WEBHOOK_RETRY_FOR, then failed; the attempt's
line, the delivery's new state, the next attempt's job and the endpoint's run of
failures are one statement (``webhook_attempted``). An endpoint failing for
WEBHOOK_DISABLE_AFTER is disabled and its owner told by an email sent the
product's own way. Finished deliveries are kept WEBHOOK_LOG_DAYS (``prune_webhooks``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import time
import uuid

import httpx
import structlog
from procrastinate import JobContext
from standardwebhooks.webhooks import Webhook

from tasks.core import crypto, db, errors
from tasks.core.config import Settings
from tasks.delivery import runtime
from tasks.ops import slack
from tasks.queue.app import app
from tasks.webhooks import endpoints, events, safety

log = structlog.get_logger("tasks.webhooks")

#: How much of an answer's body the log keeps.
RESPONSE_KEPT = 1024
USER_AGENT = "ReachDBox-Webhooks/1"


class Sender:
    """What a process needs to send webhooks: one HTTP client (its connections kept) and the keys."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: safety.Resolver = safety.system_resolver,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.box = crypto.Box(settings)
        transport = safety.PinnedTransport(
            resolver=resolver,
            allow_private=settings.webhook_allow_private,
            inner=inner or httpx.AsyncHTTPTransport(retries=0),
        )
        self.client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            timeout=httpx.Timeout(settings.webhook_timeout),
            headers={"user-agent": USER_AGENT},
            trust_env=False,
        )
        self._secrets: dict[str, str] = {}

    def secret(self, token: str) -> str:
        """The secret of a stored token (decrypted once per process)."""
        if token not in self._secrets:
            self._secrets[token] = self.box.decrypt(token.encode("ascii"))
        return self._secrets[token]

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclasses.dataclass(frozen=True)
class Result:
    """An attempt's answer: status code (None: none came), latency, the body's beginning, why not."""

    status_code: int | None
    latency_ms: int
    response: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signature(sender: Sender, row: db.Row, msg_id: str, at: dt.datetime) -> str:
    """The ``webhook-signature`` header: one signature per secret valid now, space-separated."""
    tokens = [row["secret"]] + ([row["previous_secret"]] if row["previous_secret"] else [])
    return " ".join(Webhook(sender.secret(t)).sign(msg_id, at, row["body"]) for t in tokens)


async def post(sender: Sender, row: db.Row) -> Result:
    """Send one attempt; never raises for what the endpoint or the network did."""
    msg_id = endpoints.message_id(row["id"])
    at = dt.datetime.now(dt.UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature(sender, row, msg_id, at),
    }
    started = time.perf_counter()
    status: int | None = None
    body = b""
    error: str | None = None
    try:
        async with sender.client.stream("POST", row["url"], content=row["body"].encode(), headers=headers) as answer:
            status = answer.status_code
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) >= RESPONSE_KEPT:
                    break
        if 300 <= status < 400:
            error = f"redirected ({status}) to {answer.headers.get('location', '?')[:200]}: not followed"
        elif not 200 <= status < 300:
            error = f"answered {status}"
    except safety.Refused as exc:
        error = f"refused: {exc}"
    except httpx.TimeoutException:
        error = f"no answer within {sender.settings.webhook_timeout:g} s"
    except (httpx.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    latency = round((time.perf_counter() - started) * 1000)
    # As text PostgreSQL can hold: invalid UTF-8 and NUL replaced, at most RESPONSE_KEPT bytes.
    text = body[:RESPONSE_KEPT].decode("utf-8", "replace").replace("\x00", "\ufffd")
    while len(text.encode()) > RESPONSE_KEPT:
        text = text[:-1]
    return Result(status, latency, text, error.replace("\x00", "\ufffd")[:500] if error else None)


def backoff(attempts: int, settings: Settings) -> float:
    """The wait before the next attempt: exponential, capped, half of it random ("equal jitter")."""
    delay = min(settings.webhook_retry_max, settings.webhook_retry_base * 2.0 ** max(attempts - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)


async def attempt(
    pool: db.AsyncPool, sender: Sender, delivery_id: str, job_id: int | None, ended: set[int] | None = None
) -> str:
    """Make one attempt at a delivery for its job ``job_id``; what happened (a word).

    The statement that records the attempt also ends the job when it is running; its id
    then goes in ``ended`` (the worker skips Procrastinate's own finish for it).
    """
    settings = sender.settings
    async with pool.connection() as conn:
        row = await db.one_async(conn, "webhook_delivery_to_send", id=delivery_id)
    if row is None or row["status"] != "pending" or row["job_id"] != job_id:
        return "obsolete"
    if not row["enabled"] and row["event_type"] != events.TEST:
        async with pool.connection() as conn:
            await db.run_async(conn, "webhook_delivery_give_up", org_id=row["org_id"], id=row["id"], job_id=job_id)
        return "endpoint disabled"
    result = await post(sender, row)
    now = dt.datetime.now(dt.UTC)
    if result.ok:
        status, next_at = "delivered", None
    elif now - row["retrying_since"] >= dt.timedelta(seconds=settings.webhook_retry_for):
        status, next_at = "failed", None
    else:
        status, next_at = "pending", now + dt.timedelta(seconds=backoff(row["attempts"] + 1, settings))
    async with pool.connection() as conn:
        done = await db.one_async(
            conn, "webhook_attempted", org_id=row["org_id"], id=row["id"], endpoint_id=row["endpoint_id"],
            job_id=job_id, status=status, next_at=next_at, ok=result.ok, status_code=result.status_code,
            latency_ms=result.latency_ms, response=result.response, error=result.error,
            disable_after=dt.timedelta(seconds=settings.webhook_disable_after),
            counts=row["event_type"] != events.TEST,
        )  # fmt: skip
    if ended is not None and job_id is not None:
        ended.add(job_id)
    log.info(
        "webhook attempt",
        delivery_id=str(row["id"]),
        endpoint_id=str(row["endpoint_id"]),
        event_type=row["event_type"],
        attempt=row["attempts"] + 1,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error,
        outcome=status,
    )
    if done is not None and done["disabled"]:
        log.warning("webhook endpoint disabled", endpoint_id=str(row["endpoint_id"]), org_id=row["org_id"])
        await asyncio.to_thread(tell_owner, settings, row)
    return status


def tell_owner(settings: Settings, row: db.Row) -> None:
    """Tell the endpoint's creator that it was disabled: an email through the product's own
    pipeline, and the organization's Slack channel when it has one (its settings page)."""
    from tasks.domain import emails, validation  # the domain imports the queue: not at import time
    from tasks.domain.models import User

    with db.connect(settings.database_url) as conn:
        _tell_slack(conn, settings, row)
        if row["created_by"] is None:
            return
        user_row = db.one(conn, "get_user", id=row["created_by"])
        if user_row is None:
            return
        owner = User.from_row(user_row)
        draft = validation.validate(
            to=[owner.email],
            subject="A webhook endpoint was disabled",
            body_text=(
                f"Deliveries to your webhook endpoint {row['url']} have failed for "
                f"{settings.webhook_disable_after / 86400:g} days without a success, so it was disabled.\n\n"
                "Enable it again on the Webhooks page once it answers; its delivery log says what it answered."
            ),
            send_now=True,
            idempotency_key=f"webhook-disabled-{row['endpoint_id']}-{uuid.uuid4().hex[:8]}",
        )
        emails.schedule(conn, owner=owner, draft=draft, settings=settings, org_id=row["org_id"])


def _tell_slack(conn: db.Conn, settings: Settings, row: db.Row) -> None:
    hook = db.one(conn, "org_slack_secret", org_id=row["org_id"])
    if hook is None:
        return
    try:
        url = crypto.Box(settings).decrypt(hook["slack_webhook_secret"].encode("ascii"))
        slack.post(
            url,
            f":warning: Webhook endpoint {row['url']} was disabled: its deliveries failed for"
            f" {settings.webhook_disable_after / 86400:g} days without a success. Enable it again on the"
            " Webhooks page once it answers; its delivery log says what it answered.",
        )
    except errors.ReachError as exc:  # SlackError too: the email still goes; Slack is best effort
        log.warning("webhook endpoint disabled: Slack not told", org_id=row["org_id"], error=str(exc))


def sender_of(rt: runtime.Runtime) -> Sender:
    """The worker's sender, made on first use and closed with its runtime."""
    if rt.webhooks is None:
        rt.webhooks = Sender(rt.settings)
    sender: Sender = rt.webhooks
    return sender


#: Deliveries deleted per statement, so a large prune never holds long locks.
PRUNE_BATCH = 5000


async def prune(pool: db.AsyncPool, days: int) -> int:
    """Delete finished deliveries (and their attempts) older than ``days``; how many."""
    before = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    deleted = 0
    async with pool.connection() as conn:
        while True:
            row = await db.one_async(conn, "prune_webhook_deliveries", before=before, batch=PRUNE_BATCH)
            n = int(row["n"]) if row else 0
            deleted += n
            if n < PRUNE_BATCH:
                return deleted


@app.periodic(cron="41 * * * *", periodic_id="prune_webhooks")
@app.task(name="prune_webhooks", queue="maintenance", queueing_lock="prune_webhooks", priority=50, pass_context=True)
async def prune_webhooks(context: JobContext, timestamp: int) -> int:
    """Delete the finished deliveries older than WEBHOOK_LOG_DAYS (every hour, on one worker)."""
    rt = runtime.of(context)
    return await prune(rt.pool, rt.settings.webhook_log_days)


@app.task(name=events.TASK, queue=events.QUEUE, pass_context=True)
async def deliver_webhook(context: JobContext, delivery_id: str) -> str:
    """Make one attempt at a webhook delivery, if this job is still the one responsible for it."""
    rt = runtime.of(context)
    job_id = context.job.id
    return await attempt(rt.pool, sender_of(rt), delivery_id, job_id, rt.ended_jobs)
