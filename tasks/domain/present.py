"""An email as JSON-ready data: the one shape the API, the CLI's ``inspect`` and live status show.

Field names and order are the API's (documented in ``webapp/api/schemas.py``, ``Email``):
``to`` for the ``to_addrs`` column, ``time_zone`` for ``send_tz``, times in ISO 8601 with an
offset. Live status (the stream's events and the page's snapshot, ``webapp/live.py``) carries
the ``STATUS_FIELDS`` of the same shape; the CLI adds the columns only an operator needs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from tasks.domain import explain, zones
from tasks.domain.models import Email, Event, json_value


def _local(email: Email) -> str | None:
    """Return the send time in the zone it was chosen in (in UTC if it cannot be shown there)."""
    return zones.local(email.send_at, email.send_tz).isoformat()


#: Every field, in the documented order, and how it is read from an email (``json_value`` encodes it).
FIELDS: dict[str, Callable[[Email], Any]] = {
    "id": lambda e: e.id,
    "status": lambda e: e.status,
    "to": lambda e: e.to_addrs,
    "cc": lambda e: e.cc_addrs,
    "bcc": lambda e: e.bcc_addrs,
    "subject": lambda e: e.subject,
    "send_at": lambda e: e.send_at,
    "send_at_local": _local,
    "time_zone": lambda e: e.send_tz,
    "next_attempt_at": lambda e: e.next_attempt_at,
    "waiting_reason": lambda e: e.waiting_reason,
    "why": explain.why,
    "attempts": lambda e: e.attempts,
    "last_error": lambda e: e.last_error,
    "message_id": lambda e: e.message_id,
    "transport": lambda e: e.transport,
    "provider_reply": lambda e: e.provider_reply,
    "provider_message_id": lambda e: e.provider_message_id,
    "refused_recipients": lambda e: e.refused_recipients,
    "batch_id": lambda e: e.batch_id,
    "idempotency_key": lambda e: e.idempotency_key,
    "created_at": lambda e: e.created_at,
    "updated_at": lambda e: e.updated_at,
    "sent_at": lambda e: e.sent_at,
    "delivery": lambda e: e.delivery,
    "bounce_type": lambda e: e.bounce_type,
    "delivery_detail": lambda e: e.delivery_detail,
    "delivery_at": lambda e: e.delivery_at,
    "list_unsubscribe": lambda e: e.unsubscribable,
}
#: The bodies, only when asked (lists leave them out).
BODY_FIELDS = ("body_text", "body_html")
#: Columns only an operator sees (the CLI's ``inspect``): whose it is, its job, its rate-limit slot.
INTERNAL_FIELDS = (
    "org_id",
    "owner_id",
    "from_addr",
    "reply_to",
    "job_id",
    "data_started_at",
    "offline_at",
    "rate_slot",
    "rate_transport",
)
#: Where an email stands: what live status carries about it. Each is named as its column,
#: so the page's snapshot (``status_json``) shapes a bare status row the same way.
STATUS_FIELDS = ("id", "status", "next_attempt_at", "waiting_reason", "sent_at")


def email_json(
    email: Email,
    *,
    only: Collection[str] | None = None,
    with_body: bool = False,
    events: list[Event] | None = None,
    internals: bool = False,
) -> dict[str, Any]:
    """Represent an email: every field (or ``only`` these), the bodies, its timeline, the operator's columns."""
    data = {name: json_value(read(email)) for name, read in FIELDS.items() if only is None or name in only}
    if with_body:
        data.update((name, getattr(email, name)) for name in BODY_FIELDS)
    if events is not None:
        data["events"] = [e.as_dict() for e in events]
    if internals:
        data.update((name, json_value(getattr(email, name))) for name in INTERNAL_FIELDS)
    return data


def status_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """Represent where an email stands from a row of just those columns (``email_json(only=STATUS_FIELDS)``)."""
    return {name: json_value(row[name]) for name in STATUS_FIELDS}
