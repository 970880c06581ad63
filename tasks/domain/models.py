"""Rows as frozen dataclasses, and the scope a caller acts in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Any


class Status(enum.StrEnum):
    """An email's status: the one list of them in Python, in the order pages show them.

    A ``str`` (``Status.SENT == "sent"``), so rows, JSON and SQL parameters carry
    the plain value. The database keeps its own copy, which migrations cannot
    take from here: the ``emails_status_check`` constraint and the transitions
    of the ``emails_guard_update`` trigger (sql/migrations/0004_offline_and_breakers.sql).
    tests/integration/test_status.py checks that they equal ``Status`` and ``TRANSITIONS``.
    """

    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNCERTAIN = "uncertain"
    #: Written to the offline log while every real transport was down (not sent).
    OFFLINE = "offline"


#: The status machine the database enforces: where each status may go next.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.SCHEDULED: frozenset({Status.SENDING, Status.CANCELLED}),
    Status.SENDING: frozenset({Status.SENT, Status.FAILED, Status.SCHEDULED, Status.UNCERTAIN, Status.OFFLINE}),
    Status.SENT: frozenset(),
    Status.FAILED: frozenset({Status.SCHEDULED}),
    Status.CANCELLED: frozenset(),
    Status.UNCERTAIN: frozenset({Status.SCHEDULED, Status.SENT, Status.FAILED}),
    #: Replayed to the real transports, or cancelled.
    Status.OFFLINE: frozenset({Status.SCHEDULED, Status.CANCELLED}),
}
#: Statuses from which nothing more happens without someone acting.
TERMINAL = frozenset({Status.SENT, Status.FAILED, Status.CANCELLED, Status.UNCERTAIN, Status.OFFLINE})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scope:
    """Whose rows a caller may touch: one organization's, or (operators) every one's.

    ``user_id`` is who acts (the owner of what they create); ``mine`` narrows
    lists to that user's own emails (the outbox's "mine" filter).
    """

    org_id: int | None
    user_id: int | None = None
    mine: bool = False

    @property
    def any_org(self) -> bool:
        return self.org_id is None

    def params(self) -> dict[str, Any]:
        """Return the query parameters that scope a query to this caller."""
        return {
            "any_org": self.org_id is None,
            "org_id": self.org_id or 0,
            "mine_only": self.mine and self.user_id is not None,
            "owner_id": self.user_id or 0,
        }


#: The operator's scope (CLI): every organization's rows.
OPERATOR = Scope(org_id=None)


def in_org(org_id: int, user_id: int | None = None, *, mine: bool = False) -> Scope:
    """Return the scope of a member of one organization."""
    return Scope(org_id=org_id, user_id=user_id, mine=mine)


@dataclasses.dataclass(frozen=True, kw_only=True)
class User:
    id: int
    email: str
    name: str
    google_sub: str | None
    session_version: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> User:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Email:
    id: uuid.UUID
    org_id: int
    owner_id: int
    from_addr: str
    reply_to: str | None
    to_addrs: list[str]
    cc_addrs: list[str]
    bcc_addrs: list[str]
    subject: str
    body_text: str
    body_html: str | None
    send_at: dt.datetime
    send_tz: str
    status: Status
    attempts: int
    next_attempt_at: dt.datetime
    waiting_reason: str | None
    last_error: str | None
    message_id: str
    transport: str | None
    provider_reply: str | None
    refused_recipients: dict[str, str]
    job_id: int | None
    idempotency_key: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    data_started_at: dt.datetime | None
    sent_at: dt.datetime | None
    #: The batch (send to a list) it belongs to, if any (migration 0002).
    batch_id: uuid.UUID | None = None
    #: When it was written to the offline log (kept after a replay).
    offline_at: dt.datetime | None = None
    #: The rate-limit slot reserved for this email (it is sent then) and the
    #: transport label it was reserved on (None: only the user's own limit).
    rate_slot: dt.datetime | None = None
    rate_transport: str | None = None
    #: The recurrence it is an occurrence of, and that occurrence's instant (migration 0014).
    recurrence_id: uuid.UUID | None = None
    occurrence_at: dt.datetime | None = None
    #: The provider's own id of the message, when its API gave one (SES, SendGrid; migration 0018).
    provider_message_id: str | None = None
    #: Where it stands after the provider took it, from the provider's events (migration 0019):
    #: delivered, deferred, bounced (``bounce_type`` hard or soft) or complained; None: nothing heard.
    delivery: str | None = None
    delivery_at: dt.datetime | None = None
    bounce_type: str | None = None
    delivery_detail: str | None = None
    #: A one-off email that carries List-Unsubscribe (a batch's and a recurrence's always do).
    list_unsubscribe: bool = False
    #: Not a column: its recipients on a suppression list when it was claimed, as
    #: ``address (reason)`` (the claim statements only); it is not sent to them.
    suppressed: list[str] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Email:
        fields = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}
        return cls(**fields | {"status": Status(row["status"])})

    @property
    def recipients(self) -> list[str]:
        """Return every envelope recipient: To, Cc and Bcc."""
        return [*self.to_addrs, *self.cc_addrs, *self.bcc_addrs]

    @property
    def unsubscribable(self) -> bool:
        """Tell whether its message carries List-Unsubscribe: a batch's, a recurrence's, or one that asked."""
        return self.list_unsubscribe or self.batch_id is not None or self.recurrence_id is not None

    def suppressed_addresses(self) -> set[str]:
        """The (lower-cased) recipients it is not sent to: on a suppression list when it was claimed."""
        return {entry.split(" (", 1)[0] for entry in self.suppressed or ()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    id: int
    at: dt.datetime
    kind: str
    job_id: int | None
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}


def json_value(value: Any) -> Any:
    """Encode one value as JSON shows it (instants in ISO 8601 with their offset, ids as text)."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
