"""Mail transports: what ``MAIL_TRANSPORTS`` names, where a worker hands a message over, and what the reply means.

``parse_transports`` reads the setting's URLs into ``TransportSpec`` entries
(``tasks.core.config`` calls it when it loads the settings); ``build`` makes
each entry a transport: SMTP, the console, the offline log (``jsonl://``), or a
provider's HTTP API (``ses://``, ``sendgrid://``: tasks/delivery/providers.py).

A transport either returns a ``Delivery`` or raises one of the ``SendError``
kinds below; the send task turns those into the email's next status. The line
that matters is DATA: before it nothing can have been delivered (retry freely),
after it a lost reply leaves the outcome unknown (``Uncertain``, never re-sent).
For an HTTP API the line is the request: ``before_data`` is called just before it.

Which transport is used, and when one is skipped, is ``tasks.delivery.mailer``'s business:
each error says whether it is the provider's fault (``provider_fault``), which is
what its circuit breaker counts.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import email.parser
import email.policy
import functools
import json
import os
import re
import socket
import sys
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiosmtplib

from tasks.core import errors

#: The schemes ``MAIL_TRANSPORTS`` accepts. ``jsonl://`` is the offline log: it may
#: only end the chain, since the mailer uses it only when every transport before
#: it is unavailable (tasks/delivery/mailer.py).
TRANSPORT_SCHEMES = ("smtp", "smtps", "devmail", "console", "jsonl", "ses", "sendgrid")
#: The providers' HTTP APIs (tasks/delivery/providers.py).
API_SCHEMES = ("ses", "sendgrid")
#: SendGrid's API host when ``sendgrid://`` names none (``api.eu.sendgrid.com`` for EU subusers).
SENDGRID_HOST = "api.sendgrid.com"
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
_CONFIGURATION_SET = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SETTING = "MAIL_TRANSPORTS"
_LABELLED = re.compile(r"([a-z][a-z0-9_-]{0,30})=([a-z]+://.*)")
#: Hosts a password may reach over plain ``smtp://`` (it never leaves the machine).
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_TRUE = ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransportSpec:
    """One entry of ``MAIL_TRANSPORTS``, parsed; ``repr`` never shows the password."""

    scheme: str
    #: Short name for rate limits, breakers and metrics: ``primary=smtp://…`` in
    #: MAIL_TRANSPORTS, else the scheme (``smtp``, then ``smtp-2`` for a second one).
    label: str = ""
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    starttls: bool = False
    #: Per-transport SMTP timeout override (seconds), ``?timeout=``.
    timeout: float | None = None
    #: The file of ``jsonl:///path`` (an absolute path).
    path: str = ""
    #: The AWS region of ``ses://REGION``.
    region: str = ""
    #: SES's configuration set (``?configuration_set=``): where its event destinations are defined.
    configuration_set: str = ""

    @property
    def offline(self) -> bool:
        """Tell whether this is the offline log (used only when every real transport is down)."""
        return self.scheme == "jsonl"

    @property
    def name(self) -> str:
        """Name the transport in logs, events and metrics (no credentials)."""
        if self.scheme in ("devmail", "console"):
            return f"{self.scheme}://"
        if self.scheme == "jsonl":
            return f"jsonl://{self.path}"
        if self.scheme == "ses":
            return f"ses://{self.region}"
        if self.scheme == "sendgrid":
            return f"sendgrid://{self.host}"
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


def parse_transports(raw: str) -> tuple[TransportSpec, ...]:
    """Parse MAIL_TRANSPORTS: space-separated ``[label=]URL`` entries, tried in order."""
    specs: list[TransportSpec] = []
    for entry in raw.split():
        label, url = "", entry
        if match := _LABELLED.fullmatch(entry):
            label, url = match[1], match[2]
        spec = parse_transport(url)
        if not label:
            label = spec.scheme
            taken = {s.label for s in specs}
            n = 2
            while label in taken:
                label, n = f"{spec.scheme}-{n}", n + 1
        if label in {s.label for s in specs}:
            raise errors.ConfigError(_SETTING, f"the label {label!r} is used twice")
        specs.append(dataclasses.replace(spec, label=label))
    if not specs:
        raise errors.ConfigError(_SETTING, "needs at least one transport")
    if any(spec.offline for spec in specs[:-1]):
        raise errors.ConfigError(_SETTING, "jsonl:// (the offline log) can only be the last transport")
    return tuple(specs)


def parse_transport(raw: str) -> TransportSpec:
    """Parse one transport URL such as ``smtp://user:pass@host:587?starttls=1``."""
    parsed = urllib.parse.urlsplit(raw)
    scheme = parsed.scheme
    if scheme not in TRANSPORT_SCHEMES:
        raise errors.ConfigError(
            _SETTING,
            f"unknown transport {scheme + '://' if scheme else raw!r}; "
            f"use one of {', '.join(s + '://' for s in TRANSPORT_SCHEMES)}",
        )
    if scheme in ("devmail", "console"):
        if parsed.netloc or parsed.path or parsed.query:
            raise errors.ConfigError(_SETTING, f"{scheme}:// takes no host, path or options")
        return TransportSpec(scheme=scheme, label=scheme)
    if scheme == "jsonl":
        if parsed.netloc or not parsed.path.startswith("/") or parsed.path.endswith("/") or parsed.query:
            raise errors.ConfigError(
                _SETTING,
                f"jsonl:// needs an absolute file path, e.g. jsonl:///var/lib/reachdbox/offline.jsonl; got {raw!r}",
            )
        return TransportSpec(scheme=scheme, label=scheme, path=urllib.parse.unquote(parsed.path))
    if scheme == "ses":
        return _parse_ses(raw, parsed)
    if scheme == "sendgrid":
        return _parse_sendgrid(parsed)
    if not parsed.hostname:
        raise errors.ConfigError(_SETTING, f"{scheme}:// needs a host")
    try:
        port = parsed.port or (465 if scheme == "smtps" else 25)
    except ValueError:
        raise errors.ConfigError(_SETTING, f"{scheme}:// has an invalid port") from None
    query = dict(urllib.parse.parse_qsl(parsed.query))
    unknown = set(query) - {"starttls", "timeout"}
    if unknown:
        raise errors.ConfigError(_SETTING, f"unknown option(s) {', '.join(sorted(unknown))}")
    starttls = query.get("starttls", "0").lower() in _TRUE
    if starttls and scheme == "smtps":
        raise errors.ConfigError(_SETTING, "smtps:// is already TLS; drop ?starttls")
    timeout = _timeout(query["timeout"]) if "timeout" in query else None
    if parsed.password and scheme == "smtp" and not starttls and parsed.hostname not in _LOOPBACK:
        raise errors.ConfigError(
            _SETTING,
            f"smtp://{parsed.hostname} would send the password in clear text; add ?starttls=1 or use smtps://",
        )
    return TransportSpec(
        scheme=scheme,
        label=scheme,
        host=parsed.hostname,
        port=port,
        username=urllib.parse.unquote(parsed.username) if parsed.username else None,
        password=urllib.parse.unquote(parsed.password) if parsed.password else None,
        starttls=starttls,
        timeout=timeout,
    )


def _api_options(parsed: urllib.parse.SplitResult, allowed: set[str]) -> dict[str, str]:
    query = dict(urllib.parse.parse_qsl(parsed.query))
    unknown = set(query) - allowed
    if unknown:
        raise errors.ConfigError(_SETTING, f"unknown option(s) {', '.join(sorted(unknown))}")
    return query


def _parse_ses(raw: str, parsed: urllib.parse.SplitResult) -> TransportSpec:
    """``ses://REGION[?configuration_set=NAME&timeout=S]``: credentials come from AWS's own chain, never the URL."""
    if "@" in parsed.netloc:
        raise errors.ConfigError(
            _SETTING,
            "ses:// takes no credentials: they come from the AWS chain (AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the instance's role)",
        )
    region = parsed.netloc
    if not _REGION.fullmatch(region) or parsed.path not in ("", "/"):
        raise errors.ConfigError(_SETTING, f"ses:// needs an AWS region, e.g. ses://eu-west-1; got {raw!r}")
    query = _api_options(parsed, {"configuration_set", "timeout"})
    configuration_set = query.get("configuration_set", "")
    if configuration_set and not _CONFIGURATION_SET.fullmatch(configuration_set):
        raise errors.ConfigError(
            _SETTING, f"?configuration_set= is not an SES configuration set name: {configuration_set!r}"
        )
    return TransportSpec(
        scheme="ses",
        label="ses",
        region=region,
        configuration_set=configuration_set,
        timeout=_timeout(query["timeout"]) if "timeout" in query else None,
    )


def _parse_sendgrid(parsed: urllib.parse.SplitResult) -> TransportSpec:
    """``sendgrid://[API_KEY@][HOST][?timeout=S]``: the key from the URL, else SENDGRID_API_KEY."""
    if parsed.path not in ("", "/"):
        raise errors.ConfigError(_SETTING, "sendgrid:// takes no path")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if port is not None:
        raise errors.ConfigError(_SETTING, "sendgrid:// takes no port (the API is HTTPS on 443)")
    host = parsed.hostname or SENDGRID_HOST
    if not host.endswith(".sendgrid.com"):
        raise errors.ConfigError(_SETTING, f"sendgrid://{host} is not a SendGrid API host (api.sendgrid.com)")
    # The key alone (``sendgrid://SG.xxx@``), or as the password as in SendGrid's SMTP form (``apikey:SG.xxx@``).
    key = parsed.password or parsed.username
    query = _api_options(parsed, {"timeout"})
    return TransportSpec(
        scheme="sendgrid",
        label="sendgrid",
        host=host,
        port=443,
        password=urllib.parse.unquote(key) if key else None,
        timeout=_timeout(query["timeout"]) if "timeout" in query else None,
    )


def _timeout(raw: str) -> float:
    """Read ``?timeout=SECONDS`` (the bounds of SMTP_TIMEOUT)."""
    try:
        value = float(raw)
    except ValueError:
        raise errors.ConfigError(_SETTING, f"?timeout= must be a number of seconds, got {raw!r}") from None
    if not 0.1 <= value <= 600:
        raise errors.ConfigError(_SETTING, f"?timeout= must be between 0.1 and 600 seconds, got {value}")
    return value


#: Called with the individually refused recipients once every RCPT is answered;
#: returns False if the email may no longer be sent (nothing is sent then).
BeforeData = Callable[[dict[str, str]], Awaitable[bool]]


class SendError(Exception):
    """The transport did not deliver the email."""

    #: Whether the provider itself is in trouble (what a circuit breaker counts),
    #: as opposed to a reply about this one message.
    provider_fault = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        refused: dict[str, str] | None = None,
        provider_fault: bool | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.refused = refused or {}
        #: Seconds the provider asked us to wait (an HTTP API's ``Retry-After``): the next attempt waits at least that.
        self.retry_after = retry_after
        if provider_fault is not None:
            self.provider_fault = provider_fault


class Transient(SendError):
    """Not delivered, and safe to try again later (4xx, refused connection, timeout before DATA).

    Connection failures, timeouts, 421 ("closing the channel") and refusals before
    RCPT are the provider's fault; a 4xx about one recipient or one message (451
    greylisting, 452 mailbox full) is not.
    """


class Permanent(SendError):
    """Refused for good (5xx): retrying would not help."""


class Uncertain(SendError):
    """The connection failed after DATA began: the provider may or may not have the email."""

    provider_fault = True


class Aborted(SendError):
    """The email changed (cancelled, recovered elsewhere) before DATA: nothing was sent."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Delivery:
    reply: str
    refused: dict[str, str]
    #: The provider's own id of the message (SES's MessageId, SendGrid's X-Message-Id), when it gives one.
    provider_message_id: str | None = None


class Transport(Protocol):
    #: Display name for events and logs (``smtp://user@host:587``, never a password).
    name: str
    #: Short key for rate limits, breakers and metrics (see ``TransportSpec.label``).
    label: str
    #: True for the offline log: used only when every real transport is down.
    offline: bool

    async def send(self, *, sender: str, recipients: list[str], message: bytes, before_data: BeforeData) -> Delivery:
        """Deliver one message, or raise a ``SendError``."""
        ...

    async def close(self) -> None:
        """Release every connection."""
        ...


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


#: "Service not available, closing transmission channel" (RFC 5321): the server, not the message.
_SERVICE_UNAVAILABLE = 421


def _by_code(
    exc: aiosmtplib.SMTPResponseException,
    context: str,
    refused: dict[str, str] | None = None,
    *,
    provider_fault: bool = False,
) -> SendError:
    if 400 <= exc.code < 500:
        fault = provider_fault or exc.code == _SERVICE_UNAVAILABLE
        return Transient(f"{context}: {_reply(exc)}", code=exc.code, refused=refused, provider_fault=fault)
    return Permanent(f"{context}: {_reply(exc)}", code=exc.code, refused=refused)


_CONNECTION_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError)


class SmtpTransport:
    """SMTP (plain, STARTTLS or implicit TLS) with reused connections, one transaction per connection at a time."""

    offline = False

    def __init__(self, spec: TransportSpec, *, name: str, label: str, timeout: float, pool_size: int, helo_name: str):
        self.spec = spec
        self.name = name
        self.label = label
        self.timeout = spec.timeout or timeout
        #: What EHLO says (SMTP_HELO_NAME, else the host's fully qualified name).
        self.helo_name = helo_name
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(pool_size)

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.spec.host,
            port=self.spec.port,
            username=self.spec.username,
            password=self.spec.password,
            use_tls=self.spec.scheme == "smtps",
            start_tls=self.spec.starttls,
            timeout=self.timeout,
            local_hostname=self.helo_name,
        )
        try:
            await smtp.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our credentials, not the email, are wrong: wait and retry, never fail the email.
            raise Transient(f"authentication failed: {_reply(exc)}", code=exc.code, provider_fault=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise Transient(f"connect: {_reply(exc)}", code=exc.code, provider_fault=True) from exc
        except _CONNECTION_ERRORS as exc:
            raise Transient(f"cannot connect to {self.name}: {exc or type(exc).__name__}", provider_fault=True) from exc
        return smtp

    async def send(self, *, sender: str, recipients: list[str], message: bytes, before_data: BeforeData) -> Delivery:
        # An internationalised address (a non-ASCII local part) needs the server's SMTPUTF8.
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        async with self._slots:
            smtp = self._idle.pop() if self._idle else None
            if smtp is not None:
                try:
                    await self._mail(smtp, sender, utf8)
                except (aiosmtplib.SMTPResponseException, *_CONNECTION_ERRORS):
                    # The server dropped the idle connection: start afresh, once.
                    smtp.close()
                    smtp = None
                except Permanent:
                    self._idle.append(smtp)
                    raise
            if smtp is None:
                smtp = await self._connect()
                try:
                    await self._mail(smtp, sender, utf8)
                except Permanent:
                    self._idle.append(smtp)
                    raise
                except aiosmtplib.SMTPResponseException as exc:
                    smtp.close()
                    # Before any recipient, a temporary refusal is about the server or our account.
                    raise _by_code(exc, "MAIL FROM refused", provider_fault=True) from exc
                except _CONNECTION_ERRORS as exc:
                    smtp.close()
                    raise Transient(
                        f"connection lost before DATA: {exc or type(exc).__name__}", provider_fault=True
                    ) from exc
            try:
                delivery = await self._transaction(smtp, recipients, message, before_data, utf8)
            except BaseException:
                smtp.close()
                raise
            self._idle.append(smtp)
            return delivery

    @staticmethod
    async def _mail(smtp: aiosmtplib.SMTP, sender: str, utf8: bool) -> None:
        """MAIL FROM, with SMTPUTF8 when an address needs it (refused at once if the server lacks it)."""
        if not utf8:
            await smtp.mail(sender)
            return
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
        if not smtp.supports_extension("smtputf8"):
            # Nothing was sent, and retrying cannot help: this server cannot carry the address.
            raise Permanent("an internationalised address needs SMTPUTF8, which this provider does not offer")
        await smtp.mail(sender, options=["SMTPUTF8"], encoding="utf-8")

    async def _transaction(
        self, smtp: aiosmtplib.SMTP, recipients: list[str], message: bytes, before_data: BeforeData, utf8: bool
    ) -> Delivery:
        refused: dict[str, str] = {}
        deferred: dict[str, str] = {}
        try:
            for rcpt in recipients:
                try:
                    await smtp.rcpt(rcpt, encoding="utf-8" if utf8 else "ascii")
                except aiosmtplib.SMTPRecipientRefused as exc:
                    (deferred if 400 <= exc.code < 500 else refused)[rcpt] = _reply(exc)
        except _CONNECTION_ERRORS as exc:
            raise Transient(f"connection lost before DATA: {exc or type(exc).__name__}", provider_fault=True) from exc
        if deferred:
            raise Transient(
                f"recipient(s) refused for now: {'; '.join(deferred.values())}",
                refused=refused,
                provider_fault=any(r.startswith(str(_SERVICE_UNAVAILABLE)) for r in deferred.values()),
            )
        if len(refused) == len(recipients):
            raise Permanent(f"every recipient was refused: {'; '.join(refused.values())}", refused=refused)
        if not await before_data(refused):
            raise Aborted("the email changed before DATA; nothing was sent", refused=refused)
        try:
            response = await smtp.data(message)
        except aiosmtplib.SMTPDataError as exc:
            # An explicit refusal: the provider did not take the message.
            raise _by_code(exc, "DATA refused", refused=refused) from exc
        except _CONNECTION_ERRORS as exc:
            raise Uncertain(f"connection failed during DATA: {exc or type(exc).__name__}", refused=refused) from exc
        return Delivery(reply=f"{response.code} {response.message}".strip(), refused=refused)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await smtp.quit(timeout=2)
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


_headers = email.parser.BytesHeaderParser(policy=email.policy.default)


class ConsoleTransport:
    """Print each message's headers and body size to stdout (never the body): for development."""

    offline = False

    def __init__(self, *, name: str, label: str):
        self.name = name
        self.label = label

    async def send(self, *, sender: str, recipients: list[str], message: bytes, before_data: BeforeData) -> Delivery:
        if not await before_data({}):
            raise Aborted("the email changed before it was printed; nothing was printed")
        head, _, body = message.partition(b"\r\n\r\n")
        headers = _headers.parsebytes(head + b"\r\n\r\n")
        lines = [f"----- {self.name} {headers.get('Message-ID', '')}"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        lines += [f"Envelope-From: {sender}", f"Envelope-To: {', '.join(recipients)}"]
        lines.append(f"(body: {len(body)} bytes, not shown)")
        print("\n".join(lines), file=sys.stdout, flush=True)
        return Delivery(reply="250 printed to the console", refused={})

    async def close(self) -> None:
        """Nothing to release."""


def _append(path: str, line: bytes) -> None:
    # O_APPEND makes each single write() land whole at the end, even with several
    # worker processes on one host writing the same file. 0600: it holds bodies.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path} ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlTransport:
    """The offline log: append each message to a JSON Lines file, fsynced; the email is then "logged offline".

    ``tasks.delivery.offline`` replays what it holds once the providers are back.
    """

    offline = True

    def __init__(self, *, path: str, name: str, label: str):
        self.path = path
        self.name = name
        self.label = label
        self._lock = asyncio.Lock()

    async def send(self, *, sender: str, recipients: list[str], message: bytes, before_data: BeforeData) -> Delivery:
        if not os.access(os.path.dirname(self.path) or ".", os.W_OK):
            # Nothing written and nothing committed: retry later like any transient error.
            raise Transient(f"cannot write the offline log {self.path}: its directory is missing or read-only")
        if not await before_data({}):
            raise Aborted("the email changed before it was logged; nothing was written")
        record: dict[str, Any] = {
            "logged_at": dt.datetime.now(dt.UTC).isoformat(),
            "message_id": _headers.parsebytes(message).get("Message-ID"),
            "sender": sender,
            "recipients": recipients,
        }
        try:
            record["message"] = message.decode("utf-8")
        except UnicodeDecodeError:
            record["message_base64"] = base64.b64encode(message).decode("ascii")
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        async with self._lock:
            try:
                await asyncio.to_thread(_append, self.path, line)
            except OSError as exc:
                # Nobody received anything: a retry can at worst repeat a line of the log.
                raise Transient(f"cannot write the offline log {self.path}: {exc.strerror or exc}") from exc
        return Delivery(reply=f"logged offline to {self.path}", refused={})

    async def close(self) -> None:
        """Nothing to release: each message opens, writes and closes the file."""


class BuildSettings(Protocol):
    """What ``build`` reads of the settings (``tasks.core.config.Settings`` has it all).

    A protocol rather than ``Settings`` itself: the settings module imports this
    one to parse ``MAIL_TRANSPORTS``, so this one must not import it back.
    """

    @property
    def worker_concurrency(self) -> int: ...
    @property
    def smtp_timeout(self) -> float: ...
    @property
    def smtp_helo_name(self) -> str: ...
    @property
    def devmail_host(self) -> str: ...
    @property
    def devmail_port(self) -> int: ...
    @property
    def sendgrid_api_key(self) -> str: ...
    @property
    def sendgrid_api_url(self) -> str: ...
    @property
    def ses_endpoint_url(self) -> str: ...


_LOCAL_NAMES = ("localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6")


def choose_host_name(hostname: str, resolved: list[str]) -> str:
    """Pick the EHLO name from the host's name and the names it resolves to: the first fully
    qualified one that is not ``localhost``, else the host's name as it is."""
    for name in (hostname, *resolved):
        if "." in name and name.lower() not in _LOCAL_NAMES and not name.replace(".", "").isdigit():
            return name
    return hostname or "localhost"


@functools.cache
def host_name() -> str:
    """Return this host's fully qualified name, looked up once per process.

    Not ``socket.getfqdn()`` (aiosmtplib's default, asked again on every
    connection): on hosts whose /etc/hosts maps their name to 127.0.0.1 next to
    ``localhost`` (Debian, containers) it answers ``localhost``, and receiving
    servers mark a sender greeting as ``localhost`` down.
    """
    hostname = socket.gethostname()
    resolved: list[str] = []
    try:
        resolved += [info[3] for info in socket.getaddrinfo(hostname, None, flags=socket.AI_CANONNAME) if info[3]]
    except OSError:
        pass  # no resolver answer: the host's own name is all there is
    try:
        name, aliases, _ = socket.gethostbyaddr(hostname)
        resolved += [name, *aliases]
    except OSError:
        pass
    return choose_host_name(hostname, resolved)


def helo_name(settings: BuildSettings) -> str:
    """Return the name EHLO gives: SMTP_HELO_NAME, else the host's fully qualified name."""
    return settings.smtp_helo_name or host_name()


def build(spec: TransportSpec, settings: BuildSettings) -> Transport:
    """Create the transport a ``MAIL_TRANSPORTS`` entry names."""
    pool_size = settings.worker_concurrency
    if spec.scheme == "console":
        return ConsoleTransport(name=spec.name, label=spec.label)
    if spec.scheme == "jsonl":
        return JsonlTransport(path=spec.path, name=spec.name, label=spec.label)
    if spec.scheme in ("devmail", "smtp", "smtps"):
        # The built-in dev mailbox is an SMTP sink at DEVMAIL_ADDR.
        target = (
            TransportSpec(scheme="smtp", host=settings.devmail_host, port=settings.devmail_port)
            if spec.scheme == "devmail"
            else spec
        )
        return SmtpTransport(
            target,
            name=spec.name,
            label=spec.label,
            timeout=settings.smtp_timeout,
            pool_size=pool_size,
            helo_name=helo_name(settings),
        )
    if spec.scheme in API_SCHEMES:
        # Imported here: the providers' clients load only in processes that use them.
        from tasks.delivery import providers

        return providers.build(spec, settings)
    raise ValueError(f"no transport for {spec.scheme}://")
