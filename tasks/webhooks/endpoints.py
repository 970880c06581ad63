"""An organization's webhook endpoints: create (the secret shown once), list, read, change,
delete, rotate the secret, send a test event; their deliveries and each one's attempts;
deliver again.

The secret (``whsec_`` and 32 random bytes in base64, as the Standard Webhooks
specification has it) is stored as a Fernet token (``tasks.core.crypto``) and is in
no answer but the one that created or rotated it. Every function is scoped by the
caller's organization: another organization's endpoint is "not found".
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import secrets
import uuid
from typing import Any

from tasks.core import crypto, db, errors
from tasks.core.config import Settings
from tasks.domain import audit
from tasks.webhooks import events, safety

SECRET_PREFIX = "whsec_"
MAX_DESCRIPTION = 200
PAGE = 50


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Endpoint:
    id: uuid.UUID
    org_id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    failing_since: dt.datetime | None
    disabled_reason: str | None
    previous_secret_until: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    #: Deliveries waiting (in lists).
    pending: int = 0
    #: The secret, only in the answer that created or rotated it.
    secret: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], secret: str | None = None) -> Endpoint:
        fields = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row and f.name != "secret"}
        return cls(**fields, secret=secret)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "url": self.url,
            "description": self.description,
            "event_types": list(self.event_types),
            "enabled": self.enabled,
            "failing_since": _iso(self.failing_since),
            "disabled_reason": self.disabled_reason,
            "previous_secret_valid_until": _iso(self.previous_secret_until),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "pending": self.pending,
        }
        if self.secret is not None:
            out["secret"] = self.secret
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Delivery:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    created_at: dt.datetime
    status: str
    attempts: int
    next_attempt_at: dt.datetime | None
    finished_at: dt.datetime | None
    last_status_code: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Delivery:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})

    @property
    def webhook_id(self) -> str:
        return message_id(self.id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "webhook_id": self.webhook_id,
            "endpoint_id": str(self.endpoint_id),
            "event_type": self.event_type,
            "payload": self.payload,
            "created_at": _iso(self.created_at),
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "finished_at": _iso(self.finished_at),
            "last_status_code": self.last_status_code,
        }


def message_id(delivery_id: uuid.UUID | str) -> str:
    """The ``webhook-id`` of a delivery: the same on every attempt."""
    return "msg_" + uuid.UUID(str(delivery_id)).hex


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _uuid(raw: object, what: str = "webhook endpoint") -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise errors.NotFound(f"No such {what}.") from None


def _types(raw: object) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise errors.ValidationError(
            "event_types: give a list of one or more of " + ", ".join(events.TYPES), field="event_types"
        )
    for kind in raw:
        if kind not in events.TYPES:
            raise errors.ValidationError(
                f"event_types: {str(kind)[:50]!r} is not one of " + ", ".join(events.TYPES), field="event_types"
            )
    return [t for t in events.TYPES if t in raw]


def _description(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > MAX_DESCRIPTION or any(ord(c) < 32 for c in raw):
        raise errors.ValidationError(
            f"description: at most {MAX_DESCRIPTION} characters on one line", field="description"
        )
    return raw.strip()


def _enabled(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise errors.ValidationError("enabled: true or false", field="enabled")
    return raw


def create(
    conn: db.Conn,
    settings: Settings,
    org_id: int,
    actor_id: int | None,
    *,
    url: object,
    event_types: object,
    description: object = None,
    enabled: object = True,
) -> Endpoint:
    """Add an endpoint; the answer holds its secret, the only one that ever will."""
    checked_url = safety.check_url(url, settings)
    kinds = _types(event_types)
    text = _description(description)
    on = _enabled(enabled)
    secret = new_secret()
    token = crypto.Box(settings).encrypt(secret).decode("ascii")
    with conn.transaction():
        row = db.one(
            conn, "webhook_endpoint_insert", org_id=org_id, created_by=actor_id, url=checked_url,
            description=text, event_types=kinds, enabled=on, secret=token,
        )  # fmt: skip
        assert row is not None
        audit.record(conn, org_id, actor_id, "webhook.create", str(row["id"]), {"url": checked_url})
    return Endpoint.from_row(row | {"pending": 0}, secret=secret)


def list_endpoints(conn: db.Conn, org_id: int) -> list[Endpoint]:
    return [Endpoint.from_row(r) for r in db.all_rows(conn, "webhook_endpoints_list", org_id=org_id)]


def get(conn: db.Conn, org_id: int, endpoint_id: object) -> Endpoint:
    row = db.one(conn, "webhook_endpoint_get", org_id=org_id, id=_uuid(endpoint_id))
    if row is None:
        raise errors.NotFound("No such webhook endpoint.")
    return Endpoint.from_row(row)


def update(
    conn: db.Conn, settings: Settings, org_id: int, actor_id: int | None, endpoint_id: object, changes: dict[str, Any]
) -> Endpoint:
    """Change the fields given (url, event_types, description, enabled); the others stay."""
    current = get(conn, org_id, endpoint_id)
    url = safety.check_url(changes["url"], settings) if "url" in changes else current.url
    kinds = _types(changes["event_types"]) if "event_types" in changes else current.event_types
    text = _description(changes["description"]) if "description" in changes else current.description
    on = _enabled(changes["enabled"]) if "enabled" in changes else current.enabled
    with conn.transaction():
        row = db.one(
            conn, "webhook_endpoint_update", org_id=org_id, id=current.id, url=url, event_types=kinds,
            description=text, enabled=on,
        )  # fmt: skip
        if row is None:
            raise errors.NotFound("No such webhook endpoint.")
        audit.record(conn, org_id, actor_id, "webhook.edit", str(current.id), {"fields": sorted(changes)})
    return Endpoint.from_row(row)


def delete(conn: db.Conn, org_id: int, actor_id: int | None, endpoint_id: object) -> None:
    """Delete an endpoint with its deliveries and their log."""
    with conn.transaction():
        row = db.one(conn, "webhook_endpoint_delete", org_id=org_id, id=_uuid(endpoint_id))
        if row is None:
            raise errors.NotFound("No such webhook endpoint.")
        audit.record(conn, org_id, actor_id, "webhook.delete", str(row["id"]), {})


def rotate(conn: db.Conn, settings: Settings, org_id: int, actor_id: int | None, endpoint_id: object) -> Endpoint:
    """A new secret (in the answer, once); the current one keeps signing for WEBHOOK_ROTATION_OVERLAP."""
    secret = new_secret()
    token = crypto.Box(settings).encrypt(secret).decode("ascii")
    with conn.transaction():
        row = db.one(
            conn, "webhook_endpoint_rotate", org_id=org_id, id=_uuid(endpoint_id), secret=token,
            overlap=dt.timedelta(seconds=settings.webhook_rotation_overlap),
        )  # fmt: skip
        if row is None:
            raise errors.NotFound("No such webhook endpoint.")
        audit.record(conn, org_id, actor_id, "webhook.rotate", str(row["id"]), {})
    return Endpoint.from_row(row, secret=secret)


def send_test(conn: db.Conn, org_id: int, endpoint_id: object) -> Delivery:
    """Send the endpoint a ``webhook.test`` event now; the delivery (it goes in the log)."""
    endpoint = get(conn, org_id, endpoint_id)
    with conn.transaction():
        [row] = events.emit_to(
            conn, org_id, endpoint.id, events.TEST, {"endpoint_id": str(endpoint.id), "message": "a test event"}
        )
    return delivery(conn, org_id, endpoint.id, row["id"])


def deliveries(
    conn: db.Conn, org_id: int, endpoint_id: object, *, before: tuple[dt.datetime, uuid.UUID] | None = None
) -> list[Delivery]:
    """An endpoint's deliveries, newest first, ``PAGE`` at a time."""
    endpoint = get(conn, org_id, endpoint_id)
    rows = db.all_rows(
        conn, "webhook_deliveries_list", org_id=org_id, endpoint_id=endpoint.id,
        before_at=before[0] if before else None, before_id=before[1] if before else None, limit=PAGE,
    )  # fmt: skip
    return [Delivery.from_row(r) for r in rows]


def delivery(conn: db.Conn, org_id: int, endpoint_id: object, delivery_id: object) -> Delivery:
    get(conn, org_id, endpoint_id)
    row = db.one(conn, "webhook_delivery_get", org_id=org_id, endpoint_id=_uuid(endpoint_id), id=_uuid(delivery_id))
    if row is None:
        raise errors.NotFound("No such delivery.")
    return Delivery.from_row(row)


def attempts(conn: db.Conn, org_id: int, endpoint_id: object, delivery_id: object) -> list[dict[str, Any]]:
    """Each attempt of a delivery: when, the status code, the latency, the answer's first 1 KB."""
    found = delivery(conn, org_id, endpoint_id, delivery_id)
    rows = db.all_rows(conn, "webhook_attempts_list", org_id=org_id, delivery_id=found.id)
    return [
        {
            "at": _iso(r["at"]),
            "status_code": r["status_code"],
            "latency_ms": r["latency_ms"],
            "response": r["response"],
            "error": r["error"],
        }
        for r in rows
    ]


def redeliver(conn: db.Conn, org_id: int, endpoint_id: object, delivery_id: object) -> Delivery:
    """Deliver again now (the same ``webhook-id``), with a new day of retries."""
    found = delivery(conn, org_id, endpoint_id, delivery_id)
    with conn.transaction():
        db.one(conn, "webhook_redeliver", org_id=org_id, id=found.id)
    return delivery(conn, org_id, endpoint_id, found.id)


def rotate_keys(conn: db.Conn, box: crypto.Box) -> int:
    """Re-encrypt every endpoint's secrets with the first key (in the caller's transaction)."""
    rows = db.all_rows(conn, "webhook_secrets")
    for r in rows:
        previous = r["previous_secret"]
        db.run(
            conn, "webhook_secret_set", org_id=r["org_id"], id=r["id"],
            secret=box.rotate(r["secret"].encode("ascii")).decode("ascii"),
            previous_secret=box.rotate(previous.encode("ascii")).decode("ascii") if previous else None,
        )  # fmt: skip
    return len(rows)
