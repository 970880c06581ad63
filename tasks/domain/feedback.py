"""Delivery feedback: what providers say happened after they took an email.

Each provider's payload (SendGrid's Event Webhook, SES notifications through SNS, the
generic signed endpoint for SMTP relays) becomes a list of ``Event``: one recipient,
one happening (``delivered``, ``deferred``, ``bounced``, ``complained``,
``unsubscribed``), with the provider's own event id. ``ingest`` takes a whole
request's events in one statement (``feedback_ingest``, sql/queries.sql):

- an event id seen before is ignored (``feedback_seen``): redeliveries change nothing;
- an event is matched to its email by our Message-ID (``<EMAIL_ID@MAIL_DOMAIN>``: the
  id is read from it, then the row is found by primary key and its Message-ID compared),
  or by our email id where the provider echoes it (custom args); one for no email of
  ours is counted as unknown and dropped (the caller answers 2xx all the same);
- the email's delivery state only moves up ``RANK``: a late ``delivered`` never hides a
  bounce; every matched event goes on the email's timeline;
- a hard bounce, a complaint or an unsubscribe puts the recipient on the email's
  organization's suppression list (tasks/domain/suppression.py).

The signatures are checked before this, by the web endpoints (webapp/feedback.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from psycopg.types.json import Jsonb

from tasks.core import db
from tasks.webhooks import events as outbox

Kind = Literal["delivered", "deferred", "bounced", "complained", "unsubscribed"]
KINDS: tuple[Kind, ...] = ("delivered", "deferred", "bounced", "complained", "unsubscribed")
#: The delivery states, in the order they may replace one another (the SQL has the same CASE).
STATES = ("deferred", "delivered", "bounced", "complained")
#: An email's delivery state only moves up: a soft bounce ranks under a hard one.
RANK = {"deferred": 10, "delivered": 20, "bounced:soft": 30, "bounced:hard": 40, "complained": 50}
_MESSAGE_ID = re.compile(r"<?\s*([0-9a-fA-F-]{36})@[^>\s]+\s*>?")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """One provider event for one recipient."""

    source: Literal["sendgrid", "ses", "webhook"]
    #: The provider's id for this event (redeliveries carry the same one).
    event_id: str
    kind: Kind
    recipient: str
    #: Our Message-ID as the provider echoes it, and/or our email id (custom args).
    message_id: str | None = None
    email_id: uuid.UUID | None = None
    bounce_type: Literal["hard", "soft"] | None = None
    #: The provider's diagnostic: a bounce's SMTP reply, a complaint's feedback type.
    diagnostic: str = ""
    at: dt.datetime | None = None

    def target(self) -> uuid.UUID | None:
        """The email this event says it is about (None: none of ours)."""
        if self.email_id is not None:
            return self.email_id
        return email_id_of(self.message_id)


def email_id_of(message_id: str | None) -> uuid.UUID | None:
    """Read our email id out of our Message-ID (``<EMAIL_ID@MAIL_DOMAIN>``); None for any other."""
    if not message_id:
        return None
    found = _MESSAGE_ID.fullmatch(message_id.strip())
    if found is None:
        return None
    try:
        return uuid.UUID(found.group(1))
    except ValueError:
        return None


def parse_uuid(raw: Any) -> uuid.UUID | None:
    """An email id given as text (a custom arg), or None."""
    if not isinstance(raw, str):
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Changed:
    """An email whose delivery state changed: what live status tells its organization."""

    email_id: uuid.UUID
    org_id: int
    status: str
    delivery: str
    bounce_type: str | None
    delivery_detail: str | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ingested:
    """What one request's events did."""

    received: int
    #: Events seen before (same provider event id): ignored.
    duplicates: int
    #: New events for no email of ours: logged and dropped.
    unknown: int
    #: New events matched to an email (on its timeline).
    matched: int
    changed: list[Changed]


def _clip(text: str | None, size: int) -> str:
    return (text or "")[:size]


def ingest(conn: db.Conn, events: Sequence[Event]) -> Ingested:
    """Take a request's events in one statement (see the module's docstring)."""
    if not events:
        return Ingested(received=0, duplicates=0, unknown=0, matched=0, changed=[])
    # One event id once per request too: the statement inserts each into feedback_seen once.
    unique: dict[tuple[str, str], Event] = {}
    for event in events:
        unique.setdefault((event.source, event.event_id[:300]), event)
    batch = list(unique.values())
    with conn.transaction():
        return _ingest(conn, events, batch)


def _ingest(conn: db.Conn, events: Sequence[Event], batch: list[Event]) -> Ingested:
    row = db.one(
        conn,
        "feedback_ingest",
        sources=[e.source for e in batch],
        event_ids=[e.event_id[:300] for e in batch],
        email_ids=[e.target() for e in batch],
        message_ids=[e.message_id.strip() if e.message_id and e.email_id is None else None for e in batch],
        kinds=[e.kind for e in batch],
        recipients=[_clip(e.recipient, 320).lower() for e in batch],
        bounce_types=[e.bounce_type for e in batch],
        diagnostics=[_clip(e.diagnostic, 1000) for e in batch],
        ats=[e.at for e in batch],
        details=[Jsonb(_detail(e)) for e in batch],
    )
    assert row is not None
    fresh, matched = int(row["fresh"]), int(row["matched"])
    changed = [
        Changed(
            email_id=uuid.UUID(c["id"]),
            org_id=int(c["org_id"]),
            status=c["status"],
            delivery=c["delivery"],
            bounce_type=c["bounce_type"],
            delivery_detail=c["delivery_detail"],
        )
        for c in row["changed"] or []
    ]
    # A bounce or a complaint is an event for the organization's webhooks, written in the
    # transaction that records it (never the body; the recipient is the one that bounced).
    outbox.emit(
        conn,
        [
            (
                int(c["org_id"]),
                f"email.{c['delivery']}",
                {
                    "email_id": c["id"],
                    "owner_id": c["owner_id"],
                    "status": c["status"],
                    "delivery": c["delivery"],
                    "bounce_type": c["bounce_type"],
                    "diagnostic": c["delivery_detail"],
                    "delivery_at": c["delivery_at"],
                },
            )
            for c in row["changed"] or []
            if c["delivery"] in ("bounced", "complained")
        ],
    )
    return Ingested(
        received=len(events),
        duplicates=len(events) - fresh,
        unknown=fresh - matched,
        matched=matched,
        changed=changed,
    )


def _detail(event: Event) -> dict[str, Any]:
    detail: dict[str, Any] = {"source": event.source, "recipient": event.recipient[:320]}
    if event.bounce_type:
        detail["bounce_type"] = event.bounce_type
    if event.diagnostic:
        detail["diagnostic"] = event.diagnostic[:1000]
    if event.at is not None:
        detail["provider_at"] = event.at.isoformat()
    return detail


def from_epoch(raw: Any) -> dt.datetime | None:
    """An instant given as Unix seconds, or None."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        return dt.datetime.fromtimestamp(raw, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def from_iso(raw: Any) -> dt.datetime | None:
    """An instant given in ISO 8601 (``2026-01-02T03:04:05.678Z``), or None."""
    if not isinstance(raw, str):
        return None
    try:
        at = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


# --- Each provider's events.

#: SendGrid's event names and what they mean here (the others, opens and clicks among
#: them, are not about delivery: ignored).
_SENDGRID: dict[str, Kind] = {
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}


def sendgrid_events(payload: Any) -> list[Event]:
    """SendGrid's Event Webhook body (a JSON array) as events; entries that are not about delivery are left out.

    ``smtp-id`` is the message's Message-ID as we sent it; ``email_id`` a custom arg, where set.
    A ``bounce`` of type ``blocked`` is soft, others hard; ``dropped`` is a soft bounce (SendGrid
    did not try: its reason says why) that suppresses nothing on its own.
    """
    if not isinstance(payload, list):
        raise ValueError("the body must be a JSON array of events")
    out: list[Event] = []
    for entry in payload:
        if not isinstance(entry, dict):
            continue
        kind = _SENDGRID.get(str(entry.get("event", "")))
        event_id = entry.get("sg_event_id")
        recipient = entry.get("email")
        if kind is None or not isinstance(event_id, str) or not isinstance(recipient, str):
            continue
        bounce: Literal["hard", "soft"] | None = None
        if kind == "bounced":
            hard = entry.get("event") == "bounce" and entry.get("type", "bounce") == "bounce"
            bounce = "hard" if hard else "soft"
        diagnostic = entry.get("reason") or entry.get("response") or ""
        smtp_id = entry.get("smtp-id")
        out.append(
            Event(
                source="sendgrid",
                event_id=event_id,
                kind=kind,
                recipient=recipient,
                message_id=smtp_id if isinstance(smtp_id, str) else None,
                email_id=parse_uuid(entry.get("email_id")),
                bounce_type=bounce,
                diagnostic=str(diagnostic),
                at=from_epoch(entry.get("timestamp")),
            )
        )
    return out


def _ses_message_id(mail: dict[str, Any]) -> str | None:
    """Our Message-ID as SES echoes it: its common headers, else the raw headers."""
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return str(common["messageId"])
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            value = header.get("value")
            return value if isinstance(value, str) else None
    return None


def ses_events(notification: Any, sns_message_id: str) -> list[Event]:
    """An SES notification (the SNS message's ``Message``, parsed) as events, one per recipient.

    Both SES's notifications (``notificationType``) and its event publishing (``eventType``)
    are read: ``Delivery``, ``Bounce`` (``Permanent`` is hard, others soft), ``Complaint``,
    ``DeliveryDelay``; the others are not about delivery and are left out.
    """
    if not isinstance(notification, dict):
        raise ValueError("the SNS message must be an SES notification (a JSON object)")
    what = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail")
    if not isinstance(mail, dict):
        return []
    message_id = _ses_message_id(mail)

    def event(n: int, kind: Kind, recipient: Any, **more: Any) -> Event | None:
        if not isinstance(recipient, str):
            return None
        return Event(
            source="ses", event_id=f"{sns_message_id}:{n}", kind=kind, recipient=recipient,
            message_id=message_id, **more,
        )  # fmt: skip

    found: list[Event | None] = []
    if what == "Delivery":
        delivery = notification.get("delivery") or {}
        at = from_iso(delivery.get("timestamp"))
        reply = str(delivery.get("smtpResponse") or "")
        found = [
            event(n, "delivered", r, at=at, diagnostic=reply) for n, r in enumerate(delivery.get("recipients", []))
        ]
    elif what == "Bounce":
        bounce = notification.get("bounce") or {}
        hard = bounce.get("bounceType") == "Permanent"
        at = from_iso(bounce.get("timestamp"))
        for n, r in enumerate(bounce.get("bouncedRecipients") or []):
            if isinstance(r, dict):
                found.append(
                    event(
                        n, "bounced", r.get("emailAddress"), at=at, bounce_type="hard" if hard else "soft",
                        diagnostic=str(r.get("diagnosticCode") or bounce.get("bounceSubType") or ""),
                    )
                )  # fmt: skip
    elif what == "Complaint":
        complaint = notification.get("complaint") or {}
        at = from_iso(complaint.get("timestamp"))
        feedback_type = str(complaint.get("complaintFeedbackType") or "")
        for n, r in enumerate(complaint.get("complainedRecipients") or []):
            if isinstance(r, dict):
                found.append(event(n, "complained", r.get("emailAddress"), at=at, diagnostic=feedback_type))
    elif what == "DeliveryDelay":
        delay = notification.get("deliveryDelay") or {}
        at = from_iso(delay.get("timestamp"))
        for n, r in enumerate(delay.get("delayedRecipients") or []):
            if isinstance(r, dict):
                found.append(
                    event(n, "deferred", r.get("emailAddress"), at=at, diagnostic=str(r.get("diagnosticCode") or ""))
                )
    return [e for e in found if e is not None]


def webhook_events(payload: Any, webhook_id: str) -> list[Event]:
    """The generic endpoint's body (Standard Webhooks: ``{"type", "timestamp", "data"}``) as events.

    ``type``: ``email.delivered``, ``email.deferred``, ``email.bounced``, ``email.complained``
    or ``email.unsubscribed``; ``data``: ``message_id`` (our Message-ID) and/or ``email_id``,
    ``recipient``, and for a bounce ``bounce_type`` (``hard`` or ``soft``) and ``diagnostic``.
    """
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    kind = str(payload.get("type", "")).removeprefix("email.")
    data = payload.get("data")
    if kind not in KINDS:
        raise ValueError(f"type: must be one of {', '.join('email.' + k for k in KINDS)}")
    if not isinstance(data, dict) or not isinstance(data.get("recipient"), str):
        raise ValueError("data.recipient: required (the address the event is about)")
    bounce = data.get("bounce_type")
    if kind == "bounced" and bounce not in ("hard", "soft"):
        raise ValueError("data.bounce_type: must be hard or soft for a bounce")
    message_id = data.get("message_id")
    return [
        Event(
            source="webhook",
            event_id=webhook_id,
            kind=kind,
            recipient=data["recipient"],
            message_id=message_id if isinstance(message_id, str) else None,
            email_id=parse_uuid(data.get("email_id")),
            bounce_type=bounce if kind == "bounced" else None,
            diagnostic=str(data.get("diagnostic") or ""),
            at=from_iso(payload.get("timestamp")),
        )
    ]


def kinds_of(events: Iterable[Event]) -> dict[str, int]:
    """How many events of each kind (for the log line)."""
    counts: dict[str, int] = {}
    for e in events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    return counts
