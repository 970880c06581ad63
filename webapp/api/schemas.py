"""The JSON schemas of the API's bodies (the OpenAPI document's ``components.schemas``)."""

from __future__ import annotations

from typing import Any

from tasks.domain import batch_plan, failures, validation
from tasks.domain.models import Status
from tasks.domain.recurrence_rules import DAYS, HOURLY_STEPS
from tasks.webhooks import endpoints as webhook_endpoints
from tasks.webhooks import events as webhook_events

S = "#/components/schemas/"


def nullable(kind: str, **extra: Any) -> dict[str, Any]:
    """Return a schema of ``kind`` that also allows null."""
    return {"type": [kind, "null"], **extra}


def ref(name: str) -> dict[str, str]:
    """Point at one of these schemas."""
    return {"$ref": S + name}


_ADDRESSES = {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": validation.MAX_RECIPIENTS}
#: cc and bcc may be null (none).
_MAYBE_ADDRESSES = {**_ADDRESSES, "type": ["array", "null"]}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string", "examples": ["invalid", "not_found", "too_late"]},
                    "message": {"type": "string"},
                    "field": nullable("string"),
                    "error_id": {"type": "string", "description": "On a 500: quote it; the log line has it too."},
                    "details": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                        },
                    },
                },
            }
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "at", "kind", "job_id", "detail"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "kind": {"type": "string", "examples": ["scheduled", "claimed", "sent"]},
            "job_id": nullable("integer"),
            "detail": {"type": "object"},
        },
    },
    "Email": {
        "type": "object",
        "required": ["id", "status", "to", "cc", "bcc", "subject", "send_at", "time_zone", "next_attempt_at", "why"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "to": {"type": "array", "items": {"type": "string"}},
            "cc": {"type": "array", "items": {"type": "string"}},
            "bcc": {"type": "array", "items": {"type": "string"}},
            "subject": {"type": "string"},
            "send_at": {"type": "string", "format": "date-time", "description": "The instant asked for (UTC)."},
            "send_at_local": nullable("string", description="The same instant in time_zone."),
            "time_zone": {"type": "string", "description": "IANA zone the time was chosen in."},
            "next_attempt_at": {"type": "string", "format": "date-time"},
            "waiting_reason": nullable("string"),
            "why": {"type": "string", "description": "Where it stands, in plain words."},
            "attempts": {"type": "integer"},
            "last_error": nullable("string"),
            "message_id": {"type": "string"},
            "transport": nullable("string"),
            "provider_reply": nullable("string"),
            "provider_message_id": nullable(
                "string", description="The provider's id of the message (SES's MessageId, SendGrid's X-Message-Id)."
            ),
            "refused_recipients": {"type": "object", "additionalProperties": {"type": "string"}},
            "batch_id": nullable("string"),
            "idempotency_key": nullable("string"),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "sent_at": nullable("string"),
            "delivery": {
                "type": ["string", "null"],
                "enum": ["delivered", "deferred", "bounced", "complained", None],
                "description": "Where it stands after the provider took it, from the provider's events (null: nothing"
                " heard). It only moves up: deferred, delivered, bounced (soft, then hard), complained.",
            },
            "bounce_type": {"type": ["string", "null"], "enum": ["hard", "soft", None]},
            "delivery_detail": nullable("string", description="The provider's diagnostic (a bounce's SMTP reply)."),
            "delivery_at": nullable("string", description="When the provider says it happened."),
            "list_unsubscribe": {
                "type": "boolean",
                "description": "Its message carries one-click unsubscribe (a batch's and a recurrence's always do).",
            },
            "body_text": {"type": "string"},
            "body_html": nullable("string"),
            "events": {"type": "array", "items": ref("Event")},
        },
    },
    "EmailList": {
        "type": "object",
        "required": ["emails", "next_cursor"],
        "properties": {
            "emails": {"type": "array", "items": ref("Email")},
            "next_cursor": nullable("string", description="Pass as ?cursor= for the next (older) page."),
        },
    },
    "NewEmail": {
        "type": "object",
        "required": ["to", "subject", "body_text"],
        "examples": [
            {
                "to": ["ann@example.com"],
                "subject": "Hello",
                "body_text": "Hi Ann",
                "send_at": "2030-06-01T09:00:00+02:00",
                "time_zone": "Europe/Paris",
            },
            {"to": ["ann@example.com"], "cc": ["bob@example.com"], "subject": "Now", "body_text": "", "send_now": True},
        ],
        "additionalProperties": False,
        "properties": {
            "to": {**_ADDRESSES, "minItems": 1},
            "cc": _MAYBE_ADDRESSES,
            "bcc": _MAYBE_ADDRESSES,
            "subject": {"type": "string", "maxLength": validation.MAX_SUBJECT_CHARS, "pattern": "^[^\\r\\n]*$"},
            "body_text": {"type": "string"},
            "body_html": nullable("string"),
            "send_at": nullable(
                "string", format="date-time", description="ISO 8601 with an offset; required unless send_now."
            ),
            "time_zone": nullable("string", description="IANA zone, e.g. Europe/Paris (default UTC)."),
            "send_now": {"type": "boolean"},
            "idempotency_key": nullable("string", description="Same as the Idempotency-Key header."),
            "list_unsubscribe": {
                "type": "boolean",
                "description": "Carry one-click unsubscribe (List-Unsubscribe, RFC 8058) as a list's emails do; one"
                " recipient only.",
            },
        },
    },
    "EmailChanges": {
        "type": "object",
        "examples": [{"subject": "A better subject"}, {"send_at": "2031-01-01T09:00:00Z", "time_zone": "UTC"}],
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "to": {**_ADDRESSES, "minItems": 1},
            "cc": _MAYBE_ADDRESSES,
            "bcc": _MAYBE_ADDRESSES,
            "subject": {"type": "string"},
            "body_text": {"type": "string"},
            "body_html": nullable("string"),
            "send_at": nullable("string", format="date-time", description="null: keep the time"),
            "time_zone": nullable("string"),
        },
    },
    "BatchRequest": {
        "type": "object",
        "examples": [
            {"addresses": "ann@example.com\nbob@example.com", "subject": "Hi", "body_text": "Hello", "dry_run": True},
            {
                "csv": "email,first_name\nann@example.com,Ann\n",
                "subject": "Hi {{first_name}}",
                "body_text": "Hello {{first_name}}",
                "min_delay_seconds": 30,
            },
        ],
        "required": ["subject", "body_text"],
        "additionalProperties": False,
        "description": "Exactly one of csv, addresses or recipients.",
        "properties": {
            "csv": nullable("string", description="CSV text; a header row with an email column."),
            "addresses": nullable("string", description="Addresses, one per line or comma-separated."),
            "recipients": {
                "type": ["array", "null"],
                "items": {
                    "oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": {"type": "string"}}]
                },
            },
            "subject": {
                "type": "string",
                "maxLength": validation.MAX_SUBJECT_CHARS,
                "description": "May use {{column}} placeholders (at most 1,000).",
            },
            "body_text": {
                "type": "string",
                "description": "May use {{column}} placeholders (at most 1,000); at most 1 MB of UTF-8. "
                "Every email of the batch together (subjects and bodies, rendered) may be at most "
                "BATCH_MAX_RENDERED_BYTES (256 MB by default): a larger batch is 422, nothing rendered.",
            },
            "start_at": nullable("string", description="ISO 8601 with an offset; default now."),
            "time_zone": nullable("string"),
            "min_delay_seconds": nullable("number", minimum=0, maximum=batch_plan.MAX_DELAY),
            "hourly_cap": nullable("integer", minimum=1, maximum=batch_plan.MAX_HOURLY_CAP),
            "name": {"type": "string", "maxLength": 200},
            "dry_run": {"type": "boolean", "description": "Only preview: nothing is created."},
            "idempotency_key": nullable("string"),
        },
    },
    "Batch": {
        "type": "object",
        "required": ["id", "total", "sent", "pending", "next_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "org_id": {"type": "integer", "description": "The organization it belongs to."},
            "owner_id": {"type": "integer", "description": "The member who sent it."},
            "name": {"type": "string"},
            "subject_template": {"type": "string"},
            "total": {"type": "integer"},
            "start_at": {"type": "string", "format": "date-time"},
            "send_tz": {"type": "string"},
            "min_delay_seconds": {"type": "number"},
            "hourly_cap": nullable("integer"),
            "created_at": {"type": "string", "format": "date-time"},
            "sent": {"type": "integer"},
            "pending": {"type": "integer"},
            "failed": {"type": "integer"},
            "uncertain": {"type": "integer"},
            "cancelled": {"type": "integer"},
            "next_at": nullable("string"),
            "last_at": nullable("string"),
        },
    },
    "BatchPreview": {
        "type": "object",
        "required": ["accepted", "rejected", "preview", "first_send_at", "last_send_at"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "batch": ref("Batch"),
            "accepted": {"type": "integer"},
            "first_send_at": nullable("string"),
            "last_send_at": nullable("string"),
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["line", "value", "reason"],
                    "properties": {
                        "line": {"type": "integer"},
                        "value": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                },
            },
            "preview": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "line": {"type": "integer"},
                        "to": {"type": "string"},
                        "subject": {"type": "string"},
                        "body_text": {"type": "string"},
                        "send_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    },
    "BatchResult": {
        "type": "object",
        "required": ["batch"],
        "properties": {"batch": ref("Batch"), "cancelled": {"type": "integer"}},
    },
    "OrgIdentity": {
        "type": "object",
        "description": "The From and Reply-To of the organization's mail (null: the deployment's).",
        "required": ["from_name", "from_address", "reply_to"],
        "properties": {
            "from_name": nullable("string", maxLength=200),
            "from_address": nullable("string", format="email"),
            "reply_to": nullable("string", format="email"),
        },
    },
    "OrgProvider": {
        "type": "object",
        "required": ["label", "position", "url", "rate_limit", "created_at"],
        "properties": {
            "label": {"type": "string"},
            "position": {"type": "integer", "description": "Its place in the organization's order, from 1."},
            "url": {"type": "string", "description": "The URL with its password masked (****)."},
            "rate_limit": {"type": "string", "description": "Its provider's limits ('' none)."},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "OrgSettings": {
        "type": "object",
        "required": [
            "org_id",
            "name",
            "identity",
            "providers_mode",
            "daily_quota",
            "suspended",
            "suspended_reason",
            "providers",
        ],
        "properties": {
            "org_id": {"type": "integer"},
            "name": {"type": "string"},
            "identity": ref("OrgIdentity"),
            "providers_mode": {"type": "string", "enum": ["before", "instead"]},
            "daily_quota": nullable("integer", description="Set by the operators: emails a UTC day."),
            "suspended": {"type": "boolean"},
            "suspended_reason": nullable("string"),
            "providers": {"type": "array", "items": ref("OrgProvider")},
        },
    },
    "OrgSettingsChanges": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "description": "The fields to change; null clears a part of the identity.",
        "properties": {
            "from_name": nullable("string", maxLength=200),
            "from_address": nullable("string", format="email"),
            "reply_to": nullable("string", format="email"),
            "providers_mode": {"type": "string", "enum": ["before", "instead"]},
        },
    },
    "NewOrgProvider": {
        "type": "object",
        "additionalProperties": False,
        "required": ["label", "url"],
        "properties": {
            "label": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,19}$"},
            "url": {
                "type": "string",
                "description": "smtp:// or smtps://, in the forms of MAIL_TRANSPORTS; stored encrypted.",
            },
            "rate_limit": {"type": "string", "description": "Its provider's limits, e.g. 20/10s,500/hour."},
        },
    },
    "Suppression": {
        "type": "object",
        "required": ["address", "reason", "detail", "list", "email_id", "created_at"],
        "properties": {
            "address": {"type": "string", "description": "Lower-cased."},
            "reason": {"type": "string", "enum": ["hard_bounce", "complaint", "unsubscribe", "manual", "import"]},
            "detail": {"type": "string", "description": "The provider's diagnostic, or a member's note."},
            "list": {
                "type": "string",
                "enum": ["organization", "global"],
                "description": "The organization's own list, or the operators' global one (read-only here).",
            },
            "email_id": nullable("string", description="The email whose bounce, complaint or link put it there."),
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "SuppressionList": {
        "type": "object",
        "required": ["suppressions", "next_before"],
        "properties": {
            "suppressions": {"type": "array", "items": ref("Suppression")},
            "next_before": nullable("integer", description="Pass as ?before= for the next (older) page."),
        },
    },
    "NewSuppression": {
        "type": "object",
        "additionalProperties": False,
        "required": ["address"],
        "properties": {
            "address": {"type": "string", "format": "email"},
            "detail": {"type": "string", "maxLength": 500, "description": "A note for the others."},
        },
    },
    "SuppressionAdded": {
        "type": "object",
        "required": ["address", "added"],
        "properties": {
            "address": {"type": "string"},
            "added": {"type": "boolean", "description": "false: it was on the list already."},
        },
    },
    "SuppressionRemoved": {
        "type": "object",
        "required": ["address", "removed"],
        "properties": {
            "address": {"type": "string"},
            "removed": {"type": "boolean", "description": "false: it was not on the organization's list."},
        },
    },
    "SuppressionImport": {
        "type": "object",
        "additionalProperties": False,
        "required": ["csv"],
        "properties": {
            "csv": {
                "type": "string",
                "description": "CSV text: an address or email column (else the first one); at most 100,000 lines.",
            }
        },
    },
    "SuppressionImported": {
        "type": "object",
        "required": ["added", "already", "rejected"],
        "properties": {
            "added": {"type": "integer"},
            "already": {"type": "integer", "description": "On the list before."},
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["line", "value", "reason"],
                    "properties": {
                        "line": {"type": "integer"},
                        "value": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                },
            },
        },
    },
    "AuditLog": {
        "type": "object",
        "required": ["entries"],
        "properties": {
            "entries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "at", "actor_id", "actor_email", "action", "target", "detail"],
                    "properties": {
                        "id": {"type": "integer"},
                        "at": {"type": "string", "format": "date-time"},
                        "actor_id": nullable("integer", description="null: an operator's command"),
                        "actor_email": nullable("string"),
                        "action": {"type": "string", "examples": ["settings.identity", "member.invite"]},
                        "target": {"type": "string"},
                        "detail": {"type": "object"},
                    },
                },
            }
        },
    },
    "Preset": {
        "type": "object",
        "required": ["kind"],
        "description": "A friendlier way to write a cron rule: daily, weekdays, weekly (days),"
        ' monthly (day 1-31 or "last", or weekday with nth 1-5 or "last"), hourly (every 1, 2, 3, 4, 6, 8'
        " or 12 hours at minute).",
        "examples": [
            {"kind": "weekdays", "time": "09:00"},
            {"kind": "weekly", "days": ["mon", "thu"], "time": "18:00"},
            {"kind": "monthly", "weekday": "mon", "nth": 1, "time": "08:30"},
            {"kind": "hourly", "every": 6, "minute": 15},
        ],
        "properties": {
            "kind": {"type": "string", "enum": ["daily", "weekdays", "weekly", "monthly", "hourly"]},
            "time": {"type": "string", "pattern": "^([01]?[0-9]|2[0-3]):[0-5][0-9]$"},
            "days": {"type": "array", "items": {"type": "string", "enum": list(DAYS)}, "minItems": 1},
            "day": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 31}, {"const": "last"}]},
            "weekday": {"type": "string", "enum": list(DAYS)},
            "nth": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 5}, {"const": "last"}]},
            "every": {"type": "integer", "enum": list(HOURLY_STEPS)},
            "minute": {"type": "integer", "minimum": 0, "maximum": 59},
        },
    },
    "NewRecurrence": {
        "type": "object",
        "required": ["to", "subject", "body_text"],
        "description": "The content of every occurrence, and the rule: either cron (5 fields) or preset."
        " {{occurrence_date}} and {{occurrence_time}} in the subject and bodies are the occurrence's, in time_zone.",
        "examples": [
            {
                "to": ["team@example.com"],
                "subject": "Standup notes {{occurrence_date}}",
                "body_text": "Notes for {{occurrence_date}}",
                "preset": {"kind": "weekdays", "time": "09:00"},
                "time_zone": "Europe/Paris",
                "ends_at": "2030-06-30T23:59:00+02:00",
            },
            {
                "to": ["ops@example.com"],
                "subject": "Weekly report",
                "body_text": "See the dashboard",
                "cron": "0 8 * * 1",
                "time_zone": "America/New_York",
                "count": 10,
            },
        ],
        "additionalProperties": False,
        "properties": {
            "to": {**_ADDRESSES, "minItems": 1},
            "cc": _MAYBE_ADDRESSES,
            "bcc": _MAYBE_ADDRESSES,
            "subject": {"type": "string", "maxLength": validation.MAX_SUBJECT_CHARS, "pattern": "^[^\\r\\n]*$"},
            "body_text": {"type": "string"},
            "body_html": nullable("string"),
            "cron": nullable("string", description="5 fields: minute hour day-of-month month day-of-week."),
            "preset": {"oneOf": [ref("Preset"), {"type": "null"}]},
            "time_zone": nullable("string", description="IANA zone the rule is read in (default UTC)."),
            "starts_at": nullable("string", format="date-time", description="Default: now."),
            "ends_at": nullable("string", format="date-time", description="No occurrence after it."),
            "count": {"type": ["integer", "null"], "minimum": 1, "description": "At most this many emails."},
            "idempotency_key": nullable("string", description="Same as the Idempotency-Key header."),
        },
    },
    "RecurrenceChanges": {
        "type": "object",
        "examples": [{"subject": "A better subject"}, {"preset": {"kind": "daily", "time": "07:30"}}],
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "to": {**_ADDRESSES, "minItems": 1},
            "cc": _MAYBE_ADDRESSES,
            "bcc": _MAYBE_ADDRESSES,
            "subject": {"type": "string"},
            "body_text": {"type": "string"},
            "body_html": nullable("string"),
            "cron": nullable("string"),
            "preset": {"oneOf": [ref("Preset"), {"type": "null"}]},
            "time_zone": nullable("string"),
            "starts_at": nullable("string", format="date-time"),
            "ends_at": nullable("string", format="date-time"),
            "count": {"type": ["integer", "null"], "minimum": 1},
        },
    },
    "Recurrence": {
        "type": "object",
        "required": ["id", "status", "summary", "to", "cron", "time_zone", "starts_at", "next_occurrence_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "owner_id": {"type": "integer", "description": "The member who created it."},
            "status": {"type": "string", "enum": ["active", "paused", "ended"]},
            "paused_reason": nullable("string"),
            "summary": {"type": "string", "description": "The rule in plain words."},
            "to": {"type": "array", "items": {"type": "string"}},
            "cc": {"type": "array", "items": {"type": "string"}},
            "bcc": {"type": "array", "items": {"type": "string"}},
            "subject": {"type": "string"},
            "body_text": {"type": "string"},
            "body_html": nullable("string"),
            "cron": {"type": "string"},
            "preset": {"oneOf": [ref("Preset"), {"type": "null"}]},
            "time_zone": {"type": "string"},
            "starts_at": {"type": "string", "format": "date-time"},
            "ends_at": nullable("string"),
            "count": {"type": ["integer", "null"]},
            "next_occurrence_at": nullable("string", description="null unless active."),
            "next_occurrences": {"type": "array", "items": {"type": "string", "format": "date-time"}},
            "occurrences_made": {"type": "integer"},
            "failures_in_row": {"type": "integer"},
            "last_status": nullable("string"),
            "last_occurrence_at": nullable("string"),
            "last_email_id": nullable("string"),
            "idempotency_key": nullable("string"),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "history": {
                "type": "array",
                "description": "Newest first: each occurrence (an email) and each run of skipped ones.",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "enum": ["email", "skipped"]},
                        "at": {"type": "string", "format": "date-time"},
                        "last_at": nullable("string"),
                        "n": {"type": ["integer", "null"]},
                        "email_id": nullable("string"),
                        "status": {"type": "string"},
                        "sent_at": nullable("string"),
                        "reason": nullable("string"),
                    },
                },
            },
        },
    },
    "RecurrenceList": {
        "type": "object",
        "required": ["recurrences"],
        "properties": {"recurrences": {"type": "array", "items": ref("Recurrence")}},
    },
    "FailureGroup": {
        "type": "object",
        "required": ["kind", "reply_code", "enhanced_status", "error_class", "transport", "domain", "count", "hourly"]
        + ["query", "delivery", "examples"],
        "properties": {
            "kind": {"enum": ["failed", "uncertain", "bounced"]},
            "reply_code": nullable("integer", description="The SMTP reply code (of the bounce report, for a bounce)."),
            "enhanced_status": nullable("string", description="The enhanced status code (RFC 3463), such as 5.1.1."),
            "error_class": {
                "enum": list(failures.CLASSES),
                "description": "refused (5xx), retries exhausted, suppressed, uncertain (connection lost after DATA),"
                " bounce (hard or soft), other.",
            },
            "transport": nullable("string", description="The transport label that tried."),
            "domain": nullable("string", description="The first recipient's domain."),
            "count": {"type": "integer", "description": "Emails of this cause in the window."},
            "hourly": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": failures.HOURS,
                "maxItems": failures.HOURS,
                "description": "Failures per hour over the last 24 hours, oldest first.",
            },
            "query": {
                "type": "string",
                "description": "The search (GET /emails?q=) listing this group's emails (not narrowed by transport).",
            },
            "delivery": nullable("string", description="bounced: list with ?delivery=bounced too."),
            "examples": {
                "type": "array",
                "maxItems": failures.EXAMPLES,
                "items": {
                    "type": "object",
                    "required": ["id", "subject", "to", "status", "last_error"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "subject": {"type": "string"},
                        "to": {"type": "array", "items": {"type": "string"}},
                        "status": {"type": "string"},
                        "last_error": nullable("string"),
                    },
                },
            },
        },
    },
    "Failures": {
        "type": "object",
        "required": ["since", "until", "total", "groups"],
        "properties": {
            "since": {"type": "string", "format": "date-time", "description": "The window: emails created since."},
            "until": {"type": "string", "format": "date-time"},
            "total": {"type": "integer"},
            "groups": {"type": "array", "items": ref("FailureGroup"), "description": "The largest first."},
        },
    },
    "UpcomingSlot": {
        "type": "object",
        "required": ["start", "count", "busiest_user", "over_limit", "over"],
        "properties": {
            "start": {"type": "string", "format": "date-time", "description": "The hour's or UTC day's start."},
            "count": {"type": "integer", "description": "Scheduled emails due then (those already due: now)."},
            "busiest_user": {"type": "integer", "description": "The most of them one user has."},
            "over_limit": {"type": "boolean", "description": "A backlog is coming: a limit is exceeded."},
            "over": {"type": "array", "items": {"type": "string"}, "description": "Which limits, in words."},
        },
    },
    "Upcoming": {
        "type": "object",
        "required": ["now", "limits", "hours", "days"],
        "properties": {
            "now": {"type": "string", "format": "date-time"},
            "limits": {
                "type": "object",
                "required": ["transport", "transport_hour", "transport_day", "user_hour", "user_day", "daily_quota"],
                "description": "The most each limit lets through in an hour or a day; null: no such limit.",
                "properties": {
                    "transport": nullable("string", description="The label of the transport that sends first."),
                    "transport_hour": nullable("integer"),
                    "transport_day": nullable("integer"),
                    "user_hour": nullable("integer"),
                    "user_day": nullable("integer"),
                    "daily_quota": nullable("integer"),
                },
            },
            "hours": {"type": "array", "items": ref("UpcomingSlot"), "minItems": 24, "maxItems": 24},
            "days": {"type": "array", "items": ref("UpcomingSlot"), "minItems": 7, "maxItems": 7},
        },
    },
    "Occurrences": {
        "type": "object",
        "required": ["occurrences"],
        "properties": {
            "occurrences": {"type": "array", "items": {"type": "string", "format": "date-time"}},
            "summary": {"type": "string"},
            "cron": {"type": "string"},
        },
    },
    "RecurrenceDeleted": {
        "type": "object",
        "required": ["id", "status", "cancelled"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"const": "deleted"},
            "cancelled": {"type": "integer", "description": "Occurrences waiting that were cancelled."},
        },
    },
}

_EVENT_TYPES = {"type": "array", "items": {"type": "string", "enum": list(webhook_events.TYPES)}, "minItems": 1}
_STAMP = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601, ending in Z."}


def _event(kind: list[str], data: dict[str, Any], description: str) -> dict[str, Any]:
    """The body of a webhook: Standard Webhooks' {type, timestamp, data}."""
    return {
        "type": "object",
        "description": description,
        "required": ["type", "timestamp", "data"],
        "properties": {"type": {"type": "string", "enum": kind}, "timestamp": _STAMP, "data": data},
    }


SCHEMAS |= {
    "NewWebhook": {
        "type": "object",
        "required": ["url", "event_types"],
        "additionalProperties": False,
        "properties": {
            "url": {
                "type": "string",
                "maxLength": 2000,
                "description": "https:// (the address it resolves to must be public).",
            },
            "event_types": _EVENT_TYPES,
            "description": {"type": ["string", "null"], "maxLength": webhook_endpoints.MAX_DESCRIPTION},
            "enabled": {"type": "boolean", "default": True},
        },
    },
    "WebhookChanges": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "url": {"type": "string", "maxLength": 2000},
            "event_types": _EVENT_TYPES,
            "description": {"type": ["string", "null"], "maxLength": webhook_endpoints.MAX_DESCRIPTION},
            "enabled": {"type": "boolean"},
        },
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "event_types", "enabled", "created_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "url": {"type": "string"},
            "description": {"type": "string"},
            "event_types": _EVENT_TYPES,
            "enabled": {"type": "boolean"},
            "failing_since": nullable(
                "string", format="date-time", description="Since when its deliveries fail (null: the last went)."
            ),
            "disabled_reason": nullable("string", description="Why it was disabled by itself, if it was."),
            "previous_secret_valid_until": nullable(
                "string", format="date-time", description="After a rotation: until when the old secret also signs."
            ),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "pending": {"type": "integer", "description": "Deliveries waiting (in lists; 0 elsewhere)."},
            "secret": {
                "type": "string",
                "pattern": "^whsec_[A-Za-z0-9+/=]+$",
                "description": "The signing secret: only in the answer that created or rotated it.",
            },
        },
    },
    "WebhookList": {
        "type": "object",
        "required": ["webhooks"],
        "properties": {"webhooks": {"type": "array", "items": ref("Webhook")}},
    },
    "WebhookDeleted": {
        "type": "object",
        "required": ["id", "deleted"],
        "properties": {"id": {"type": "string"}, "deleted": {"const": True}},
    },
    "WebhookDelivery": {
        "type": "object",
        "required": ["id", "webhook_id", "event_type", "payload", "status", "attempts"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "webhook_id": {"type": "string", "description": "The webhook-id header of every attempt."},
            "endpoint_id": {"type": "string", "format": "uuid"},
            "event_type": {"type": "string"},
            "payload": {"type": "object", "description": "The body sent (see the document's webhooks)."},
            "created_at": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "attempts": {"type": "integer"},
            "next_attempt_at": nullable("string", format="date-time"),
            "finished_at": nullable("string", format="date-time"),
            "last_status_code": {"type": ["integer", "null"]},
            "attempt_log": {
                "type": "array",
                "description": "Each attempt, oldest first (only when one delivery is read).",
                "items": {
                    "type": "object",
                    "required": ["at", "status_code", "latency_ms", "response", "error"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "status_code": {"type": ["integer", "null"], "description": "null: no answer."},
                        "latency_ms": {"type": "integer"},
                        "response": {"type": "string", "description": "The answer's first 1 KB."},
                        "error": nullable("string"),
                    },
                },
            },
        },
    },
    "WebhookDeliveryList": {
        "type": "object",
        "required": ["deliveries"],
        "properties": {"deliveries": {"type": "array", "items": ref("WebhookDelivery")}},
    },
    "EmailEvent": _event(
        list(webhook_events.EMAIL_TYPES),
        {
            "type": "object",
            "required": ["email_id", "status"],
            "properties": {
                "email_id": {"type": "string", "format": "uuid"},
                "status": {"type": "string", "enum": ["sent", "failed", "uncertain", "offline", "cancelled"]},
                "owner_id": {"type": "integer"},
                "batch_id": nullable("string", format="uuid"),
                "recurrence_id": nullable("string", format="uuid"),
                "to": {"type": "array", "items": {"type": "string"}},
                "subject": {"type": "string"},
                "attempts": {"type": "integer"},
                "transport": nullable("string"),
                "reply": nullable("string", description="The provider's last reply."),
                "error": nullable("string"),
                "sent_at": nullable("string", format="date-time"),
            },
        },
        "An email's status changed (never its body).",
    ),
    "DeliveryFeedbackEvent": _event(
        list(webhook_events.FEEDBACK_TYPES),
        {
            "type": "object",
            "required": ["email_id", "delivery"],
            "properties": {
                "email_id": {"type": "string", "format": "uuid"},
                "owner_id": {"type": "integer"},
                "status": {"type": "string"},
                "delivery": {"type": "string", "enum": ["bounced", "complained"]},
                "bounce_type": nullable("string", enum=["hard", "soft", None]),
                "diagnostic": nullable("string", description="The provider's diagnostic (at most 1,000 characters)."),
                "delivery_at": nullable("string", format="date-time"),
            },
        },
        "The provider reported a bounce or a spam complaint for an email it had taken (never its body).",
    ),
    "BatchCompletedEvent": _event(
        ["batch.completed"],
        {
            "type": "object",
            "required": ["batch_id", "total", "counts"],
            "properties": {
                "batch_id": {"type": "string", "format": "uuid"},
                "owner_id": {"type": "integer"},
                "name": {"type": "string"},
                "total": {"type": "integer"},
                "counts": {
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                    "description": "Its emails by status.",
                },
                "completed_at": _STAMP,
            },
        },
        "None of the batch's emails waits or is being sent any more.",
    ),
    "RecurrencePausedEvent": _event(
        ["recurrence.paused"],
        {
            "type": "object",
            "required": ["recurrence_id", "reason"],
            "properties": {
                "recurrence_id": {"type": "string", "format": "uuid"},
                "owner_id": {"type": "integer"},
                "reason": nullable("string"),
                "cancelled": {"type": "integer", "description": "Occurrences waiting that were cancelled."},
            },
        },
        "A recurrence was paused: by a member, or by itself after occurrences failed in a row.",
    ),
    "TestEvent": _event(
        [webhook_events.TEST],
        {"type": "object", "properties": {"endpoint_id": {"type": "string"}, "message": {"type": "string"}}},
        "Sent by 'send a test event', to that endpoint only.",
    ),
}

# -- bulk actions (tasks/domain/bulk.py) ---------------------------------------------------

_BULK_ACTIONS = ["cancel", "reschedule", "send_now", "retry"]
SCHEMAS |= {
    "BulkRequest": {
        "type": "object",
        "required": ["action"],
        "properties": {
            "action": {"type": "string", "enum": _BULK_ACTIONS},
            "q": nullable("string", maxLength=200, description="The search (GET /emails's q); empty: every email."),
            "view": nullable("string", description="The list's tab or a status (as GET /emails's status)."),
            "mine": nullable("boolean", description="Only the caller's own emails."),
            "ids": {
                "type": ["array", "null"],
                "items": {"type": "string", "format": "uuid"},
                "maxItems": 1000,
                "description": "Only these emails (those of them the search matches); null: every match.",
            },
            "to": nullable("string", format="date-time", description="reschedule: the new time (in the future)."),
            "shift": nullable(
                "string", pattern="^[+-][0-9]{1,6}[mhdw]$", description="reschedule: move each by +2h, -30m, +1d, +1w."
            ),
            "confirm_count": nullable(
                "integer", minimum=0, description="The number of emails: required over 100, and then equal to it."
            ),
            "dry_run": nullable("boolean", description="Only count and show a sample: nothing is done."),
        },
    },
    "BulkPreview": {
        "type": "object",
        "required": ["dry_run", "action", "count", "left", "confirm_count_required", "sample"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "action": {"type": "string", "enum": _BULK_ACTIONS},
            "count": {"type": "integer", "description": "The emails the action applies to, exactly."},
            "left": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "Matching emails left alone, by status.",
            },
            "confirm_count_required": {"type": "boolean"},
            "sample": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "status", "subject", "to"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string", "enum": [s.value for s in Status]},
                        "subject": {"type": "string"},
                        "to": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "BulkAction": {
        "type": "object",
        "required": ["bulk_action"],
        "properties": {
            "bulk_action": {
                "type": "object",
                "required": ["id", "action", "state", "total", "applied", "skipped", "undo_seconds_left"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "action": {"type": "string", "enum": _BULK_ACTIONS},
                    "params": {"type": "object"},
                    "query": {"type": "string"},
                    "view": {"type": "string"},
                    "mine": {"type": "boolean"},
                    "picked": {"type": "boolean", "description": "Emails named by ids, rather than every match."},
                    "state": {"type": "string", "enum": ["pending", "running", "done", "undone", "failed"]},
                    "total": {"type": "integer", "description": "The emails confirmed (the snapshot)."},
                    "applied": {"type": "integer"},
                    "skipped": {"type": "integer", "description": "Changed since confirmed: left as they were."},
                    "restored": {"type": "integer", "description": "Brought back by the undo."},
                    "undo_skipped": {"type": "integer", "description": "Changed since the action: not undone."},
                    "created_at": {"type": "string", "format": "date-time"},
                    "finished_at": nullable("string", format="date-time"),
                    "undo_until": nullable("string", format="date-time"),
                    "undo_seconds_left": {"type": "number", "minimum": 0},
                    "skipped_reasons": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["stage", "reason", "count"],
                            "properties": {
                                "stage": {"type": "string", "enum": ["action", "undo"]},
                                "reason": nullable("string"),
                                "count": {"type": "integer"},
                            },
                        },
                    },
                },
            }
        },
    },
}
