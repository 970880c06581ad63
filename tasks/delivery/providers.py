"""The providers' HTTP APIs as transports: Amazon SES (``ses://REGION``) and SendGrid (``sendgrid://``).

Each is a ``Transport`` like the SMTP one (tasks/delivery/transports.py): it joins
the chain, the circuit breakers, the rate limits and the offline fallback the same
way, and its errors map onto the same classes:

- throttling (429, SES's ``TooManyRequestsException``…) and 5xx are ``Transient`` and
  the provider's fault (its breaker counts them); the next attempt waits at least
  the ``Retry-After`` the provider gave;
- a request refused for its content or its addresses (400, SES's ``MessageRejected``)
  is ``Permanent``; refused credentials or permissions (401, 403) are ``Transient``
  and the provider's fault, as a failed SMTP AUTH is: our account, not the email;
- no connection, or a timeout before the request went out, is ``Transient``; a
  timeout or a lost connection once the request was sent is ``Uncertain`` (the
  provider may have it), never re-sent.

The line SMTP draws at DATA is the request here: ``before_data`` (the limits' last
word, ``data_started_at`` committed) runs just before it. Neither client retries
by itself: a retry is the send task's, with its backoff, its attempts and its
record, and a client's own retry after a timeout could send twice.

SES gets the message as we built it (``Content.Raw``: our Message-ID and headers);
SendGrid's ``mail/send`` takes JSON, so the message is read back into its fields
(``sendgrid_body``), our headers (Message-ID among them) in ``headers``, and our
email's id in ``custom_args`` so that SendGrid's events name it. The provider's id
of the message (SES's ``MessageId``, SendGrid's ``X-Message-Id``) comes back in the
``Delivery``; the send task records it on the email and its timeline.

One client per transport and worker process, made on first use and kept: one
connection pool, sized by ``WORKER_CONCURRENCY``. Nothing here blocks the event
loop (aiobotocore, httpx).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import re
import time
from typing import Any

import aiobotocore.session
import botocore.config
import botocore.exceptions
import botocore.parsers
import httpx

from tasks.delivery.transports import (
    Aborted,
    BeforeData,
    BuildSettings,
    Delivery,
    Permanent,
    SendError,
    Transient,
    Transport,
    TransportSpec,
    Uncertain,
)

#: The longest ``Retry-After`` honoured (a day): beyond it, the usual backoff decides.
RETRY_AFTER_MAX = 86400.0
#: Our all-ASCII messages are read with the ``compat32`` classes, which build no header objects (a few
#: times cheaper); an internationalised one (UTF-8 headers, RFC 6532) with the default policy's.
_fast_parser = email.parser.BytesParser(policy=email.policy.compat32)
_exact_parser = email.parser.BytesParser(policy=email.policy.default)
#: Our Message-ID is ``<EMAIL_ID@MAIL_DOMAIN>`` (tasks/delivery/message.py): its left part is the email's id.
_EMAIL_ID = re.compile(r"<([0-9a-f-]{36})@")


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), else None."""
    raw = headers.get("retry-after") if headers is not None else None
    if not raw:
        return None
    raw = str(raw).strip()
    if raw.isdigit():
        seconds = float(raw)
    else:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def _not_international(sender: str, recipients: list[str], provider: str) -> None:
    """Neither API carries an address whose local part is not ASCII (no SMTPUTF8): refuse at once, nothing sent."""
    if not (sender.isascii() and all(r.isascii() for r in recipients)):
        raise Permanent(f"an internationalised address cannot go through {provider}'s API (no SMTPUTF8)")


# --- Amazon SES (v2 SendEmail, raw content) ---------------------------------------------


#: SES's error codes that are about our account or SES itself, not this message: retry later.
_SES_ACCOUNT = {
    "TooManyRequestsException",
    "LimitExceededException",
    "Throttling",
    "ThrottlingException",
    "SendingPausedException",
    "AccountSuspendedException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "InternalFailure",
    "ServiceUnavailable",
}


class SesTransport:
    """Amazon SES v2 ``SendEmail`` with ``Content.Raw``: the message as we built it, Message-ID included."""

    offline = False

    def __init__(self, spec: TransportSpec, *, name: str, label: str, timeout: float, pool_size: int, endpoint: str):
        self.spec = spec
        self.name = name
        self.label = label
        self.timeout = spec.timeout or timeout
        self.endpoint = endpoint or None
        self.pool_size = pool_size
        self._client: Any = None
        self._context: Any = None
        self._lock = asyncio.Lock()

    async def _sesv2(self) -> Any:
        """The one client of this worker, made on first use (credentials from AWS's own chain)."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    config = botocore.config.Config(
                        connect_timeout=self.timeout,
                        read_timeout=self.timeout,
                        # One try per attempt: the send task retries, and a retry after a timeout could send twice.
                        retries={"total_max_attempts": 1, "mode": "standard"},
                        max_pool_connections=self.pool_size,
                    )
                    session = aiobotocore.session.get_session()
                    context = session.create_client(
                        "sesv2", region_name=self.spec.region, endpoint_url=self.endpoint, config=config
                    )
                    self._client = await context.__aenter__()
                    self._context = context
        return self._client

    async def send(self, *, sender: str, recipients: list[str], message: bytes, before_data: BeforeData) -> Delivery:
        _not_international(sender, recipients, "SES")
        client = await self._sesv2()
        request: dict[str, Any] = {
            "FromEmailAddress": sender,
            # The envelope: every recipient, Bcc included; the headers are the message's own.
            "Destination": {"ToAddresses": recipients},
            "Content": {"Raw": {"Data": message}},
        }
        if self.spec.configuration_set:
            request["ConfigurationSetName"] = self.spec.configuration_set
        if not await before_data({}):
            raise Aborted("the email changed before the request; nothing was sent")
        try:
            answer = await client.send_email(**request)
        except botocore.exceptions.ClientError as exc:
            raise _ses_error(exc) from exc
        except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.EndpointConnectionError) as exc:
            # EndpointConnectionError: no connection (refused, unreachable): nothing went out.
            raise Transient(f"cannot reach {self.name}: {exc}", provider_fault=True) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise Transient(f"{self.name}: no AWS credentials found ({exc})", provider_fault=True) from exc
        except botocore.exceptions.ParamValidationError as exc:
            # Checked by the client before anything is sent: this message cannot go as it is.
            raise Permanent(f"{self.name}: {exc}") from exc
        except (
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.HTTPClientError,
            botocore.parsers.ResponseParserError,
        ) as exc:
            # The request went out and no answer (none that can be read) came back: SES may have the message.
            raise Uncertain(f"no answer from {self.name} once the request was sent: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            # The rest happen before the request (the credentials' chain, the endpoint): nothing went out.
            raise Transient(f"{self.name}: {exc}", provider_fault=True) from exc
        message_id = answer.get("MessageId")
        return Delivery(reply=f"SES accepted it: MessageId {message_id}", refused={}, provider_message_id=message_id)

    async def close(self) -> None:
        context, self._context, self._client = self._context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)


def _ses_error(exc: botocore.exceptions.ClientError) -> SendError:
    """SES's answer as a ``SendError``: its error code first, its HTTP status next."""
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "")
    status = int(meta.get("HTTPStatusCode") or 0)
    text = f"SES {status} {code}: {error.get('Message') or ''}".strip()
    if code in _SES_ACCOUNT or status == 429 or status >= 500 or status in (401, 403):
        return Transient(
            text, code=status or None, provider_fault=True, retry_after=retry_after(meta.get("HTTPHeaders"))
        )
    # MessageRejected, MailFromDomainNotVerified, BadRequest, NotFound (a configuration set): this message.
    return Permanent(text, code=status or None)


# --- SendGrid (v3 mail/send) -------------------------------------------------------------


#: Headers SendGrid sets itself (its ``headers`` refuses them), and the MIME ones it writes.
_SENDGRID_OWN = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}
#: The category every message of ours carries (SendGrid's statistics group by it).
CATEGORY = "reachdbox"


def _text(raw: Any) -> str:
    """A header's value as text: unfolded, its encoded-words (RFC 2047) decoded."""
    unfolded = re.sub(r"\r?\n[ \t]", " ", str(raw))
    if "=?" not in unfolded:
        return unfolded
    return str(email.header.make_header(email.header.decode_header(unfolded)))


def _parties(raw_addresses: list[str], seen: set[str]) -> list[dict[str, str]]:
    """Addresses as SendGrid's ``{"email", "name"}``, each once (``seen``: those already given)."""
    out = []
    for name, address in email.utils.getaddresses([re.sub(r"\r?\n[ \t]", " ", str(a)) for a in raw_addresses]):
        # SendGrid refuses an address twice in one personalization (to, cc and bcc together).
        if address and address.lower() not in seen:
            seen.add(address.lower())
            out.append({"email": address, "name": _text(name)} if name else {"email": address})
    return out


def _content(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "utf-8", errors="replace").replace("\r\n", "\n")


def sendgrid_body(sender: str, recipients: list[str], message: bytes) -> dict[str, Any]:
    """Read our MIME message back into ``mail/send``'s JSON body.

    The From, Reply-To, To and Cc headers are the message's; the envelope's other
    recipients are Bcc. Every other header of ours (Message-ID, Date, List-Unsubscribe…)
    goes in ``headers``, so the message SendGrid writes keeps them.
    """
    parsed = (_fast_parser if message.isascii() else _exact_parser).parsebytes(message)
    seen: set[str] = set()
    to = _parties(parsed.get_all("To", []), seen)
    cc = _parties(parsed.get_all("Cc", []), seen)
    bcc = _parties(recipients, seen)
    if not to:  # a personalization needs a "to": the envelope's first recipient then
        to, bcc = bcc[:1], bcc[1:]
    personalization: dict[str, Any] = {"to": to}
    if cc:
        personalization["cc"] = cc
    if bcc:
        personalization["bcc"] = bcc
    parts = {part.get_content_type(): part for part in parsed.walk() if not part.is_multipart()}
    content = [
        {"type": kind, "value": value}
        for kind in ("text/plain", "text/html")
        if kind in parts and (value := _content(parts[kind]))
    ]
    headers = {key: _text(value) for key, value in parsed.items() if key.lower() not in _SENDGRID_OWN}
    message_id = headers.get("Message-ID", "")
    custom_args = {"message_id": message_id}
    if match := _EMAIL_ID.match(message_id):
        custom_args["email_id"] = match[1]
    [sent_from] = _parties([parsed.get("From", sender)], set())
    body: dict[str, Any] = {
        "personalizations": [personalization],
        "from": sent_from,
        "subject": _text(parsed.get("Subject", "")),
        "content": content,
        "headers": headers,
        "categories": [CATEGORY],
        "custom_args": custom_args,
    }
    if reply_to := parsed.get("Reply-To"):
        [body["reply_to"]] = _parties([reply_to], set())
    return body


class SendgridTransport:
    """SendGrid's v3 ``POST /v3/mail/send``: 202 and ``X-Message-Id`` when it takes the message."""

    offline = False

    def __init__(
        self, spec: TransportSpec, *, name: str, label: str, timeout: float, pool_size: int, base_url: str, api_key: str
    ):
        self.spec = spec
        self.name = name
        self.label = label
        self.timeout = spec.timeout or timeout
        self.base_url = base_url or f"https://{spec.host}"
        self._api_key = api_key
        self.pool_size = pool_size
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=self.pool_size, max_keepalive_connections=self.pool_size),
                follow_redirects=False,
            )
        return self._client

    async def send(self, *, sender: str, recipients: list[str], message: bytes, before_data: BeforeData) -> Delivery:
        _not_international(sender, recipients, "SendGrid")
        body = sendgrid_body(sender, recipients, message)
        client = self._http()
        if not await before_data({}):
            raise Aborted("the email changed before the request; nothing was sent")
        try:
            response = await client.post("/v3/mail/send", json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Transient(f"cannot reach {self.name}: {exc or type(exc).__name__}", provider_fault=True) from exc
        except (httpx.WriteTimeout, httpx.WriteError) as exc:
            # The request did not go out whole: SendGrid cannot have taken it.
            raise Transient(
                f"{self.name}: the request was cut short: {exc or type(exc).__name__}", provider_fault=True
            ) from exc
        except httpx.TransportError as exc:
            # Read timeout, connection lost after the request: SendGrid may have it.
            raise Uncertain(
                f"no answer from {self.name} once the request was sent: {exc or type(exc).__name__}"
            ) from exc
        if response.is_success:  # 202 (200 only in SendGrid's sandbox mode, which we never ask for)
            message_id = response.headers.get("x-message-id")
            return Delivery(
                reply=f"{response.status_code} SendGrid accepted it: X-Message-Id {message_id}",
                refused={},
                provider_message_id=message_id,
            )
        raise _sendgrid_error(response)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _sendgrid_reason(response: httpx.Response) -> str:
    """SendGrid's ``{"errors": [{"message", "field", "help"}]}`` in a line (the message and its field)."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    parts = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and error.get("message"):
            field = f" ({error['field']})" if error.get("field") else ""
            parts.append(f"{error['message']}{field}")
    return "; ".join(parts) or response.reason_phrase


def _sendgrid_error(response: httpx.Response) -> SendError:
    status = response.status_code
    text = f"SendGrid {status}: {_sendgrid_reason(response)}"[:500]
    if status == 429 or status >= 500:
        wait = retry_after(response.headers)
        if wait is None and (reset := response.headers.get("x-ratelimit-reset", "")).isdigit():
            # SendGrid's own rate-limit header: the Unix time its window starts again.
            wait = min(max(int(reset) - time.time(), 0.0), RETRY_AFTER_MAX)
        return Transient(text, code=status, provider_fault=True, retry_after=wait)
    if status in (401, 403):
        # The key is wrong or lacks Mail Send (or the sender is not verified): our account, not this email.
        return Transient(text, code=status, provider_fault=True)
    return Permanent(text, code=status)


def build(spec: TransportSpec, settings: BuildSettings) -> Transport:
    """The API transport a ``ses://`` or ``sendgrid://`` entry names."""
    if spec.scheme == "ses":
        return SesTransport(
            spec,
            name=spec.name,
            label=spec.label,
            timeout=settings.smtp_timeout,
            pool_size=settings.worker_concurrency,
            endpoint=settings.ses_endpoint_url,
        )
    if spec.scheme == "sendgrid":
        return SendgridTransport(
            spec,
            name=spec.name,
            label=spec.label,
            timeout=settings.smtp_timeout,
            pool_size=settings.worker_concurrency,
            base_url=settings.sendgrid_api_url,
            api_key=spec.password or settings.sendgrid_api_key,
        )
    raise ValueError(f"no API transport for {spec.scheme}://")
