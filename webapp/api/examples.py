"""Worked examples in the OpenAPI document: requests, and the answers they really get.

An example's name ties an exchange together: the request body, the parameters and the
response that carry the same name are one request and its answer. Where a part has no
example of that name, a required one (a path id, a body) takes its first example and an
optional one (a query or header parameter) is left out. The ``unknown_token`` answer
(401) is what any operation says to a token that is not valid.

``EMAIL_ID`` and ``BATCH_ID`` are the email and the batch that the ``scheduled`` and
``list`` examples create; the other examples act on them. ``BULK_ID`` is the bulk action the
``cancel`` example confirms (on ``EMAIL_ID``); the test runs its job, as a worker would, before
the examples that follow it. ``UNKNOWN_ID`` is no one's.

tests/integration/test_api_examples.py sends every exchange to a running app and checks
the answer against the example (field by field) and the schema, so these stay true.
Fields that differ from run to run (creation times, event and job ids, ``owner_id``, ``org_id``,
``why``, which counts down, the times ``send-now`` sets, and who made the token an audit log
line names) are checked against the schema only. A 403 example is sent with a token
without the ``admin`` scope.
"""

from __future__ import annotations

from typing import Any

from tasks.domain import listing, search

EMAIL_ID = "3f2b8c1e-6d4a-4e9b-8f7c-1a2b3c4d5e6f"
BATCH_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
RECURRENCE_ID = "5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e"
BULK_ID = "7c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e"
_CREATED = "2026-05-04T08:30:00.123456+00:00"
_CHANGED = "2026-05-04T08:35:00.654321+00:00"


def example(summary: str, value: Any) -> dict[str, Any]:
    """Return an OpenAPI Example Object."""
    return {"summary": summary, "value": value}


def error(code: str, message: str, field: str | None) -> dict[str, Any]:
    """Return the API's error body."""
    return {"error": {"code": code, "message": message, "field": field}}


# -- emails -----------------------------------------------------------------------------

NEW_EMAIL = {
    "to": ["ann@example.com"],
    "subject": "Hello",
    "body_text": "Hi Ann",
    "send_at": "2030-06-01T09:00:00+02:00",
    "time_zone": "Europe/Paris",
}

#: The email NEW_EMAIL creates, as the list shows it (no body, no timeline).
EMAIL: dict[str, Any] = {
    "id": EMAIL_ID,
    "status": "scheduled",
    "to": ["ann@example.com"],
    "cc": [],
    "bcc": [],
    "subject": "Hello",
    "send_at": "2030-06-01T07:00:00+00:00",
    "send_at_local": "2030-06-01T09:00:00+02:00",
    "time_zone": "Europe/Paris",
    "next_attempt_at": "2030-06-01T07:00:00+00:00",
    "waiting_reason": None,
    "why": "Waiting for its time: it goes out at Sat 1 Jun 2030 09:00:00 CEST (in 1488 d).",
    "attempts": 0,
    "last_error": None,
    "message_id": f"<{EMAIL_ID}@example.com>",
    "transport": None,
    "provider_reply": None,
    "provider_message_id": None,
    "refused_recipients": {},
    "batch_id": None,
    "idempotency_key": None,
    "created_at": _CREATED,
    "updated_at": _CREATED,
    "sent_at": None,
    "delivery": None,
    "bounce_type": None,
    "delivery_detail": None,
    "delivery_at": None,
    "list_unsubscribe": False,
}
_BODY = {"body_text": "Hi Ann", "body_html": None}
_SCHEDULED_EVENT = {
    "id": 41,
    "at": _CREATED,
    "kind": "scheduled",
    "job_id": None,
    "detail": {"send_at": "2030-06-01T07:00:00+00:00", "time_zone": "Europe/Paris", "recipients": 1},
}

CREATE_EMAIL_REQUEST = {
    "scheduled": example("Schedule an email at 09:00 Paris time", NEW_EMAIL),
    "invalid_address": example("An address that is not one", NEW_EMAIL | {"to": ["ann@"]}),
}
CREATE_EMAIL_201 = {"scheduled": example("Scheduled", EMAIL | _BODY)}
CREATE_EMAIL_422 = {
    "invalid_address": example(
        "The first problem, and the field it is in",
        error("invalid", "to: 'ann@' is not a valid email address: There must be something after the @-sign.", "to"),
    )
}

# An optional parameter's first example is what the reference page fills in for "Try it
# out", so each one's first example is a sensible value, never the one an error needs.
LIST_STATUS = {"scheduled": example("Only emails still to send", "scheduled")}
LIST_LIMIT = {"scheduled": example("Ten a page", 10), "too_many": example("More than a page holds", 1000)}
LIST_Q = {
    "search": example(
        "Scheduled, to example.com, subject with hello, not to bob",
        "status:scheduled domain:example.com subject:hello !to:bob",
    ),
    "bad_query": example("A qualifier that does not exist", "state:sent"),
}


def _query_error(query: str) -> str:
    """The message an invalid query gets (made by the parser itself, so the example stays true)."""
    try:
        search.tokenize(query)
    except search.QueryError as exc:
        return exc.message
    raise AssertionError(f"{query!r} is a valid query")


LIST_200 = {
    "scheduled": example("One page, the last", {"emails": [EMAIL], "next_cursor": None}),
    "search": example("What the search found", {"emails": [EMAIL], "next_cursor": None}),
}
LIST_422 = {
    "too_many": example("Out of range", error("invalid", f"limit: must be between 1 and {listing.MAX_LIMIT}", "limit")),
    "bad_query": example("An invalid search: where and why", error("invalid", _query_error("state:sent"), "q")),
}

EMAIL_ID_PARAMETER = {
    "yours": example("An email of yours (put one of your ids here)", EMAIL_ID),
    "unknown": example("No email of yours", UNKNOWN_ID),
}
_NO_EMAIL = {
    "unknown": example("No such email (or not yours)", error("not_found", f"no email with id {UNKNOWN_ID}", None))
}

GET_EMAIL_200 = {
    "yours": example("The email, its body and its timeline", EMAIL | _BODY | {"events": [_SCHEDULED_EVENT]})
}
GET_EMAIL_404 = _NO_EMAIL

_RESCHEDULED = EMAIL | {
    "send_at": "2030-06-02T16:30:00+00:00",
    "send_at_local": "2030-06-02T18:30:00+02:00",
    "next_attempt_at": "2030-06-02T16:30:00+00:00",
    "why": "Waiting for its time: it goes out at Sun 2 Jun 2030 18:30:00 CEST (in 1489 d).",
    "updated_at": _CHANGED,
}
EDIT_EMAIL_REQUEST = {
    "reschedule": example("Move it to 18:30 the next day", {"send_at": "2030-06-02T18:30:00+02:00"}),
    "in_the_past": example("A time already gone", {"send_at": "2020-01-01T09:00:00Z"}),
}
EDIT_EMAIL_200 = {"reschedule": example("Rescheduled", _RESCHEDULED | _BODY)}
EDIT_EMAIL_422 = {
    "in_the_past": example(
        "Refused; nothing changed",
        error(
            "invalid",
            "send_at: This time is in the past: Wed 1 Jan 2020 10:00:00 CET. Pick a later time or send now.",
            "send_at",
        ),
    )
}
EDIT_EMAIL_404 = _NO_EMAIL

CANCEL_EMAIL_200 = {
    "yours": example(
        "Cancelled", EMAIL | {"status": "cancelled", "why": "Cancelled: it will not be sent.", "updated_at": _CHANGED}
    )
}
CANCEL_EMAIL_404 = _NO_EMAIL
SEND_NOW_200 = {
    "yours": example(
        "Due at once: send_at is now the time of the request",
        EMAIL
        | {
            "send_at": "2026-05-04T08:35:00.654321+00:00",
            "send_at_local": "2026-05-04T10:35:00.654321+02:00",
            "next_attempt_at": "2026-05-04T08:35:00.654321+00:00",
            "why": "Due now: waiting for a worker to pick it up.",
            "updated_at": _CHANGED,
        },
    )
}
SEND_NOW_404 = _NO_EMAIL

# -- batches ----------------------------------------------------------------------------

_START = {"start_at": "2030-06-01T09:00:00+02:00", "time_zone": "Europe/Paris", "min_delay_seconds": 60}
NEW_BATCH = {
    "csv": "email,first_name\nann@example.com,Ann\nbob@example.com,Bob\n",
    "subject": "Hi {{first_name}}",
    "body_text": "Hello {{first_name}}, see you in June.",
    "name": "June invitations",
    **_START,
}
_PREVIEW: list[dict[str, Any]] = [
    {
        "line": 2,
        "to": "ann@example.com",
        "subject": "Hi Ann",
        "body_text": "Hello Ann, see you in June.",
        "send_at": "2030-06-01T07:00:00+00:00",
    },
    {
        "line": 3,
        "to": "bob@example.com",
        "subject": "Hi Bob",
        "body_text": "Hello Bob, see you in June.",
        "send_at": "2030-06-01T07:01:00+00:00",
    },
]
_SPAN = {"first_send_at": "2030-06-01T07:00:00+00:00", "last_send_at": "2030-06-01T07:01:00+00:00"}
BATCH: dict[str, Any] = {
    "id": BATCH_ID,
    "org_id": 3,
    "owner_id": 7,
    "name": "June invitations",
    "subject_template": "Hi {{first_name}}",
    "total": 2,
    "start_at": "2030-06-01T07:00:00+00:00",
    "send_tz": "Europe/Paris",
    "min_delay_seconds": 60.0,
    "hourly_cap": None,
    "created_at": _CREATED,
    "sent": 0,
    "pending": 2,
    "failed": 0,
    "uncertain": 0,
    "cancelled": 0,
    "next_at": "2030-06-01T07:00:00+00:00",
    "last_at": "2030-06-01T07:01:00+00:00",
}

CREATE_BATCH_REQUEST = {
    "preview": example(
        "Preview a list (dry_run): nothing is created",
        {
            "addresses": "ann@example.com\nbob@example.com\nnot-an-address",
            "subject": "Hi",
            "body_text": "Hello",
            "dry_run": True,
            **_START,
        },
    ),
    "list": example("Send to a CSV list, a minute apart, with placeholders", NEW_BATCH),
    "no_recipients": example("No list given", {"subject": "Hi", "body_text": "Hello"}),
}
CREATE_BATCH_200 = {
    "preview": example(
        "What would be sent; the line that is not an address is set aside",
        {
            "dry_run": True,
            "accepted": 2,
            "rejected": [
                {
                    "line": 3,
                    "value": "not-an-address",
                    "reason": "not a valid email address: An email address must have an @-sign.",
                }
            ],
            **_SPAN,
            "preview": [{**p, "subject": "Hi", "body_text": "Hello", "line": p["line"] - 1} for p in _PREVIEW],
        },
    )
}
CREATE_BATCH_201 = {
    "list": example(
        "Created: one email per line, spaced out",
        {"batch": BATCH, "accepted": 2, "rejected": [], **_SPAN, "preview": _PREVIEW},
    )
}
CREATE_BATCH_422 = {
    "no_recipients": example(
        "Refused; nothing created",
        error("invalid", "recipients: give exactly one of csv, addresses or recipients", "recipients"),
    )
}

BATCH_ID_PARAMETER = {
    "yours": example("A batch of yours (put one of your ids here)", BATCH_ID),
    "unknown": example("No batch of yours", UNKNOWN_ID),
}
RECURRENCE_ID_PARAMETER = {
    "yours": example("A recurring email of yours (put one of your ids here)", RECURRENCE_ID),
    "unknown": example("No recurring email of yours", UNKNOWN_ID),
}
_NO_BATCH = {
    "unknown": example("No such batch (or not yours)", error("not_found", f"no batch with id {UNKNOWN_ID}", None))
}
GET_BATCH_200 = {"yours": example("The batch and its progress", {"batch": BATCH})}
GET_BATCH_404 = _NO_BATCH
CANCEL_BATCH_200 = {
    "yours": example(
        "The emails not yet sending are cancelled",
        {"batch": BATCH | {"pending": 0, "cancelled": 2, "next_at": None, "last_at": None}, "cancelled": 2},
    )
}
CANCEL_BATCH_404 = _NO_BATCH

# -- bulk actions -------------------------------------------------------------------------

CREATE_BULK_REQUEST = {
    "preview": example(
        "Count first (dry_run): nothing is done", {"action": "cancel", "ids": [EMAIL_ID], "dry_run": True}
    ),
    "cancel": example(
        "Cancel these emails (over 100, add confirm_count: the count)", {"action": "cancel", "ids": [EMAIL_ID]}
    ),
    "wrong_count": example(
        "A confirm_count that is not the count", {"action": "cancel", "ids": [EMAIL_ID], "confirm_count": 2}
    ),
    "past": example(
        "Reschedule to a time that has passed", {"action": "reschedule", "q": "", "to": "2020-01-01T00:00:00Z"}
    ),
}
CREATE_BULK_200 = {
    "preview": example(
        "The exact count, what is left alone, a sample",
        {
            "dry_run": True,
            "action": "cancel",
            "count": 1,
            "left": {},
            "confirm_count_required": False,
            "sample": [{"id": EMAIL_ID, "status": "scheduled", "subject": "Hello", "to": ["ann@example.com"]}],
        },
    )
}
#: A bulk action just confirmed: its job has not run yet.
BULK_ACTION: dict[str, Any] = {
    "id": BULK_ID,
    "action": "cancel",
    "params": {},
    "query": "",
    "view": "all",
    "mine": False,
    "picked": True,
    "state": "pending",
    "total": 1,
    "applied": 0,
    "skipped": 0,
    "restored": 0,
    "undo_skipped": 0,
    "created_at": _CREATED,
    "finished_at": None,
    "undo_until": None,
    "undo_seconds_left": 0.0,
    "skipped_reasons": [],
}
CREATE_BULK_202 = {"cancel": example("Confirmed: follow it at Location", {"bulk_action": BULK_ACTION})}
CREATE_BULK_422 = {
    "wrong_count": example(
        "Refused; nothing stored", error("invalid", "confirm_count: 2 is not the number of emails (1)", "confirm_count")
    ),
    "past": example("Refused; nothing stored", error("invalid", "to: that time has passed", "to")),
}
BULK_ID_PARAMETER = {
    "yours": example("A bulk action of yours (put one of your ids here)", BULK_ID),
    "unknown": example("No bulk action of yours", UNKNOWN_ID),
}
_NO_BULK = {
    "unknown": example(
        "No such bulk action (or not yours)", error("not_found", f"no bulk action with id {UNKNOWN_ID}", None)
    )
}
#: ...and once its job has run: undo is possible until undo_until.
_BULK_DONE = BULK_ACTION | {
    "state": "done",
    "applied": 1,
    "finished_at": _CHANGED,
    "undo_until": "2026-05-04T08:35:10.654321+00:00",
    "undo_seconds_left": 9.8,
}
GET_BULK_200 = {"yours": example("Done; undo possible for a few seconds more", {"bulk_action": _BULK_DONE})}
GET_BULK_404 = _NO_BULK
UNDO_BULK_200 = {
    "yours": example(
        "Undone: the cancelled email is scheduled again",
        {"bulk_action": _BULK_DONE | {"state": "undone", "restored": 1, "undo_seconds_left": 0.0}},
    )
}
UNDO_BULK_404 = _NO_BULK

# -- the organization's settings (admins and owners; a token with the admin scope) ------

#: A new organization's settings: its name is its first owner's (``Ann``).
ORG_SETTINGS: dict[str, Any] = {
    "org_id": 3,
    "name": "Ann",
    "identity": {"from_name": None, "from_address": None, "reply_to": None},
    "providers_mode": "before",
    "daily_quota": None,
    "suspended": False,
    "suspended_reason": None,
    "providers": [],
}
#: What a token without the admin scope is told (the 403 examples are sent with one).
_NOT_ADMIN = {
    "no_admin_scope": example(
        "A token without the admin scope", error("forbidden", "this token lacks the 'admin' scope", None)
    )
}
GET_ORG_SETTINGS_200 = {"yours": example("The settings of a new organization", ORG_SETTINGS)}
GET_ORG_SETTINGS_403 = _NOT_ADMIN
EDIT_ORG_SETTINGS_REQUEST = {
    "identity": example(
        "Send as the support team",
        {"from_name": "Acme Support", "from_address": "support@example.com", "reply_to": "help@example.com"},
    ),
    "bad_mode": example("An unknown mode", {"providers_mode": "sometimes"}),
}
EDIT_ORG_SETTINGS_200 = {
    "identity": example(
        "The new identity is used from the next email sent",
        ORG_SETTINGS
        | {
            "identity": {
                "from_name": "Acme Support",
                "from_address": "support@example.com",
                "reply_to": "help@example.com",
            }
        },
    )
}
EDIT_ORG_SETTINGS_422 = {
    "bad_mode": example(
        "Nothing is stored", error("invalid", "providers_mode: must be 'before' or 'instead'", "providers_mode")
    )
}
ADD_ORG_PROVIDER_REQUEST = {
    "sendgrid": example(
        "SendGrid, 100 a second",
        {"label": "own", "url": "smtps://apikey:SG.secret@smtp.sendgrid.net:465", "rate_limit": "100/second"},
    ),
    "file": example("The offline log is the deployment's own", {"label": "file", "url": "jsonl:///tmp/mail.jsonl"}),
}
ADD_ORG_PROVIDER_200 = {
    "sendgrid": example(
        "Stored encrypted, shown masked",
        ORG_SETTINGS
        | {
            "providers": [
                {
                    "label": "own",
                    "position": 1,
                    "url": "smtps://apikey:****@smtp.sendgrid.net:465",
                    "rate_limit": "100/second",
                    "created_at": _CREATED,
                }
            ]
        },
    )
}
ADD_ORG_PROVIDER_422 = {
    "file": example("Refused", error("invalid", "url: an organization's transport is smtp:// or smtps://", "url"))
}
ORG_AUDIT_BEFORE = {"bad_before": example("Not a line's id", "yesterday")}
GET_ORG_AUDIT_200 = {
    "yours": example(
        "A new organization's log: the token this request uses was created",
        {
            "entries": [
                {
                    "id": 1,
                    "at": _CREATED,
                    "actor_id": 7,
                    "actor_email": "ann@example.com",
                    "action": "token.create",
                    "target": "ann@example.com",
                    "detail": {"name": "examples", "scopes": ["send", "read", "admin"], "token_id": 5},
                }
            ]
        },
    )
}
GET_ORG_AUDIT_422 = {"bad_before": example("Refused", error("invalid", "before: must be a line's id", "before"))}

# -- the suppression list ------------------------------------------------------------------

SUPPRESSIONS_LIMIT = {"ten": example("Ten a page", 10), "too_many": example("More than a page holds", 1000)}
SUPPRESSIONS_FORMAT = {"json": example("A page of JSON", "json")}
LIST_SUPPRESSIONS_200 = {"ten": example("A new organization's list: empty", {"suppressions": [], "next_before": None})}
LIST_SUPPRESSIONS_422 = {"too_many": example("Out of range", error("invalid", "limit: must be from 1 to 100", "limit"))}
ADD_SUPPRESSION_REQUEST = {
    "added": example("Stop sending to an address", {"address": "Ann@Example.com", "detail": "asked by phone"}),
    "invalid_address": example("An address that is not one", {"address": "ann@"}),
}
ADD_SUPPRESSION_200 = {"added": example("On the list (lower-cased)", {"address": "ann@example.com", "added": True})}
ADD_SUPPRESSION_422 = {
    "invalid_address": example(
        "Refused, with the field",
        error("invalid", "address: not a valid email address: There must be something after the @-sign.", "address"),
    )
}
SUPPRESSION_ADDRESS = {
    "absent": example("An address", "bob@example.com"),
    "invalid": example("Not an address", "bob@"),
}
REMOVE_SUPPRESSION_200 = {
    "absent": example("Not on the list: nothing to do", {"address": "bob@example.com", "removed": False})
}
REMOVE_SUPPRESSION_422 = {
    "invalid": example(
        "Not an address",
        error("invalid", "address: not a valid email address: There must be something after the @-sign.", "address"),
    )
}
IMPORT_SUPPRESSIONS_REQUEST = {
    "imported": example("A CSV with a header", {"csv": "email,name\nann@example.com,Ann\nnot-an-address,X\n"}),
    "empty": example("Nothing to import", {"csv": ""}),
}
IMPORT_SUPPRESSIONS_200 = {
    "imported": example(
        "One added, one line refused",
        {
            "added": 1,
            "already": 0,
            "rejected": [
                {
                    "line": 3,
                    "value": "not-an-address",
                    "reason": "not a valid email address: An email address must have an @-sign.",
                }
            ],
        },
    )
}
IMPORT_SUPPRESSIONS_422 = {"empty": example("Refused", error("invalid", "csv: the CSV text is required", "csv"))}

# -- any operation ----------------------------------------------------------------------

# -- failures and upcoming ----------------------------------------------------------------

GET_FAILURES_200 = {
    "none": example(
        "A new organization: no failures in the last 7 days (a group's shape: the FailureGroup schema)",
        {"since": "2026-04-27T08:30:00+00:00", "until": "2026-05-04T08:30:00+00:00", "total": 0, "groups": []},
    )
}
GET_FAILURES_422 = {"bad_mine": example("Not a yes or no", error("invalid", "mine: must be true or false", "mine"))}
MINE_BAD = {"bad_mine": example("Not a yes or no", "maybe")}
_SLOT = {"start": "2026-05-04T08:00:00+00:00", "count": 0, "busiest_user": 0, "over_limit": False, "over": []}
GET_UPCOMING_200 = {
    "none": example(
        "A new organization: nothing scheduled (hours and days start at the current UTC hour and day)",
        {
            "now": "2026-05-04T08:30:00+00:00",
            "limits": {
                "transport": None,
                "transport_hour": None,
                "transport_day": None,
                "user_hour": None,
                "user_day": None,
                "daily_quota": None,
            },
            "hours": [_SLOT] * 24,
            "days": [_SLOT] * 7,
        },
    )
}
GET_UPCOMING_422 = GET_FAILURES_422


UNKNOWN_TOKEN = {
    "unknown_token": example(
        "Authorization: Bearer with a token that is unknown or revoked",
        error("unauthenticated", "the token is unknown or revoked, or its user left its organization", None),
    )
}


# -- recurrences ----------------------------------------------------------------------------
# Their start is in 2030, so the occurrences an answer lists are the same on every run.

_NEW_RECURRENCE = {
    "to": ["team@example.com"],
    "subject": "Standup notes {{occurrence_date}}",
    "body_text": "Notes for {{occurrence_date}}",
    "preset": {"kind": "weekdays", "time": "09:00"},
    "time_zone": "Europe/Paris",
    "starts_at": "2030-06-03T00:00:00+02:00",
    "ends_at": "2030-06-30T23:59:00+02:00",
}
_NEVER = {**_NEW_RECURRENCE, "preset": None, "cron": "0 9 30 2 *"}
_NEVER_422 = error("invalid", "cron: '0 9 30 2 *' never fires: none of its months has that day", "cron")
_NEXT_FIVE = [f"2030-06-0{d}T09:00:00+02:00" for d in (3, 4, 5, 6, 7)]
_RECURRENCE_LISTED = {
    "id": RECURRENCE_ID,
    "owner_id": 7,
    "status": "active",
    "paused_reason": None,
    "summary": "Every weekday at 09:00, Europe/Paris, until 30 June 2030",
    "to": ["team@example.com"],
    "cc": [],
    "bcc": [],
    "subject": "Standup notes {{occurrence_date}}",
    "cron": "0 9 * * 1-5",
    "preset": {"kind": "weekdays", "time": "09:00"},
    "time_zone": "Europe/Paris",
    "starts_at": "2030-06-02T22:00:00+00:00",
    "ends_at": "2030-06-30T21:59:00+00:00",
    "count": None,
    "next_occurrence_at": "2030-06-03T07:00:00+00:00",
    "occurrences_made": 0,
    "failures_in_row": 0,
    "last_status": None,
    "last_occurrence_at": None,
    "last_email_id": None,
    "idempotency_key": None,
    "created_at": _CREATED,
    "updated_at": _CREATED,
}
RECURRENCE = _RECURRENCE_LISTED | {
    "body_text": "Notes for {{occurrence_date}}",
    "body_html": None,
    "next_occurrences": _NEXT_FIVE,
}
_NO_RECURRENCE = {
    "unknown": example(
        "No such recurring email (or not yours)", error("not_found", f"no recurrence with id {UNKNOWN_ID}", None)
    )
}

CREATE_RECURRENCE_REQUEST = {
    "weekdays": example("Every weekday at 09:00, Paris time, in June 2030", _NEW_RECURRENCE),
    "never_fires": example("30 February: never", _NEVER),
}
CREATE_RECURRENCE_201 = {"weekdays": example("Created, with its next five occurrences", RECURRENCE)}
CREATE_RECURRENCE_422 = {"never_fires": example("A rule that never fires", _NEVER_422)}
PREVIEW_RULE_200 = {
    "weekdays": example(
        "The rule in words and its next five occurrences",
        {"summary": RECURRENCE["summary"], "cron": "0 9 * * 1-5", "occurrences": _NEXT_FIVE},
    )
}
PREVIEW_RULE_422 = CREATE_RECURRENCE_422
LIST_RECURRENCES_LIMIT = {"yours": example("Ten at most", 10), "too_many": example("More than a page holds", 1000)}
LIST_RECURRENCES_422 = {"too_many": LIST_422["too_many"]}
LIST_RECURRENCES_200 = {"yours": example("Your recurring emails", {"recurrences": [_RECURRENCE_LISTED]})}
GET_RECURRENCE_200 = {"yours": example("It, its next occurrences and its history", RECURRENCE | {"history": []})}
EDIT_RECURRENCE_REQUEST = {
    "subject": example("New content for every occurrence not yet sent", {"subject": "Standup {{occurrence_date}}"}),
    "bad_cron": example("A rule that never fires", {"cron": "0 9 30 2 *"}),
}
EDIT_RECURRENCE_200 = {"subject": example("Changed", RECURRENCE | {"subject": "Standup {{occurrence_date}}"})}
EDIT_RECURRENCE_422 = {"bad_cron": example("Refused: nothing changed", _NEVER_422)}
DELETE_RECURRENCE_200 = {"yours": example("Deleted", {"id": RECURRENCE_ID, "status": "deleted", "cancelled": 0})}
PAUSE_RECURRENCE_200 = {
    "yours": example(
        "Paused",
        RECURRENCE
        | {
            "status": "paused",
            "paused_reason": "paused by its owner",
            "next_occurrence_at": None,
            "next_occurrences": [],
        },
    )
}
RESUME_RECURRENCE_200 = {"yours": example("Active (it was not paused)", RECURRENCE)}
PREVIEW_RECURRENCE_200 = {"yours": example("Its next five occurrences", {"occurrences": _NEXT_FIVE})}
RECURRENCE_404 = _NO_RECURRENCE


# -- webhooks -------------------------------------------------------------------------------
# No worker runs where the examples are sent: a test event's delivery stays pending.

WEBHOOK_ID = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
DELIVERY_ID = "2b3c4d5e-6f70-4182-9394-a5b6c7d8e9f0"
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8F2Cft1dnwQ="
WEBHOOK = {
    "id": WEBHOOK_ID,
    "url": "https://hooks.example.com/reach-d-box",
    "description": "Failures, to the on-call",
    "event_types": ["email.failed", "email.uncertain"],
    "enabled": True,
    "failing_since": None,
    "disabled_reason": None,
    "previous_secret_valid_until": None,
    "created_at": _CREATED,
    "updated_at": _CREATED,
    "pending": 0,
}
_NEW_WEBHOOK = {
    "url": "https://hooks.example.com/reach-d-box",
    "description": "Failures, to the on-call",
    "event_types": ["email.failed", "email.uncertain"],
}
_NO_WEBHOOK = {
    "unknown": example(
        "No such endpoint (or another organization's)", error("not_found", "No such webhook endpoint.", None)
    )
}
CREATE_WEBHOOK_REQUEST = {
    "created": example("Failures and uncertain sends", _NEW_WEBHOOK),
    "plain_http": example("Not https://", {**_NEW_WEBHOOK, "url": "http://hooks.example.com/reach-d-box"}),
}
CREATE_WEBHOOK_201 = {"created": example("Created: its secret is shown this once", WEBHOOK | {"secret": _SECRET})}
CREATE_WEBHOOK_422 = {"plain_http": example("Refused", error("invalid", "url: must start with https://", "url"))}
LIST_WEBHOOKS_200 = {"yours": example("The organization's endpoints (no secret)", {"webhooks": [WEBHOOK]})}
GET_WEBHOOK_200 = {"yours": example("The endpoint (no secret)", WEBHOOK)}
EDIT_WEBHOOK_REQUEST = {
    "disable": example("Stop deliveries for now", {"enabled": False}),
    "unknown_type": example("An event type that does not exist", {"event_types": ["email.opened"]}),
}
EDIT_WEBHOOK_200 = {"disable": example("Disabled", WEBHOOK | {"enabled": False})}
EDIT_WEBHOOK_422 = {
    "unknown_type": example(
        "Refused: nothing changed",
        error(
            "invalid",
            "event_types: 'email.opened' is not one of email.sent, email.failed, email.uncertain, email.offline,"
            " email.cancelled, email.bounced, email.complained, batch.completed, recurrence.paused",
            "event_types",
        ),
    )
}
DELETE_WEBHOOK_200 = {"yours": example("Deleted, with its deliveries", {"id": WEBHOOK_ID, "deleted": True})}
ROTATE_WEBHOOK_200 = {
    "yours": example(
        "The new secret, shown this once; the old one signs too for a day",
        WEBHOOK | {"secret": _SECRET, "previous_secret_valid_until": "2026-05-05T08:30:00.123456+00:00"},
    )
}
DELIVERY = {
    "id": DELIVERY_ID,
    "webhook_id": "msg_2b3c4d5e6f7041829394a5b6c7d8e9f0",
    "endpoint_id": WEBHOOK_ID,
    "event_type": "webhook.test",
    "payload": {
        "type": "webhook.test",
        "timestamp": "2026-05-04T08:30:00.123456Z",
        "data": {"endpoint_id": WEBHOOK_ID, "message": "a test event"},
    },
    "created_at": _CREATED,
    "status": "pending",
    "attempts": 0,
    "next_attempt_at": None,
    "finished_at": None,
    "last_status_code": None,
}
TEST_WEBHOOK_201 = {"yours": example("Sent shortly by a worker", DELIVERY)}
LIST_DELIVERIES_200 = {"yours": example("Newest first", {"deliveries": [DELIVERY]})}
LIST_DELIVERIES_BEFORE = {"not_a_delivery": example("Not one of its deliveries", UNKNOWN_ID)}
LIST_DELIVERIES_422 = {
    "not_a_delivery": example("Refused", error("invalid", "before: must be a delivery's id", "before"))
}
GET_DELIVERY_200 = {"yours": example("The delivery and its attempts", DELIVERY | {"attempt_log": []})}
REDELIVER_200 = {"yours": example("Pending again, the same webhook-id", DELIVERY)}
_NO_DELIVERY = {"unknown_delivery": example("No such delivery", error("not_found", "No such delivery.", None))}
WEBHOOK_404 = _NO_WEBHOOK
DELIVERY_404 = _NO_DELIVERY
WEBHOOK_ID_PARAMETER = {"yours": example("One of yours", WEBHOOK_ID), "unknown": example("No one's", UNKNOWN_ID)}
DELIVERY_ID_PARAMETER = {
    "yours": example("One of its deliveries", DELIVERY_ID),
    "unknown_delivery": example("No one's", UNKNOWN_ID),
}
