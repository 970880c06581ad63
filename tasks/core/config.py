"""Settings: the one place environment variables become configuration.

Each setting is declared once, as a field of ``Settings``::

    worker_concurrency: int = setting("5", integer(1, 500), "Parallel sends per worker process.")

The field's name in capitals is the environment variable (``WORKER_CONCURRENCY``);
the declaration holds its default (as it would be written in the environment),
the parser that checks it, and its documentation. From these declarations come
``load()``, which reads and checks every setting at start so that a bad value
stops the process with a message naming it, and the two files generated from
them: the configuration reference (docs/configuration.md) and .env.example.
``make config-docs`` regenerates both; tests/unit/test_config_docs.py fails when
either is out of date. Adding a setting is adding one field.

Every process checks every value's form (a typo is caught wherever it is read),
and the rules that tie settings together (``_check_together``). The web app's
own rules (Google sign-in, the allow-list, the session key in production) are
``validate_for_web``: only the web calls it, so workers and the CLI never refuse
to start for a reason that is not theirs.

``python -m tasks.core.config --docs`` (or ``--env-example``) prints a generated file.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import ipaddress
import os
import re
import sys
import textwrap
import urllib.parse
from collections.abc import Callable, Mapping
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any, TypeVar

from tasks.core import errors
from tasks.delivery.transports import TransportSpec, parse_transports

__all__ = [
    "SETTINGS",
    "RateLimits",
    "RateWindow",
    "Setting",
    "Settings",
    "TransportSpec",
    "default",
    "load",
    "parse_windows",
    "render_docs",
    "render_env_example",
    "validate_for_web",
]

T = TypeVar("T")
#: Reads one raw value: ``parse(NAME, raw)`` returns it, or raises ``ConfigError(NAME, why)``.
Parser = Callable[[str, str], T]

APP_ENVS = ("development", "production", "test")
_DOMAIN = re.compile(r"(?i)(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+")
#: What the ``limits`` library (Flask-Limiter) parses: ``600/minute``, ``10 per second;600/hour``.
_ONE_RATE = r"\d+\s*(/|per)\s*\d*\s*(second|minute|hour|day)s?"
_RATE = re.compile(rf"{_ONE_RATE}(\s*[;,]\s*{_ONE_RATE})*")
_WINDOW = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)")
_UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}


@dataclasses.dataclass(frozen=True)
class RateWindow:
    """At most ``count`` sends in any window of ``seconds`` (``50/hour``, ``20/10s``)."""

    count: int
    seconds: float

    def __str__(self) -> str:
        for unit, name, short in ((86400, "day", "d"), (3600, "hour", "h"), (60, "minute", "m"), (1, "second", "s")):
            if self.seconds % unit == 0:
                n = int(self.seconds // unit)
                return f"{self.count}/{name}" if n == 1 else f"{self.count}/{n}{short}"
        return f"{self.count}/{self.seconds:g}s"


#: Provider limits per transport label: ``(("smtp", (RateWindow(50, 3600), ...)), ...)``.
RateLimits = tuple[tuple[str, tuple[RateWindow, ...]], ...]


# --- Parsers: each returns the value, or raises ConfigError naming the setting. ---


def text(name: str, raw: str) -> str:
    """Any text."""
    return raw


def integer(low: int, high: int) -> Parser[int]:
    """An integer from ``low`` to ``high``."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise errors.ConfigError(name, f"must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise errors.ConfigError(name, f"must be between {low} and {high}, got {value}")
        return value

    return parse


def seconds(low: float, high: float) -> Parser[float]:
    """A number of seconds from ``low`` to ``high``."""

    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise errors.ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
        if not low <= value <= high:
            raise errors.ConfigError(name, f"must be between {low} and {high} seconds, got {value}")
        return value

    return parse


def url(*schemes: str) -> Parser[str]:
    """A URL with one of these schemes."""

    def parse(name: str, raw: str) -> str:
        if urllib.parse.urlsplit(raw).scheme not in schemes:
            raise errors.ConfigError(name, f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return raw

    return parse


def url_or_empty(*schemes: str) -> Parser[str]:
    """Empty, or a URL with one of these schemes and a host."""
    check = url(*schemes)

    def parse(name: str, raw: str) -> str:
        if not raw:
            return raw
        check(name, raw)
        if not urllib.parse.urlsplit(raw).hostname:
            raise errors.ConfigError(name, "must be a URL with a host")
        return raw

    return parse


def optional_url(*schemes: str) -> Parser[str]:
    """Empty, or a URL with one of these schemes and a host (returned without its trailing /)."""

    def parse(name: str, raw: str) -> str:
        if not raw:
            return ""
        parts = urllib.parse.urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
            raise errors.ConfigError(
                name, f"must be empty or a URL starting with {' or '.join(s + '://' for s in schemes)}, with a host"
            )
        return raw.rstrip("/")

    return parse


def ec_public_key(name: str, raw: str) -> str:
    """Empty, or an elliptic-curve public key: base64 DER (as SendGrid shows it) or PEM."""
    if not raw:
        return ""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if raw.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(raw.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(raw, validate=True))
    except ValueError:
        raise errors.ConfigError(name, "must be a public key: base64 DER (as SendGrid shows it) or PEM") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise errors.ConfigError(name, "must be an elliptic-curve (ECDSA) public key")
    return raw


def webhook_secret(name: str, raw: str) -> str:
    """Empty, or a Standard Webhooks secret (``whsec_`` and base64)."""
    if not raw:
        return ""
    body = raw.removeprefix("whsec_")
    try:
        if len(base64.b64decode(body, validate=True)) < 24:
            raise ValueError
    except ValueError:
        raise errors.ConfigError(name, "must be whsec_ followed by 24+ random bytes in base64") from None
    return raw


def choice(*options: str) -> Parser[str]:
    """One of ``options``, in any case (returned in the case the options are written in)."""

    def parse(name: str, raw: str) -> str:
        for option in options:
            if raw.lower() == option.lower():
                return option
        raise errors.ConfigError(name, f"must be {', '.join(options[:-1])} or {options[-1]}, got {raw!r}")

    return parse


def flag(name: str, raw: str) -> bool:
    """1 or 0 (also true/false, yes/no, on/off)."""
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise errors.ConfigError(name, f"must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


def comma_list(pattern: re.Pattern[str], what: str) -> Parser[tuple[str, ...]]:
    """Comma-separated items, each lower-cased and matching ``pattern``; empty means none."""

    def parse(name: str, raw: str) -> tuple[str, ...]:
        items = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
        for item in items:
            if not pattern.fullmatch(item):
                raise errors.ConfigError(name, f"{item!r} is not {what}")
        return items

    return parse


def domain(name: str, raw: str) -> str:
    """A domain name."""
    if not _DOMAIN.fullmatch(raw):
        raise errors.ConfigError(name, f"must be a domain name, got {raw!r}")
    return raw


def helo_name(name: str, raw: str) -> str:
    """Empty, a domain name, or an address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``)."""
    if not raw or _DOMAIN.fullmatch(raw):
        return raw
    if literal := re.fullmatch(r"\[(IPv6:)?([0-9A-Fa-f:.]+)\]", raw):
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(literal[2]).version == (6 if literal[1] else 4):
                return raw
    raise errors.ConfigError(
        name, f"must be the host's domain name (e.g. mail.example.com) or [IP address], got {raw!r}"
    )


def host_port(name: str, raw: str) -> tuple[str, int]:
    """``HOST:PORT``."""
    host, _, port = raw.rpartition(":")
    if not host:
        raise errors.ConfigError(name, f"must be HOST:PORT, got {raw!r}")
    return host, integer(1, 65535)(name, port)


def fernet_keys(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys (32 bytes, url-safe base64 each); empty means none."""
    keys = tuple(item.strip() for item in raw.split(",") if item.strip())
    for n, key in enumerate(keys, 1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            decoded = b""
        if len(decoded) != 32:
            raise errors.ConfigError(
                name,
                f"key {n} is not a Fernet key (32 bytes in url-safe base64); make one with"
                ' `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`',
            )
    return keys


def address_header(name: str, raw: str) -> str:
    """An address with an optional display name, fit for a header: ``Name <noreply@example.com>``."""
    if "\r" in raw or "\n" in raw:
        raise errors.ConfigError(name, "must not contain a line break")
    display, addr = parseaddr(raw)
    if "@" not in addr:
        raise errors.ConfigError(name, f"must be an address like 'Name <noreply@example.com>', got {raw!r}")
    try:
        Address(display_name=display, addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise errors.ConfigError(name, f"is not a valid address: {exc}") from None
    return raw


def token(name: str, raw: str) -> str:
    """Empty, or a bearer token of 16+ characters."""
    if raw and len(raw) < 16:
        raise errors.ConfigError(name, "must be at least 16 characters (or empty to leave /metrics open)")
    return raw


def api_rate(name: str, raw: str) -> str:
    """A rate in the ``limits`` library's notation."""
    if not _RATE.fullmatch(raw):
        raise errors.ConfigError(name, f"must look like '600/minute' or '10/second;600/hour', got {raw!r}")
    return raw


def api_base_url(name: str, raw: str) -> str:
    """Empty, an ``https://`` URL, or an ``http://`` one to this machine (nothing else would carry a key in clear)."""
    if not raw:
        return raw
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme == "https" and parts.hostname:
        return raw.rstrip("/")
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return raw.rstrip("/")
    raise errors.ConfigError(name, f"must be an https:// URL (or http:// to 127.0.0.1), got {raw!r}")


def transport_chain(name: str, raw: str) -> tuple[TransportSpec, ...]:
    """The transport chain (``tasks.delivery.transports.parse_transports``)."""
    return parse_transports(raw)


def parse_windows(name: str, raw: str) -> tuple[RateWindow, ...]:
    """Parse comma-separated windows such as ``50/hour,5/second`` or ``20/10s``."""
    windows: list[RateWindow] = []
    for part in (p.strip() for p in raw.split(",")):
        match = _WINDOW.fullmatch(part.lower())
        if not match or match[3] not in _UNITS:
            raise errors.ConfigError(
                name, f"{part!r} is not a limit like 50/hour, 5/second or 20/10s (units: s, m, h, d)"
            )
        count, length = int(match[1]), float(match[2] or 1) * _UNITS[match[3]]
        if count < 1 or not 0.01 <= length <= 31 * 86400:
            raise errors.ConfigError(name, f"{part!r}: need at least 1 send per 0.01 s to 31 days")
        windows.append(RateWindow(count, length))
    if len({w.seconds for w in windows}) != len(windows):
        raise errors.ConfigError(name, f"{raw!r} names the same window twice")
    return tuple(windows)


def optional_windows(name: str, raw: str) -> tuple[RateWindow, ...]:
    """Windows as ``parse_windows`` reads them; empty means none."""
    return parse_windows(name, raw) if raw else ()


def parse_rate_limits(name: str, raw: str) -> RateLimits:
    """Parse ``label=windows`` entries separated by ``;`` (the labels are checked by ``_check_together``)."""
    limits: dict[str, tuple[RateWindow, ...]] = {}
    for entry in filter(None, (e.strip() for e in raw.split(";"))):
        label, sep, windows = entry.partition("=")
        label = label.strip()
        if not sep or not label:
            raise errors.ConfigError(name, f"{entry!r} is not label=limits, e.g. smtp=50/hour,5/second")
        if label in limits:
            raise errors.ConfigError(name, f"{label!r} appears twice")
        limits[label] = parse_windows(name, windows)
    return tuple(limits.items())


# --- The declarations. ---

_KEY = "reachdbox.setting"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Setting:
    """One environment variable: its default, how it is read, and what it means."""

    #: The default as it would be written in the environment ("" for none).
    default: str
    parse: Callable[[str, str], object]
    #: The row of docs/configuration.md (markdown).
    doc: str
    #: Never shown in ``repr`` (nor, through it, in a log line).
    secret: bool = False
    #: Its line's value in .env.example, for the settings docker-compose.yml takes
    #: from ``.env``; None for the others.
    example: str | None = None


def setting(default: str, parse: Parser[T], doc: str, *, secret: bool = False, example: str | None = None) -> T:
    """Declare one field of ``Settings`` (its type is what ``parse`` returns)."""
    try:
        value = parse("default", default)
    except errors.ConfigError as exc:
        raise ValueError(f"the default {default!r} is invalid: {exc.message}") from None
    declared = Setting(default=default, parse=parse, doc=doc, secret=secret, example=example)
    return dataclasses.field(default=value, repr=not secret, metadata={_KEY: declared})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """The validated configuration of one process: one field per environment variable (its name in capitals)."""

    app_env: str = setting(
        "development",
        choice(*APP_ENVS),
        "`development`, `test` or `production` (in production the web app refuses a weak `SECRET_KEY` and"
        " requires Google sign-in).",
    )
    database_url: str = setting(
        "postgresql://postgres@127.0.0.1:5432/reachdbox",
        url("postgresql", "postgres"),
        "PostgreSQL: the truth and the queue.",
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        url("redis", "rediss", "unix"),
        "Redis: shared rate-limit buckets and live status only.",
    )
    redis_prefix: str = setting(
        "reachdbox:",
        text,
        "Prefix of every Redis key and channel, so several deployments (or test runs) can share one Redis.",
    )
    mail_transports: tuple[TransportSpec, ...] = setting(
        "devmail://",
        transport_chain,
        "Space-separated transport URLs, tried in order, each optionally labelled (`primary=smtp://…`; the label"
        " defaults to the scheme, then `smtp-2`…): `smtp://user:pass@host:587?starttls=1`,"
        " `smtps://user:pass@host:465`, `devmail://`, `console://` (prints headers and body size),"
        " `jsonl:///abs/path.jsonl` (the offline log; last only), `ses://REGION` (Amazon SES's API),"
        " `sendgrid://` (SendGrid's API). Options: `starttls=1`, `timeout=SECONDS`,"
        " `configuration_set=NAME` (SES)."
        " A password over plain `smtp://` to a non-local host is refused; percent-encode `@ / : +` in user names"
        " and passwords. In docker compose, `devmail://` needs the dev profile (`docker compose --profile dev up`).",
        example="devmail://",
    )
    mail_from: str = setting(
        "Reach D. Box <noreply@localhost>",
        address_header,
        "The `From` header and envelope sender; the signed-in user is the `Reply-To`.",
        example="Reach D. Box <noreply@example.com>",
    )
    mail_domain: str = setting(
        "reachdbox.localhost",
        domain,
        "Right-hand side of every Message-ID: `<EMAIL_ID@MAIL_DOMAIN>`.",
        example="example.com",
    )
    secret_key: str = setting(
        "dev-insecure-secret-key",
        text,
        "Signs the web app's sessions; must be 32+ random characters in production, e.g."
        ' `python -c "import secrets; print(secrets.token_urlsafe(48))"`.',
        secret=True,
        example="",
    )
    devmail_addr: tuple[str, int] = setting(
        "127.0.0.1:2525", host_port, "Where the dev mailbox listens and `devmail://` sends."
    )
    devmail_keep: int = setting(
        "500",
        integer(1, 1_000_000),
        "How many messages the dev mailbox keeps: each new one prunes all but the last `DEVMAIL_KEEP`.",
    )
    devmail_link_check_hosts: tuple[str, ...] = setting(
        "127.0.0.1,localhost",
        comma_list(_DOMAIN, "a host name or IPv4 address"),
        "Comma-separated hosts the dev mailbox's link check may send a request to (when asked, one HEAD or"
        " GET per link, no redirect followed); a link to any other host is listed, never requested.",
    )
    dev_user_email: str = setting(
        "dev@localhost", text, "The local user of the dev login and the CLI's default `--owner`."
    )
    worker_concurrency: int = setting(
        "5", integer(1, 500), "Parallel sends per worker process (`--concurrency` overrides)."
    )
    worker_heartbeat: float = setting("2", seconds(0.5, 60), "Seconds between a worker's heartbeats.")
    worker_stalled_after: float = setting(
        "10",
        seconds(2, 3600),
        "Seconds without a heartbeat before a worker counts as dead and its work is recovered"
        " (more than twice `WORKER_HEARTBEAT`).",
    )
    worker_shutdown_timeout: float = setting(
        "30",
        seconds(0, 3600),
        "On SIGTERM, how long in-flight sends may take before they are aborted (and recovered).",
    )
    worker_poll_interval: float = setting(
        "5",
        seconds(0.05, 60),
        "Fallback poll; workers normally wake on notifications and at the next job's due time.",
    )
    schedule_horizon: float = setting(
        "600",
        seconds(30, 86400),
        "Seconds ahead within which an email holds a queue job; later ones are promoted when they come near.",
    )
    recurrence_catch_up: float = setting(
        "3600",
        seconds(0, 7 * 86400),
        "After downtime, a recurrence sends the latest occurrence it missed only if it is less than this many"
        " seconds old (the others are recorded as skipped); 0: never catch up.",
    )
    recurrence_lookahead: float = setting(
        "60",
        seconds(10, 86400),
        "How far ahead a recurrence's occurrences become emails with their send jobs (at most `SCHEDULE_HORIZON`):"
        " a minute keeps the queue's future jobs few, however many recurrences there are.",
    )
    recurrence_min_interval: float = setting(
        "60",
        seconds(60, 7 * 86400),
        "The shortest interval a recurrence may fire at (seconds); a rule that fires more often is refused.",
    )
    recurrence_time_scale: int = setting(
        "1",
        integer(1, 3600),
        "Testing only (refused in production): recurrences' rules run this many times faster than real time"
        " (60: an every-minute rule fires every second), so a test can watch several occurrences go out.",
    )
    recurrence_pause_after_failures: int = setting(
        "5",
        integer(1, 1000),
        "A recurrence whose occurrences fail permanently this many times in a row pauses itself.",
    )
    smtp_timeout: float = setting(
        "30",
        seconds(0.1, 600),
        "Seconds allowed for the connection and for each SMTP command (and for each request to SES's or SendGrid's"
        " API).",
    )
    smtp_helo_name: str = setting(
        "",
        helo_name,
        "The name the worker gives in EHLO (receiving servers judge a sender by it): a domain, or"
        " `[IP address]`; empty: the host's fully qualified name.",
    )
    sendgrid_api_key: str = setting(
        "",
        text,
        "SendGrid's API key (with the Mail Send permission) for `sendgrid://` entries that carry none in their URL.",
        secret=True,
        example="",
    )
    sendgrid_api_url: str = setting(
        "",
        api_base_url,
        "Where `sendgrid://` sends instead of `https://` + its host (a test's local stand-in); empty in"
        " production. Plain `http://` only to this machine.",
    )
    ses_endpoint_url: str = setting(
        "",
        api_base_url,
        "Where `ses://` sends instead of the region's SES endpoint (a test's local stand-in, a VPC endpoint);"
        " empty: AWS's own (which also honours `AWS_ENDPOINT_URL_SESV2` and `AWS_ENDPOINT_URL`). Plain `http://`"
        " only to this machine.",
    )
    retry_backoff_base: float = setting(
        "30",
        seconds(0.01, 86400),
        "First retry wait after a temporary failure; doubles each attempt, with jitter.",
    )
    retry_backoff_max: float = setting(
        "3600", seconds(0.01, 7 * 86400), "Longest retry wait (not below `RETRY_BACKOFF_BASE`)."
    )
    max_attempts: int = setting(
        "10",
        integer(1, 100),
        "Attempts before a temporarily failing email is marked `failed`. An attempt is a try at the provider:"
        " waiting for a rate-limit slot or for Redis does not count.",
    )
    rate_limits: RateLimits = setting(
        "",
        parse_rate_limits,
        "Provider limits per transport label, enforced across every worker: `label=LIMIT[,LIMIT…]` entries"
        " separated by `;`, e.g. `primary=50/hour,5/second;backup=2000/day`. A LIMIT is `N/UNIT` or `N/kUNIT`"
        " (`20/10s`, `100/15m`), units `s`, `m`, `h`, `d` (or `second`, `minute`, `hour`, `day`). Each label must"
        " be one of `MAIL_TRANSPORTS`. Empty: no limit.",
    )
    user_rate_limit: tuple[RateWindow, ...] = setting(
        "",
        optional_windows,
        "Each user's own limit, over all transports together, same LIMIT syntax: `500/day` or"
        " `500/day,50/hour`. Empty: no limit.",
    )
    rate_limit_fair_share: bool = setting(
        "1",
        flag,
        "`1`: each user's mail queues in the user's own lane, paced at the transport's limit, and goes to the"
        " provider when its turn comes and the provider's windows allow, so one user's burst of 10,000 never"
        " pushes another user's email back by more than about one window. `0`: one queue for everyone, provider"
        " slots reserved ahead in arrival order.",
    )
    rate_limit_margin: float = setting(
        "0.2",
        seconds(0.01, 60),
        "Seconds added to every limit window (at most 5% of it), so the jitter between a reserved slot and the"
        " provider's own clock cannot push a window over.",
    )
    breaker_threshold: int = setting(
        "5",
        integer(1, 1000),
        "Provider failures in a row (refused connection, timeout, 421, lost connection) that open a transport's"
        " circuit breaker.",
    )
    breaker_cooldown: float = setting(
        "60",
        seconds(0.1, 86400),
        "Seconds an open breaker is skipped before one trial send decides whether it closes.",
    )
    job_retention_hours: int = setting(
        "24",
        integer(1, 24 * 366),
        "Finished Procrastinate jobs (failed, cancelled, aborted) older than this are deleted hourly; succeeded"
        " ones at once. Emails and their timelines are kept.",
    )
    ops_token: str = setting(
        "",
        token,
        "When set (16+ characters), `/metrics` and `/ops/status` require `Authorization: Bearer OPS_TOKEN`; when"
        " empty they are open (keep them off the internet).",
        secret=True,
        example="",
    )
    slack_webhook_url: str = setting(
        "",
        url_or_empty("https", "http"),
        "The operators' Slack incoming webhook (Slack > Apps > Incoming Webhooks,"
        " `https://hooks.slack.com/services/…`): `python -m tasks monitor` posts each alert there when it is"
        " raised and when it is resolved ([alerts](alerts.md)). Empty: alerts are only recorded (the Operators"
        " page, `/ops/alerts`, `/metrics`). `https://` in production.",
        secret=True,
        example="",
    )
    monitor_interval: float = setting(
        "5",
        seconds(0.1, 600),
        "Seconds between two rounds of the monitor's checks.",
    )
    alert_queue_lag: float = setting(
        "60",
        seconds(1, 86400),
        "An email still unclaimed this many seconds after it was due raises the queue-lag alert.",
    )
    alert_unreachable_after: float = setting(
        "10",
        seconds(0, 3600),
        "Seconds PostgreSQL or Redis must stay unreachable before the monitor raises it (a restart of a few"
        " seconds is not an alert).",
    )
    alert_min_interval: float = setting(
        "300",
        seconds(0, 86400),
        "Fewest seconds between two messages about the same alert: a condition that comes back this soon"
        " after its last message is recorded, and posted only if it is still there when the interval is over.",
    )
    log_level: str = setting(
        "INFO", choice("DEBUG", "INFO", "WARNING", "ERROR"), "`DEBUG`, `INFO`, `WARNING` or `ERROR`."
    )
    log_format: str = setting(
        "auto",
        choice("auto", "json", "console"),
        "`json`, `console`, or `auto` (console on a terminal, JSON otherwise).",
    )
    google_oauth_client_id: str = setting(
        "",
        text,
        "Google OAuth client for sign-in (console.cloud.google.com > APIs & Services > Credentials > OAuth client"
        ' ID, "Web application", redirect URI `https://YOUR_HOST/auth/google/authorized`). Empty: the dev login is'
        " offered instead; in production the web app refuses to start (workers and the CLI do not need it).",
        example="",
    )
    google_oauth_client_secret: str = setting("", text, "Its secret; set both or neither.", secret=True, example="")
    google_oauth_authorize_url: str = setting(
        "https://accounts.google.com/o/oauth2/v2/auth",
        url("https", "http"),
        "Where sign-in sends the browser (tests point it at a local provider). This and the next two are"
        " `https://` in production.",
    )
    google_oauth_token_url: str = setting(
        "https://oauth2.googleapis.com/token",
        url("https", "http"),
        "Where the code is exchanged for a token.",
    )
    google_oauth_userinfo_url: str = setting(
        "https://openidconnect.googleapis.com/v1/userinfo",
        url("https", "http"),
        "Where the verified email and name are read (`email_verified` must be true).",
    )
    allowed_email_domains: tuple[str, ...] = setting(
        "",
        comma_list(_DOMAIN, "a domain name"),
        "Comma-separated domains whose users may sign in. The web app requires it (or `ALLOWED_EMAILS`) in"
        " production; both empty (development): anyone.",
        example="",
    )
    allowed_emails: tuple[str, ...] = setting(
        "",
        comma_list(_EMAIL, "an email address"),
        "Comma-separated addresses that may sign in, whatever their domain.",
        example="",
    )
    api_rate_limit: str = setting(
        "600/minute",
        api_rate,
        "Requests to `/api/v1`, and to each page route that changes something (sign-out, tokens, an email's"
        " actions), per user (per address when signed out), e.g. `10/second;600/hour`; over it: 429 with"
        " `Retry-After`. Counted in Redis, in memory if Redis is down.",
    )
    web_max_request_bytes: int = setting(
        "16777216",
        integer(1024, 1024**3),
        "Largest request body; a bigger one is 413 before anything else happens.",
    )
    web_trusted_proxies: int = setting(
        "0",
        integer(0, 5),
        "Reverse proxies in front of the app whose `X-Forwarded-*` headers are trusted (set it behind TLS"
        " termination so cookies are `Secure` and OAuth sees `https`): `1` behind one proxy.",
        example="0",
    )
    batch_max_recipients: int = setting("50000", integer(1, 1_000_000), 'Most recipients in one "send to a list".')
    # The database's growth from one request; the default is the most recipients at 5 KB each.
    batch_max_rendered_bytes: int = setting(
        "268435456",
        integer(1024 * 1024, 16 * 1024**3),
        'Most bytes of email (every subject and body, rendered) one "send to a list" may create: the most'
        " recipients at 5 KB each. Worked out before anything is rendered; over it, the request is 422 naming"
        " this setting. Each template is also capped: the subject at 998 characters, the body at 1 MB, 1,000"
        " placeholders each.",
    )
    operator_emails: tuple[str, ...] = setting(
        "",
        comma_list(_EMAIL, "an email address"),
        "Comma-separated addresses of signed-in users who see the **Operators** page (counts, each transport's"
        " circuit breaker in chain order, workers alive); outside production the dev user sees it too. Anyone"
        " else gets 404.",
        example="",
    )
    secret_keys: tuple[str, ...] = setting(
        "",
        fernet_keys,
        "Comma-separated Fernet keys that encrypt the secrets stored in the database (an organization's mail"
        " provider passwords): the first encrypts, every one decrypts, so a new key goes first and the old one"
        " stays until `python -m tasks keys rotate` has re-encrypted everything with the new one. Empty outside"
        " production: a fixed development key (insecure); empty in production: organizations cannot store"
        " provider credentials.",
        secret=True,
        example="",
    )
    org_sending_domains: tuple[str, ...] = setting(
        "",
        comma_list(_DOMAIN, "a domain name"),
        "Comma-separated domains an organization's sending identity (From and Reply-To) may use; an address"
        " elsewhere is refused. Empty: any domain in development, none in production (set it there to let"
        " organizations set their own From).",
        example="",
    )
    org_hold_recheck: float = setting(
        "60",
        seconds(0.1, 3600),
        "Seconds between two looks at an email whose organization is suspended (it waits, with the reason,"
        " until the organization is resumed); a long suspension is looked at less often: a tenth of its age,"
        " at most every 15 minutes.",
    )
    public_url: str = setting(
        "",
        optional_url("https", "http"),
        "The web app's address as recipients reach it (`https://reach.example.com`): the one-click unsubscribe"
        " links of the messages of a list start with it (`List-Unsubscribe`, RFC 8058). Empty: no message carries"
        " them. Must be `https://` in production.",
        example="",
    )
    sendgrid_webhook_public_key: str = setting(
        "",
        ec_public_key,
        "SendGrid's Event Webhook verification key (Settings > Mail Settings > Event Webhook > Signed Event"
        " Webhook: the base64 public key it shows). Empty: `POST /feedback/sendgrid` answers 404.",
        example="",
    )
    ses_sns_topic_arns: tuple[str, ...] = setting(
        "",
        comma_list(re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}"), "an SNS topic ARN"),
        "Comma-separated SNS topics whose SES notifications `POST /feedback/ses` takes (after checking AWS's"
        " signature); a message from any other topic is refused. Empty: the endpoint answers 404.",
        example="",
    )
    feedback_webhook_secret: str = setting(
        "",
        webhook_secret,
        "The Standard Webhooks secret (`whsec_…`) of `POST /feedback/webhook`, the generic endpoint for SMTP"
        " relays that post delivery events. Empty: the endpoint answers 404.",
        secret=True,
        example="",
    )
    feedback_max_age: float = setting(
        "300",
        seconds(30, 3600),
        "Seconds a SendGrid event request's signed timestamp may be away from now: an older or later one is"
        " refused (403) as a replay. (SNS messages get an hour; the generic endpoint, Standard Webhooks' five"
        " minutes.)",
    )
    webhook_allow_http: bool = setting(
        "0",
        flag,
        "Allow webhook endpoints whose URL is `http://` (development and tests); otherwise only `https://`.",
    )
    webhook_allow_private: bool = setting(
        "0",
        flag,
        "Deliver webhooks to addresses in private, loopback, link-local or other reserved networks (tests, a"
        " receiver on this machine); otherwise such an address is refused before any connection.",
    )
    webhook_timeout: float = setting(
        "10", seconds(0.1, 60), "Seconds a webhook delivery may take (connecting, sending, the answer)."
    )
    webhook_retry_base: float = setting(
        "30",
        seconds(0.01, 3600),
        "Seconds before a failed webhook delivery's first retry; each later wait doubles (up to"
        " WEBHOOK_RETRY_MAX), half of it random.",
    )
    webhook_retry_max: float = setting("3600", seconds(0.01, 86400), "The longest wait between two webhook attempts.")
    webhook_retry_for: float = setting(
        "86400",
        seconds(0.1, 30 * 86400),
        "Seconds a webhook delivery is retried before it is marked failed (at least a day in production).",
    )
    webhook_disable_after: float = setting(
        "259200",
        seconds(0.1, 90 * 86400),
        "An endpoint whose deliveries have failed without a success for this long is disabled, and its owner"
        " told by email (3 days).",
    )
    webhook_log_days: int = setting(
        "30",
        integer(1, 3650),
        "Days a finished webhook delivery (delivered or failed) and its attempts' log are kept; an hourly task"
        " deletes older ones.",
    )
    webhook_rotation_overlap: float = setting(
        "86400",
        seconds(1, 30 * 86400),
        "After a webhook secret is rotated, deliveries are signed with the old one too for this long.",
    )
    web_bind: str = setting("127.0.0.1:8000", text, "Where gunicorn listens (`gunicorn.conf.py`).")
    web_workers: int = setting("2", integer(1, 256), "gunicorn's worker processes.")
    web_threads: int = setting(
        "16",
        integer(1, 1000),
        "Threads of each gunicorn worker; an open live-status stream holds one.",
    )

    @property
    def devmail_host(self) -> str:
        """Return the host of ``DEVMAIL_ADDR``."""
        return self.devmail_addr[0]

    @property
    def devmail_port(self) -> int:
        """Return the port of ``DEVMAIL_ADDR``."""
        return self.devmail_addr[1]

    @property
    def google_login(self) -> bool:
        """Tell whether Google sign-in is configured (otherwise the dev login may be offered)."""
        return bool(self.google_oauth_client_id)

    def is_operator(self, email: str) -> bool:
        """Tell whether this user may see the operators' page (outside production, the dev user may)."""
        address = email.lower()
        dev = self.app_env != "production" and address == self.dev_user_email.lower()
        return dev or address in self.operator_emails

    def transport_limits(self, label: str) -> tuple[RateWindow, ...]:
        """Return the rate-limit windows of a transport label (none if unlimited)."""
        return dict(self.rate_limits).get(label, ())

    @property
    def mail_from_address(self) -> str:
        """Return the bare address of ``MAIL_FROM`` (the SMTP envelope sender)."""
        return parseaddr(self.mail_from)[1]


#: Every setting by its environment name, in the order of the reference.
SETTINGS: Mapping[str, Setting] = {
    field.name.upper(): field.metadata[_KEY] for field in dataclasses.fields(Settings) if _KEY in field.metadata
}


def default(name: str) -> str:
    """Return a setting's default as written in the environment (for scripts that run before ``load``)."""
    return SETTINGS[name].default


# --- Loading and the rules between settings. ---


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting from ``environ`` (default: ``os.environ``); unset or blank means the default."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, declared in SETTINGS.items():
        raw = (env.get(name) or "").strip() or declared.default
        values[name.lower()] = declared.parse(name, raw)
    settings = Settings(**values)
    _check_together(settings)
    return settings


def _check_together(settings: Settings) -> None:
    """Check the rules that tie settings together, for every process."""
    if settings.worker_stalled_after <= 2 * settings.worker_heartbeat:
        raise errors.ConfigError("WORKER_STALLED_AFTER", "must be more than twice WORKER_HEARTBEAT")
    if settings.retry_backoff_max < settings.retry_backoff_base:
        raise errors.ConfigError("RETRY_BACKOFF_MAX", "must not be below RETRY_BACKOFF_BASE")
    if settings.recurrence_time_scale != 1 and settings.app_env == "production":
        raise errors.ConfigError("RECURRENCE_TIME_SCALE", "is for tests only: it must be 1 in production")
    if settings.app_env == "production" and settings.slack_webhook_url.startswith("http://"):
        raise errors.ConfigError("SLACK_WEBHOOK_URL", "must be an https:// URL in production")
    if settings.app_env == "production" and settings.public_url and not settings.public_url.startswith("https://"):
        raise errors.ConfigError("PUBLIC_URL", "must be an https:// URL in production")
    labels = [spec.label for spec in settings.mail_transports]
    for spec in settings.mail_transports:
        if spec.scheme == "sendgrid" and not spec.password and not settings.sendgrid_api_key:
            raise errors.ConfigError(
                "MAIL_TRANSPORTS",
                f"{spec.label}: sendgrid:// needs an API key: set SENDGRID_API_KEY or put it in the URL",
            )
    for label, _ in settings.rate_limits:
        if label not in labels:
            raise errors.ConfigError(
                "RATE_LIMITS", f"no transport is labelled {label!r}; MAIL_TRANSPORTS labels: {', '.join(labels)}"
            )


def validate_for_web(settings: Settings) -> None:
    """Check the web app's own rules; only the web calls this (workers and the CLI sign nobody in).

    Google OAuth needs its client id and secret together, always. In production
    the web also refuses a weak session key, plain-http OAuth endpoints, no
    Google sign-in (the dev login exists only outside production) and no
    allow-list (any Google account could sign in).
    """
    if bool(settings.google_oauth_client_id) != bool(settings.google_oauth_client_secret):
        missing = "GOOGLE_OAUTH_CLIENT_SECRET" if settings.google_oauth_client_id else "GOOGLE_OAUTH_CLIENT_ID"
        raise errors.ConfigError(missing, "must be set together with the other Google OAuth setting")
    if settings.app_env != "production":
        return
    if settings.secret_key == default("SECRET_KEY") or len(settings.secret_key) < 32:
        raise errors.ConfigError("SECRET_KEY", "must be set to a random value of 32+ characters in production")
    for name in ("GOOGLE_OAUTH_AUTHORIZE_URL", "GOOGLE_OAUTH_TOKEN_URL", "GOOGLE_OAUTH_USERINFO_URL"):
        if not getattr(settings, name.lower()).startswith("https://"):
            raise errors.ConfigError(name, "must be an https:// URL in production")
    if not settings.google_login:
        raise errors.ConfigError(
            "GOOGLE_OAUTH_CLIENT_ID", "must be set in production (the dev login exists only outside production)"
        )
    if not (settings.allowed_email_domains or settings.allowed_emails):
        raise errors.ConfigError(
            "ALLOWED_EMAIL_DOMAINS", "set it (or ALLOWED_EMAILS) in production, or any Google account could sign in"
        )


# --- The generated files. ---

DOCS_COMMAND = "python -m tasks.core.config --docs > docs/configuration.md"
ENV_EXAMPLE_COMMAND = "python -m tasks.core.config --env-example > .env.example"


def render_docs() -> str:
    """Return docs/configuration.md: every setting, its default and its meaning."""
    lines = [
        "# Configuration",
        "",
        f"Generated from the declarations in `tasks/core/config.py` by `make config-docs` (`{DOCS_COMMAND}`);"
        " change them there, not here.",
        "",
        "Every setting is an environment variable, read and checked in one place, `tasks/core/config.py`."
        " Unset or blank means the default. An invalid value stops the process at start with a message naming"
        " the setting (exit code 2). The web app's own rules (Google sign-in set up in pairs; in production a"
        " real `SECRET_KEY`, `https://` OAuth endpoints, Google sign-in and an allow-list) stop only the web app:"
        " workers and the CLI do not need them. gunicorn reads the `WEB_BIND`, `WEB_WORKERS` and `WEB_THREADS`"
        " settings in `gunicorn.conf.py`.",
        "",
        "| Setting | Default | Meaning |",
        "|---|---|---|",
    ]
    for name, declared in SETTINGS.items():
        shown = f"`{declared.default}`" if declared.default else "*(empty)*"
        meaning = declared.doc.replace("|", "\\|")
        lines.append(f"| `{name}` | {shown} | {meaning} |")
    return "\n".join(lines) + "\n"


def render_env_example() -> str:
    """Return .env.example: the settings docker-compose.yml takes from ``.env``, each with its meaning."""
    out = [
        "# Copy to .env (never commit it) and fill in; docker compose reads it.",
        f"# Generated by `make config-docs` ({ENV_EXAMPLE_COMMAND});",
        "# every setting is described in docs/configuration.md.",
        "",
        "# PostgreSQL's password (the postgres service creates the reachdbox user with it).",
        "POSTGRES_PASSWORD=",
    ]
    for name, declared in SETTINGS.items():
        if declared.example is None:
            continue
        plain = re.sub(r"`|\*\*", "", declared.doc)
        out += ["", *textwrap.wrap(plain, width=98, initial_indent="# ", subsequent_indent="# ")]
        out.append(f"{name}={declared.example}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print one generated file (``make config-docs`` writes both)."""
    parser = argparse.ArgumentParser(prog="python -m tasks.core.config", description=main.__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--docs", action="store_true", help="print docs/configuration.md")
    which.add_argument("--env-example", action="store_true", help="print .env.example")
    args = parser.parse_args(argv)
    sys.stdout.write(render_docs() if args.docs else render_env_example())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
