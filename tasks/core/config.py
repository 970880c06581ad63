"""Settings: the one place environment variables become configuration.

Every setting has a default and a row in the README. ``load()`` validates them
all at start so a bad value stops the process with a message naming it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from collections.abc import Mapping
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any

from tasks.core import errors

_DOMAIN = re.compile(r"(?i)(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
#: ``jsonl://`` is the offline log: it may only end the chain (DESIGN.md, "Provider trouble").
TRANSPORT_SCHEMES = ("smtp", "smtps", "devmail", "console", "jsonl")
_LABELLED = re.compile(r"([a-z][a-z0-9_-]{0,30})=([a-z]+://.*)")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_WINDOW = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)")
_UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
APP_ENVS = ("development", "production", "test")


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
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """The validated configuration of one process."""

    app_env: str = "development"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/reachdbox"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every Redis key and channel, so deployments (and tests) can share a Redis.
    redis_prefix: str = "reachdbox:"
    mail_transports: tuple[TransportSpec, ...] = ()
    mail_from: str = "Reach D. Box <noreply@localhost>"
    mail_domain: str = "reachdbox.localhost"
    secret_key: str = dataclasses.field(default="dev-insecure-secret-key", repr=False)
    devmail_host: str = "127.0.0.1"
    devmail_port: int = 2525
    dev_user_email: str = "dev@localhost"
    worker_concurrency: int = 5
    worker_heartbeat: float = 2.0
    worker_stalled_after: float = 10.0
    worker_shutdown_timeout: float = 30.0
    worker_poll_interval: float = 5.0
    schedule_horizon: float = 600.0
    smtp_timeout: float = 30.0
    retry_backoff_base: float = 30.0
    retry_backoff_max: float = 3600.0
    max_attempts: int = 10
    #: Consecutive connection failures or timeouts that open a transport's circuit breaker.
    breaker_threshold: int = 5
    #: Seconds a breaker stays open before one trial send decides whether it closes.
    breaker_cooldown: float = 60.0
    #: Finished Procrastinate jobs older than this are deleted every hour (emails are kept).
    job_retention_hours: int = 24
    #: Bearer token that /metrics and /ops/ require when set.
    ops_token: str = dataclasses.field(default="", repr=False)
    #: Provider limits per transport label: ``(("smtp", (RateWindow(50, 3600), ...)), ...)``.
    rate_limits: tuple[tuple[str, tuple[RateWindow, ...]], ...] = ()
    #: Each user's own limit (every transport together); empty means none.
    user_rate_limit: tuple[RateWindow, ...] = ()
    #: Slack added to every window against the jitter between a slot and the send.
    rate_limit_margin: float = 0.2
    #: Each user's mail first queues in the user's own lane, paced at the transport's limit, and takes
    #: a transport slot only when its turn comes: one user's burst cannot push everyone else's mail back.
    rate_limit_fair_share: bool = True
    log_level: str = "INFO"
    log_format: str = "auto"
    # --- web (issue 3) ---
    google_oauth_client_id: str = ""
    google_oauth_client_secret: str = dataclasses.field(default="", repr=False)
    google_oauth_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_oauth_token_url: str = "https://oauth2.googleapis.com/token"
    google_oauth_userinfo_url: str = "https://openidconnect.googleapis.com/v1/userinfo"
    #: Who may sign in: these domains and/or these addresses (both empty: anyone, not in production).
    allowed_email_domains: tuple[str, ...] = ()
    allowed_emails: tuple[str, ...] = ()
    #: Requests per user (or per address when signed out) to /api/v1, in the limits library's notation.
    api_rate_limit: str = "600/minute"
    #: Largest request body accepted, checked before anything else happens.
    web_max_request_bytes: int = 16 * 1024 * 1024
    #: How many reverse proxies in front of the app set X-Forwarded-* (0: trust none).
    web_trusted_proxies: int = 0
    #: Most recipients one batch (send to a list) may have.
    batch_max_recipients: int = 50_000
    #: Signed-in users who see the operators' page (transports, breakers, workers).
    operator_emails: tuple[str, ...] = ()

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


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise errors.ConfigError(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise errors.ConfigError(name, f"must be between {low} and {high}, got {value}")
    return value


def _seconds(name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise errors.ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
    if not low <= value <= high:
        raise errors.ConfigError(name, f"must be between {low} and {high} seconds, got {value}")
    return value


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    parsed = urllib.parse.urlsplit(raw)
    if parsed.scheme not in schemes:
        raise errors.ConfigError(name, f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    return raw


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
            raise errors.ConfigError("MAIL_TRANSPORTS", f"the label {label!r} is used twice")
        specs.append(dataclasses.replace(spec, label=label))
    if not specs:
        raise errors.ConfigError("MAIL_TRANSPORTS", "needs at least one transport")
    if any(spec.offline for spec in specs[:-1]):
        raise errors.ConfigError("MAIL_TRANSPORTS", "jsonl:// (the offline log) can only be the last transport")
    return tuple(specs)


def parse_transport(raw: str) -> TransportSpec:
    """Parse one transport URL such as ``smtp://user:pass@host:587?starttls=1``."""
    parsed = urllib.parse.urlsplit(raw)
    scheme = parsed.scheme
    if scheme not in TRANSPORT_SCHEMES:
        raise errors.ConfigError(
            "MAIL_TRANSPORTS",
            f"unknown transport {scheme + '://' if scheme else raw!r}; "
            f"use one of {', '.join(s + '://' for s in TRANSPORT_SCHEMES)}",
        )
    if scheme in ("devmail", "console"):
        if parsed.netloc or parsed.path or parsed.query:
            raise errors.ConfigError("MAIL_TRANSPORTS", f"{scheme}:// takes no host, path or options")
        return TransportSpec(scheme=scheme, label=scheme)
    if scheme == "jsonl":
        if parsed.netloc or not parsed.path.startswith("/") or parsed.path.endswith("/") or parsed.query:
            raise errors.ConfigError(
                "MAIL_TRANSPORTS",
                f"jsonl:// needs an absolute file path, e.g. jsonl:///var/lib/reachdbox/offline.jsonl; got {raw!r}",
            )
        return TransportSpec(scheme=scheme, label=scheme, path=urllib.parse.unquote(parsed.path))
    if not parsed.hostname:
        raise errors.ConfigError("MAIL_TRANSPORTS", f"{scheme}:// needs a host")
    try:
        port = parsed.port or (465 if scheme == "smtps" else 25)
    except ValueError:
        raise errors.ConfigError("MAIL_TRANSPORTS", f"{scheme}:// has an invalid port") from None
    query = dict(urllib.parse.parse_qsl(parsed.query))
    unknown = set(query) - {"starttls", "timeout"}
    if unknown:
        raise errors.ConfigError("MAIL_TRANSPORTS", f"unknown option(s) {', '.join(sorted(unknown))}")
    starttls = query.get("starttls", "0").lower() in ("1", "true", "yes", "on")
    if starttls and scheme == "smtps":
        raise errors.ConfigError("MAIL_TRANSPORTS", "smtps:// is already TLS; drop ?starttls")
    timeout = _seconds("MAIL_TRANSPORTS", query["timeout"], 0.1, 600) if "timeout" in query else None
    if parsed.password and scheme == "smtp" and not starttls and parsed.hostname not in _LOOPBACK:
        raise errors.ConfigError(
            "MAIL_TRANSPORTS",
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


def parse_windows(name: str, raw: str) -> tuple[RateWindow, ...]:
    """Parse comma-separated windows such as ``50/hour,5/second`` or ``20/10s``."""
    windows: list[RateWindow] = []
    for part in raw.split(","):
        match = _WINDOW.fullmatch(part.strip().lower())
        if not match or match[3] not in _UNITS:
            raise errors.ConfigError(
                name, f"{part.strip()!r} is not a limit like 50/hour, 5/second or 20/10s (units: s, m, h, d)"
            )
        count, seconds = int(match[1]), float(match[2] or 1) * _UNITS[match[3]]
        if count < 1 or not 0.01 <= seconds <= 31 * 86400:
            raise errors.ConfigError(name, f"{part.strip()!r}: need at least 1 send per 0.01 s to 31 days")
        windows.append(RateWindow(count, seconds))
    if len({w.seconds for w in windows}) != len(windows):
        raise errors.ConfigError(name, f"{raw!r} names the same window twice")
    return tuple(windows)


RateLimits = tuple[tuple[str, tuple[RateWindow, ...]], ...]


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise errors.ConfigError(name, f"must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


def parse_rate_limits(raw: str, transports: tuple[TransportSpec, ...]) -> RateLimits:
    """Parse RATE_LIMITS: ``label=windows`` entries separated by ``;``."""
    labels = [t.label for t in transports]
    limits: dict[str, tuple[RateWindow, ...]] = {}
    for entry in filter(None, (e.strip() for e in raw.split(";"))):
        label, sep, windows = entry.partition("=")
        label = label.strip()
        if not sep or not label:
            raise errors.ConfigError("RATE_LIMITS", f"{entry!r} is not label=limits, e.g. smtp=50/hour,5/second")
        if label not in labels:
            raise errors.ConfigError(
                "RATE_LIMITS", f"no transport is labelled {label!r}; MAIL_TRANSPORTS labels: {', '.join(labels)}"
            )
        if label in limits:
            raise errors.ConfigError("RATE_LIMITS", f"{label!r} appears twice")
        limits[label] = parse_windows("RATE_LIMITS", windows)
    return tuple(limits.items())


def _mail_from(raw: str) -> str:
    if "\r" in raw or "\n" in raw:
        raise errors.ConfigError("MAIL_FROM", "must not contain a line break")
    name, addr = parseaddr(raw)
    if "@" not in addr:
        raise errors.ConfigError("MAIL_FROM", f"must be an address like 'Name <noreply@example.com>', got {raw!r}")
    try:
        Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise errors.ConfigError("MAIL_FROM", f"is not a valid address: {exc}") from None
    return raw


def _ops_token(raw: str) -> str:
    if raw and len(raw) < 16:
        raise errors.ConfigError("OPS_TOKEN", "must be at least 16 characters (or empty to leave /metrics open)")
    return raw


def _hostport(name: str, raw: str) -> tuple[str, int]:
    host, _, port = raw.rpartition(":")
    if not host:
        raise errors.ConfigError(name, f"must be HOST:PORT, got {raw!r}")
    return host, _int(name, port, 1, 65535)


def _csv(name: str, raw: str, check: re.Pattern[str], what: str) -> tuple[str, ...]:
    items = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
    for item in items:
        if not check.fullmatch(item):
            raise errors.ConfigError(name, f"{item!r} is not {what}")
    return items


_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+")
_ONE_RATE = r"\d+\s*(/|per)\s*\d*\s*(second|minute|hour|day)s?"
_RATE = re.compile(rf"{_ONE_RATE}(\s*[;,]\s*{_ONE_RATE})*")


def _web(env_get: Any, d: Settings, app_env: str) -> dict[str, Any]:
    """Read and check the web app's settings (sign-in, API limits)."""
    client_id = env_get("GOOGLE_OAUTH_CLIENT_ID", d.google_oauth_client_id)
    client_secret = env_get("GOOGLE_OAUTH_CLIENT_SECRET", d.google_oauth_client_secret)
    if bool(client_id) != bool(client_secret):
        missing = "GOOGLE_OAUTH_CLIENT_SECRET" if client_id else "GOOGLE_OAUTH_CLIENT_ID"
        raise errors.ConfigError(missing, "must be set together with the other Google OAuth setting")
    urls = {
        key: _url(name, env_get(name, getattr(d, key)), ("https", "http"))
        for key, name in (
            ("google_oauth_authorize_url", "GOOGLE_OAUTH_AUTHORIZE_URL"),
            ("google_oauth_token_url", "GOOGLE_OAUTH_TOKEN_URL"),
            ("google_oauth_userinfo_url", "GOOGLE_OAUTH_USERINFO_URL"),
        )
    }
    if app_env == "production":
        for key, url in urls.items():
            if not url.startswith("https://"):
                raise errors.ConfigError(key.upper(), "must be an https:// URL in production")
    domains = _csv("ALLOWED_EMAIL_DOMAINS", env_get("ALLOWED_EMAIL_DOMAINS", ""), _DOMAIN, "a domain name")
    emails = _csv("ALLOWED_EMAILS", env_get("ALLOWED_EMAILS", ""), _EMAIL, "an email address")
    rate = env_get("API_RATE_LIMIT", d.api_rate_limit)
    if not _RATE.fullmatch(rate):
        raise errors.ConfigError("API_RATE_LIMIT", f"must look like '600/minute' or '10/second;600/hour', got {rate!r}")
    return {
        "google_oauth_client_id": client_id,
        "google_oauth_client_secret": client_secret,
        **urls,
        "allowed_email_domains": domains,
        "allowed_emails": emails,
        "api_rate_limit": rate,
        "web_max_request_bytes": _int(
            "WEB_MAX_REQUEST_BYTES", env_get("WEB_MAX_REQUEST_BYTES", d.web_max_request_bytes), 1024, 1024**3
        ),
        "web_trusted_proxies": _int("WEB_TRUSTED_PROXIES", env_get("WEB_TRUSTED_PROXIES", d.web_trusted_proxies), 0, 5),
        "batch_max_recipients": _int(
            "BATCH_MAX_RECIPIENTS", env_get("BATCH_MAX_RECIPIENTS", d.batch_max_recipients), 1, 1_000_000
        ),
        "operator_emails": _csv("OPERATOR_EMAILS", env_get("OPERATOR_EMAILS", ""), _EMAIL, "an email address"),
    }


def require_web_sign_in(settings: Settings) -> None:
    """Refuse to serve the web app in production without Google sign-in and an allow-list.

    Only the web calls this: workers and the CLI never sign anyone in.
    """
    if settings.app_env != "production":
        return
    if not settings.google_login:
        raise errors.ConfigError(
            "GOOGLE_OAUTH_CLIENT_ID", "must be set in production (the dev login exists only outside production)"
        )
    if not (settings.allowed_email_domains or settings.allowed_emails):
        raise errors.ConfigError(
            "ALLOWED_EMAIL_DOMAINS", "set it (or ALLOWED_EMAILS) in production, or any Google account could sign in"
        )


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting from ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    d = Settings()

    def get(name: str, default: object) -> str:
        value = env.get(name)
        return str(default) if value is None or value.strip() == "" else value.strip()

    app_env = get("APP_ENV", d.app_env)
    if app_env not in APP_ENVS:
        raise errors.ConfigError("APP_ENV", f"must be one of {', '.join(APP_ENVS)}, got {app_env!r}")
    secret_key = get("SECRET_KEY", d.secret_key)
    if app_env == "production" and (secret_key == d.secret_key or len(secret_key) < 32):
        raise errors.ConfigError("SECRET_KEY", "must be set to a random value of 32+ characters in production")
    transports = parse_transports(get("MAIL_TRANSPORTS", "devmail://"))
    devmail_host, devmail_port = _hostport("DEVMAIL_ADDR", get("DEVMAIL_ADDR", f"{d.devmail_host}:{d.devmail_port}"))
    log_level = get("LOG_LEVEL", d.log_level).upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise errors.ConfigError("LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    log_format = get("LOG_FORMAT", d.log_format).lower()
    if log_format not in ("auto", "json", "console"):
        raise errors.ConfigError("LOG_FORMAT", f"must be auto, json or console, got {log_format!r}")
    user_limit = get("USER_RATE_LIMIT", "")
    mail_domain = get("MAIL_DOMAIN", d.mail_domain)
    if not _DOMAIN.fullmatch(mail_domain):
        raise errors.ConfigError("MAIL_DOMAIN", f"must be a domain name, got {mail_domain!r}")
    settings = Settings(
        app_env=app_env,
        database_url=_url("DATABASE_URL", get("DATABASE_URL", d.database_url), ("postgresql", "postgres")),
        redis_url=_url("REDIS_URL", get("REDIS_URL", d.redis_url), ("redis", "rediss", "unix")),
        redis_prefix=get("REDIS_PREFIX", d.redis_prefix),
        mail_transports=transports,
        mail_from=_mail_from(get("MAIL_FROM", d.mail_from)),
        mail_domain=mail_domain,
        secret_key=secret_key,
        devmail_host=devmail_host,
        devmail_port=devmail_port,
        dev_user_email=get("DEV_USER_EMAIL", d.dev_user_email),
        worker_concurrency=_int("WORKER_CONCURRENCY", get("WORKER_CONCURRENCY", d.worker_concurrency), 1, 500),
        worker_heartbeat=_seconds("WORKER_HEARTBEAT", get("WORKER_HEARTBEAT", d.worker_heartbeat), 0.5, 60),
        worker_stalled_after=_seconds(
            "WORKER_STALLED_AFTER", get("WORKER_STALLED_AFTER", d.worker_stalled_after), 2, 3600
        ),
        worker_shutdown_timeout=_seconds(
            "WORKER_SHUTDOWN_TIMEOUT", get("WORKER_SHUTDOWN_TIMEOUT", d.worker_shutdown_timeout), 0, 3600
        ),
        worker_poll_interval=_seconds(
            "WORKER_POLL_INTERVAL", get("WORKER_POLL_INTERVAL", d.worker_poll_interval), 0.05, 60
        ),
        schedule_horizon=_seconds("SCHEDULE_HORIZON", get("SCHEDULE_HORIZON", d.schedule_horizon), 30, 86400),
        smtp_timeout=_seconds("SMTP_TIMEOUT", get("SMTP_TIMEOUT", d.smtp_timeout), 0.1, 600),
        retry_backoff_base=_seconds("RETRY_BACKOFF_BASE", get("RETRY_BACKOFF_BASE", d.retry_backoff_base), 0.01, 86400),
        retry_backoff_max=_seconds("RETRY_BACKOFF_MAX", get("RETRY_BACKOFF_MAX", d.retry_backoff_max), 0.01, 7 * 86400),
        max_attempts=_int("MAX_ATTEMPTS", get("MAX_ATTEMPTS", d.max_attempts), 1, 100),
        breaker_threshold=_int("BREAKER_THRESHOLD", get("BREAKER_THRESHOLD", d.breaker_threshold), 1, 1000),
        breaker_cooldown=_seconds("BREAKER_COOLDOWN", get("BREAKER_COOLDOWN", d.breaker_cooldown), 0.1, 86400),
        job_retention_hours=_int("JOB_RETENTION_HOURS", get("JOB_RETENTION_HOURS", d.job_retention_hours), 1, 24 * 366),
        ops_token=_ops_token(env.get("OPS_TOKEN", "").strip()),
        rate_limits=parse_rate_limits(get("RATE_LIMITS", ""), transports),
        user_rate_limit=parse_windows("USER_RATE_LIMIT", user_limit) if user_limit else (),
        rate_limit_margin=_seconds("RATE_LIMIT_MARGIN", get("RATE_LIMIT_MARGIN", d.rate_limit_margin), 0.01, 60),
        rate_limit_fair_share=_flag("RATE_LIMIT_FAIR_SHARE", get("RATE_LIMIT_FAIR_SHARE", "1")),
        log_level=log_level,
        log_format=log_format,
        **_web(get, d, app_env),
    )
    if settings.worker_stalled_after <= 2 * settings.worker_heartbeat:
        raise errors.ConfigError("WORKER_STALLED_AFTER", "must be more than twice WORKER_HEARTBEAT")
    if settings.retry_backoff_max < settings.retry_backoff_base:
        raise errors.ConfigError("RETRY_BACKOFF_MAX", "must not be below RETRY_BACKOFF_BASE")
    return settings
