"""An organization's settings: its sending identity, its own mail transports, its daily quota, its Slack.

Shared by the dashboard, the API and the CLI. Each change is checked whole
before anything is stored, stored with its audit line in one transaction
(``tasks.domain.audit``), and picked up by every worker within a second
(tasks/delivery/orgs.py). A transport's URL is stored encrypted
(``tasks.core.crypto``) and only ever shown back masked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
import socket
import urllib.parse
from typing import Any

from tasks.core import crypto, db, errors
from tasks.core.config import RateWindow, Settings, parse_windows
from tasks.delivery import orgs, transports
from tasks.domain import audit, validation
from tasks.webhooks import endpoints as webhook_endpoints

#: Most transports one organization may bring.
MAX_TRANSPORTS = 5
#: What an organization's transport label may be (it becomes ``o<org>.<label>``).
LABEL = re.compile(r"[a-z][a-z0-9_-]{0,19}")
#: The ports an organization's transport may use in production (SMTP's own).
SMTP_PORTS = (25, 465, 587, 2525)
MASK = "****"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Provider:
    """One of an organization's transports, as it is shown: never its password."""

    label: str
    position: int
    url_masked: str
    rate_limit: str
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Provider:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "position": self.position,
            "url": self.url_masked,
            "rate_limit": self.rate_limit,
            "created_at": self.created_at.isoformat(),
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class OrgSettings:
    """What an organization's settings page and ``GET /api/v1/org/settings`` show."""

    org_id: int
    name: str
    from_name: str | None
    from_address: str | None
    reply_to: str | None
    providers_mode: str
    daily_quota: int | None
    suspended_at: dt.datetime | None
    suspended_reason: str | None
    providers: list[Provider]
    #: The organization's Slack incoming webhook as shown (its secret part masked), or None.
    slack_webhook_masked: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "name": self.name,
            "identity": {"from_name": self.from_name, "from_address": self.from_address, "reply_to": self.reply_to},
            "providers_mode": self.providers_mode,
            "daily_quota": self.daily_quota,
            "suspended": self.suspended_at is not None,
            "suspended_reason": self.suspended_reason,
            "providers": [p.as_dict() for p in self.providers],
        }


def get(conn: db.Conn, org_id: int) -> OrgSettings:
    """Return the organization's settings; ``NotFound`` if there is no such organization."""
    row = db.one(conn, "org_settings_get", org_id=org_id)
    if row is None:
        raise errors.NotFound("No such organization.")
    providers = [Provider.from_row(r) for r in db.all_rows(conn, "org_transports_list", org_id=org_id)]
    fields = {f.name for f in dataclasses.fields(OrgSettings)} - {"providers"}
    return OrgSettings(**{k: row[k] for k in fields}, providers=providers)


# --- The sending identity.


def allowed_domain(address: str, settings: Settings) -> bool:
    """Tell whether ``address`` is in a domain ``ORG_SENDING_DOMAINS`` allows (or one below it)."""
    domain = address.rpartition("@")[2].lower()
    allowed = settings.org_sending_domains
    if not allowed:
        return settings.app_env != "production"
    return any(domain == d or domain.endswith("." + d) for d in allowed)


def _identity_address(raw: Any, field: str, settings: Settings) -> str | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    address = validation.user_address(raw, field=field)
    if not allowed_domain(address, settings):
        if not settings.org_sending_domains:
            why = "this deployment allows no organization its own sending address (ORG_SENDING_DOMAINS is empty)"
        else:
            domains = ", ".join(settings.org_sending_domains)
            why = f"{address!r} is outside the domains this deployment allows: {domains}"
        raise errors.ValidationError(f"{field}: {why}", field=field)
    return address


def check_identity(settings: Settings, *, from_name: Any, from_address: Any, reply_to: Any) -> orgs.Identity:
    """Check a sending identity whole; ``ValidationError`` naming the first bad field."""
    name: str | None = None
    if from_name is not None:
        if not isinstance(from_name, str):
            raise errors.ValidationError("from_name: must be text", field="from_name")
        name = from_name.strip() or None
        if name is not None:
            problem = validation.header_problem(name)
            if problem or len(name) > 200:
                why = problem or "at most 200 characters"
                raise errors.ValidationError(f"from_name: {why}", field="from_name")
    return orgs.Identity(
        from_name=name,
        from_address=_identity_address(from_address, "from_address", settings),
        reply_to=_identity_address(reply_to, "reply_to", settings),
    )


def set_identity(conn: db.Conn, org_id: int, actor_id: int | None, identity: orgs.Identity) -> None:
    """Store the organization's sending identity, with its audit line."""
    with conn.transaction():
        db.run(
            conn,
            "org_identity_set",
            org_id=org_id,
            from_name=identity.from_name,
            from_address=identity.from_address,
            reply_to=identity.reply_to,
        )
        audit.record(conn, org_id, actor_id, "settings.identity", "sending identity", dataclasses.asdict(identity))


def check_mode(mode: Any) -> str:
    """Check how the organization's transports join the deployment's: ``before`` or ``instead``."""
    if mode not in orgs.MODES:
        raise errors.ValidationError("providers_mode: must be 'before' or 'instead'", field="providers_mode")
    return str(mode)


def set_mode(conn: db.Conn, org_id: int, actor_id: int | None, mode: Any) -> None:
    """Say whether the organization's transports come before the deployment's or replace them."""
    mode = check_mode(mode)
    with conn.transaction():
        db.run(conn, "org_mode_set", org_id=org_id, mode=mode)
        audit.record(conn, org_id, actor_id, "settings.providers_mode", mode)


def set_quota(conn: db.Conn, org_id: int, actor_id: int | None, quota: int | None) -> None:
    """Set the organization's daily quota (an operator's decision; None: no quota)."""
    if quota is not None and not 0 <= quota <= 100_000_000:
        raise errors.ValidationError("daily_quota: must be from 0 to 100000000, or empty", field="daily_quota")
    with conn.transaction():
        db.run(conn, "org_quota_set", org_id=org_id, quota=quota)
        audit.record(conn, org_id, actor_id, "settings.daily_quota", "" if quota is None else str(quota))


# --- The organization's own transports.


def mask(url: str) -> str:
    """The URL as it may be shown: its password replaced by ****."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def _public(host: str) -> bool:
    """Tell whether every address ``host`` has is on the public internet."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_global for info in infos)


def check_transport(settings: Settings, url: Any) -> transports.TransportSpec:
    """Check an organization's transport URL: the forms of ``MAIL_TRANSPORTS``, SMTP only.

    In production its host must be on the public internet and its port an SMTP
    port: an organization must not make the workers talk to the deployment's own
    services (its Redis, its database) on its behalf.
    """
    if not isinstance(url, str) or not url.strip():
        raise errors.ValidationError("url: must be a transport URL such as smtps://user:pass@host:465", field="url")
    try:
        spec = transports.parse_transport(url.strip())
    except errors.ConfigError as exc:
        reason = exc.message.partition(": ")[2] or exc.message
        try:
            password = urllib.parse.urlsplit(url).password
        except ValueError:
            password = None
        if password:  # the reason may quote the URL: never its password
            reason = reason.replace(password, MASK)
        raise errors.ValidationError(f"url: {reason}", field="url") from None
    if spec.scheme not in orgs.ORG_SCHEMES:
        raise errors.ValidationError("url: an organization's transport is smtp:// or smtps://", field="url")
    if settings.app_env == "production":
        if spec.port not in SMTP_PORTS:
            ports = ", ".join(map(str, SMTP_PORTS))
            raise errors.ValidationError(f"url: the port must be an SMTP port ({ports})", field="url")
        if not _public(spec.host):
            raise errors.ValidationError(f"url: {spec.host!r} is not a public internet host", field="url")
    return spec


def check_rate_limit(raw: Any) -> tuple[str, tuple[RateWindow, ...]]:
    """Check a provider's limits (``20/10s,500/hour``; empty: none); return them as stored and parsed."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return "", ()
    if not isinstance(raw, str):
        raise errors.ValidationError("rate_limit: must be text such as 20/10s,500/hour", field="rate_limit")
    try:
        windows = parse_windows("rate_limit", raw.strip())
    except errors.ConfigError as exc:
        raise errors.ValidationError(exc.message, field="rate_limit") from None
    return ",".join(str(w) for w in windows), windows


def add_transport(
    conn: db.Conn, settings: Settings, org_id: int, actor_id: int | None, *, label: Any, url: Any, rate_limit: Any
) -> Provider:
    """Add a transport last in the organization's order, its URL encrypted; with its audit line."""
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise errors.ValidationError("label: a lower-case letter, then up to 19 letters, digits, - or _", field="label")
    check_transport(settings, url)
    stored_limit, _ = check_rate_limit(rate_limit)
    try:
        secret = crypto.Box(settings).encrypt(url.strip()).decode("ascii")
    except crypto.KeysMissing as exc:
        raise errors.ValidationError(f"url: cannot be stored: {exc.message}", field="url") from None
    masked = mask(url.strip())
    with conn.transaction():
        count = len(db.all_rows(conn, "org_transports_list", org_id=org_id))
        if count >= MAX_TRANSPORTS:
            raise errors.ValidationError(f"label: at most {MAX_TRANSPORTS} transports per organization", field="label")
        row = db.one(
            conn,
            "org_transport_add",
            org_id=org_id,
            label=label,
            url_masked=masked,
            url_secret=secret,
            rate_limit=stored_limit,
        )
        if row is None:
            raise errors.ValidationError(f"label: {label!r} is already used", field="label")
        audit.record(conn, org_id, actor_id, "provider.add", label, {"url": masked, "rate_limit": stored_limit})
    return Provider.from_row(row)


def remove_transport(conn: db.Conn, org_id: int, actor_id: int | None, label: str) -> None:
    """Remove one of the organization's transports; ``NotFound`` if it has none by that label."""
    with conn.transaction():
        row = db.one(conn, "org_transport_remove", org_id=org_id, label=label)
        if row is None:
            raise errors.NotFound("No such transport.")
        audit.record(conn, org_id, actor_id, "provider.remove", label, {"url": row["url_masked"]})


def rotate_keys(conn: db.Conn, settings: Settings) -> int:
    """Re-encrypt every stored secret with the first key of ``SECRET_KEYS``; return how many.

    One transaction: every secret is rotated, or none (a secret no key opens stops it,
    ``Undecryptable``). Afterwards the keys after the first may be removed.
    """
    box = crypto.Box(settings)
    with conn.transaction():
        rows = db.all_rows(conn, "org_transport_secrets")
        for row in rows:
            rotated = box.rotate(row["url_secret"].encode("ascii")).decode("ascii")
            db.run(conn, "org_transport_secret_set", org_id=row["org_id"], label=row["label"], url_secret=rotated)
        hooks = db.all_rows(conn, "org_slack_secrets")
        for row in hooks:
            rotated = box.rotate(row["slack_webhook_secret"].encode("ascii")).decode("ascii")
            db.run(conn, "org_slack_secret_set", org_id=row["org_id"], secret=rotated)
        endpoints = webhook_endpoints.rotate_keys(conn, box)
    return len(rows) + len(hooks) + endpoints


# --- The organization's Slack incoming webhook (its own failures: docs/alerts.md).

#: Where Slack's incoming webhooks live; in production an organization's must be there.
SLACK_HOST = "hooks.slack.com"


def mask_slack(url: str) -> str:
    """The webhook's URL as it may be shown: its last part (the secret) replaced by ****."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/").rpartition("/")[0] + "/" + MASK
    return urllib.parse.urlunsplit(parts._replace(path=path, query="", fragment=""))


def check_slack_webhook(settings: Settings, raw: Any) -> str | None:
    """Check a Slack incoming webhook URL (empty: none); in production only ``https://hooks.slack.com/…``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str) or len(raw) > 500 or any(c.isspace() for c in raw.strip()):
        raise errors.ValidationError("slack_webhook: must be a URL of at most 500 characters", field="slack_webhook")
    url: str = raw.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise errors.ValidationError("slack_webhook: is not a URL", field="slack_webhook") from None
    if settings.app_env == "production":
        if parts.scheme != "https" or parts.hostname != SLACK_HOST or port not in (None, 443):
            raise errors.ValidationError(
                f"slack_webhook: must be a Slack incoming webhook, https://{SLACK_HOST}/services/…",
                field="slack_webhook",
            )
    elif parts.scheme not in ("https", "http") or not parts.hostname:
        raise errors.ValidationError("slack_webhook: must be an http(s):// URL", field="slack_webhook")
    if parts.username or parts.password or parts.path.rstrip("/").count("/") < 2:
        raise errors.ValidationError(
            "slack_webhook: must look like https://hooks.slack.com/services/T…/B…/…", field="slack_webhook"
        )
    return url


def set_slack_webhook(conn: db.Conn, settings: Settings, org_id: int, actor_id: int | None, url: Any) -> None:
    """Store (encrypted) or remove (empty) the organization's Slack incoming webhook, with its audit line."""
    checked = check_slack_webhook(settings, url)
    secret = masked = None
    if checked is not None:
        try:
            secret = crypto.Box(settings).encrypt(checked).decode("ascii")
        except crypto.KeysMissing as exc:
            raise errors.ValidationError(
                f"slack_webhook: cannot be stored: {exc.message}", field="slack_webhook"
            ) from None
        masked = mask_slack(checked)
    with conn.transaction():
        db.run(conn, "org_slack_set", org_id=org_id, secret=secret, masked=masked)
        audit.record(conn, org_id, actor_id, "settings.slack_webhook", masked or "removed")
