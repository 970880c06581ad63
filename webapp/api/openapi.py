"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written by hand next to the routes it describes; tests check that every route is
documented and that the answers match these schemas.
"""

from __future__ import annotations

from typing import Any

from tasks import batches, listing, validation
from tasks.models import STATUSES
from webapp.api import bp

S = "#/components/schemas/"
R = "#/components/responses/"


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": S + name}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"{R}E{c}"} for c in codes}


_ADDRESSES = {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": validation.MAX_RECIPIENTS}
#: cc and bcc may be null (none).
_MAYBE_ADDRESSES = {**_ADDRESSES, "type": ["array", "null"]}
_ID = {"name": "email_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_BATCH_ID = {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Repeat-safe key: the same key and body return the first result; another body is 409.",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}
_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "URL of the created resource"}}
_REPLAYED = {
    "Location": {"schema": {"type": "string"}},
    "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}},
}

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
                    "field": _nullable("string"),
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
            "job_id": _nullable("integer"),
            "detail": {"type": "object"},
        },
    },
    "Email": {
        "type": "object",
        "required": ["id", "status", "to", "cc", "bcc", "subject", "send_at", "time_zone", "next_attempt_at", "why"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "to": {"type": "array", "items": {"type": "string"}},
            "cc": {"type": "array", "items": {"type": "string"}},
            "bcc": {"type": "array", "items": {"type": "string"}},
            "subject": {"type": "string"},
            "send_at": {"type": "string", "format": "date-time", "description": "The instant asked for (UTC)."},
            "send_at_local": _nullable("string", description="The same instant in time_zone."),
            "time_zone": {"type": "string", "description": "IANA zone the time was chosen in."},
            "next_attempt_at": {"type": "string", "format": "date-time"},
            "waiting_reason": _nullable("string"),
            "why": {"type": "string", "description": "Where it stands, in plain words."},
            "attempts": {"type": "integer"},
            "last_error": _nullable("string"),
            "message_id": {"type": "string"},
            "transport": _nullable("string"),
            "provider_reply": _nullable("string"),
            "refused_recipients": {"type": "object", "additionalProperties": {"type": "string"}},
            "batch_id": _nullable("string"),
            "idempotency_key": _nullable("string"),
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "sent_at": _nullable("string"),
            "body_text": {"type": "string"},
            "body_html": _nullable("string"),
            "events": {"type": "array", "items": _ref("Event")},
        },
    },
    "EmailList": {
        "type": "object",
        "required": ["emails", "next_cursor"],
        "properties": {
            "emails": {"type": "array", "items": _ref("Email")},
            "next_cursor": _nullable("string", description="Pass as ?cursor= for the next (older) page."),
        },
    },
    "NewEmail": {
        "type": "object",
        "required": ["to", "subject", "body_text"],
        "additionalProperties": False,
        "properties": {
            "to": _ADDRESSES,
            "cc": _MAYBE_ADDRESSES,
            "bcc": _MAYBE_ADDRESSES,
            "subject": {"type": "string", "maxLength": validation.MAX_SUBJECT_CHARS},
            "body_text": {"type": "string"},
            "body_html": _nullable("string"),
            "send_at": _nullable(
                "string", format="date-time", description="ISO 8601 with an offset; required unless send_now."
            ),
            "time_zone": _nullable("string", description="IANA zone, e.g. Europe/Paris (default UTC)."),
            "send_now": {"type": "boolean"},
            "idempotency_key": _nullable("string", description="Same as the Idempotency-Key header."),
        },
    },
    "EmailChanges": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "to": _ADDRESSES,
            "cc": _MAYBE_ADDRESSES,
            "bcc": _MAYBE_ADDRESSES,
            "subject": {"type": "string"},
            "body_text": {"type": "string"},
            "body_html": _nullable("string"),
            "send_at": _nullable("string", format="date-time", description="null: keep the time"),
            "time_zone": _nullable("string"),
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["subject", "body_text"],
        "additionalProperties": False,
        "description": "Exactly one of csv, addresses or recipients.",
        "properties": {
            "csv": _nullable("string", description="CSV text; a header row with an email column."),
            "addresses": _nullable("string", description="Addresses, one per line or comma-separated."),
            "recipients": {
                "type": ["array", "null"],
                "items": {
                    "oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": {"type": "string"}}]
                },
            },
            "subject": {"type": "string", "description": "May use {{column}} placeholders."},
            "body_text": {"type": "string", "description": "May use {{column}} placeholders."},
            "start_at": _nullable("string", description="ISO 8601 with an offset; default now."),
            "time_zone": _nullable("string"),
            "min_delay_seconds": _nullable("number", minimum=0, maximum=batches.MAX_DELAY),
            "hourly_cap": _nullable("integer", minimum=1, maximum=batches.MAX_HOURLY_CAP),
            "name": {"type": "string", "maxLength": 200},
            "dry_run": {"type": "boolean", "description": "Only preview: nothing is created."},
            "idempotency_key": _nullable("string"),
        },
    },
    "Batch": {
        "type": "object",
        "required": ["id", "total", "sent", "pending", "next_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "owner_id": {"type": "integer"},
            "name": {"type": "string"},
            "subject_template": {"type": "string"},
            "total": {"type": "integer"},
            "start_at": {"type": "string", "format": "date-time"},
            "send_tz": {"type": "string"},
            "min_delay_seconds": {"type": "number"},
            "hourly_cap": _nullable("integer"),
            "created_at": {"type": "string", "format": "date-time"},
            "sent": {"type": "integer"},
            "pending": {"type": "integer"},
            "failed": {"type": "integer"},
            "uncertain": {"type": "integer"},
            "cancelled": {"type": "integer"},
            "next_at": _nullable("string"),
            "last_at": _nullable("string"),
        },
    },
    "BatchPreview": {
        "type": "object",
        "required": ["accepted", "rejected", "preview", "first_send_at", "last_send_at"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "batch": _ref("Batch"),
            "accepted": {"type": "integer"},
            "first_send_at": _nullable("string"),
            "last_send_at": _nullable("string"),
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
        "properties": {"batch": _ref("Batch"), "cancelled": {"type": "integer"}},
    },
}

_ERROR_TEXT = {
    400: "The body is not a JSON object (or the request is malformed).",
    401: "Not signed in, or the token is unknown or revoked.",
    403: "A session request without a valid CSRF token.",
    404: "No such resource (or it belongs to someone else).",
    409: "The state does not allow it (already sent, key reused with another body).",
    413: "The request body is too large.",
    422: "Invalid input; field names the first problem.",
    429: "Too many requests; wait Retry-After seconds.",
}


def _error_response(code: int) -> dict[str, Any]:
    headers = {"Retry-After": {"schema": {"type": "integer"}}} if code == 429 else None
    return _json(_ref("Error"), _ERROR_TEXT[code], headers)


def document() -> dict[str, Any]:
    """Return the OpenAPI document."""
    write = _errors(400, 401, 403, 413, 429)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Reach D. Box API",
            "version": "1",
            "description": "Schedule emails and follow them. Times are ISO 8601 with an offset, plus time_zone.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}, {"sessionCookie": [], "csrfToken": []}],
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A personal access token."},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "reachdbox_session"},
                "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
            "schemas": SCHEMAS,
            "responses": {f"E{c}": _error_response(c) for c in _ERROR_TEXT},
        },
        "paths": {
            "/emails": {
                "post": {
                    "operationId": "createEmail",
                    "summary": "Schedule an email",
                    "parameters": [_IDEMPOTENCY],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("NewEmail")}}},
                    "responses": {
                        "201": _json(_ref("Email"), "Scheduled.", _LOCATION),
                        "200": _json(_ref("Email"), "Already created with this Idempotency-Key.", _REPLAYED),
                        **write,
                        **_errors(409, 422),
                    },
                },
                "get": {
                    "operationId": "listEmails",
                    "summary": "List emails, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(listing.VIEWS)}},
                        {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": listing.MAX_QUERY}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": listing.MAX_LIMIT, "default": 50},
                        },
                        {"name": "batch_id", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                    ],
                    "responses": {"200": _json(_ref("EmailList"), "One page."), **_errors(401, 404, 422, 429)},
                },
            },
            "/emails/{email_id}": {
                "parameters": [_ID],
                "get": {
                    "operationId": "getEmail",
                    "summary": "An email, its body and timeline",
                    "responses": {"200": _json(_ref("Email"), "The email."), **_errors(401, 404, 429)},
                },
                "patch": {
                    "operationId": "editEmail",
                    "summary": "Reschedule or edit a scheduled email",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("EmailChanges")}},
                    },
                    "responses": {"200": _json(_ref("Email"), "Changed."), **write, **_errors(404, 409, 422)},
                },
            },
            "/emails/{email_id}/cancel": {
                "parameters": [_ID],
                "post": {
                    "operationId": "cancelEmail",
                    "summary": "Cancel a scheduled email",
                    "responses": {"200": _json(_ref("Email"), "Cancelled."), **write, **_errors(404, 409)},
                },
            },
            "/emails/{email_id}/send-now": {
                "parameters": [_ID],
                "post": {
                    "operationId": "sendEmailNow",
                    "summary": "Send a scheduled email at once",
                    "responses": {"200": _json(_ref("Email"), "Due now."), **write, **_errors(404, 409)},
                },
            },
            "/batches": {
                "post": {
                    "operationId": "createBatch",
                    "summary": "Send to a list (or preview it with dry_run)",
                    "parameters": [_IDEMPOTENCY],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("BatchRequest")}},
                    },
                    "responses": {
                        "201": _json(_ref("BatchPreview"), "Created; rejected lines listed.", _LOCATION),
                        "200": _json(_ref("BatchPreview"), "A dry run, or a repeated Idempotency-Key.", _REPLAYED),
                        **write,
                        **_errors(409, 422),
                    },
                },
            },
            "/batches/{batch_id}": {
                "parameters": [_BATCH_ID],
                "get": {
                    "operationId": "getBatch",
                    "summary": "A batch and its progress",
                    "responses": {"200": _json(_ref("BatchResult"), "The batch."), **_errors(401, 404, 429)},
                },
            },
            "/batches/{batch_id}/cancel": {
                "parameters": [_BATCH_ID],
                "post": {
                    "operationId": "cancelBatch",
                    "summary": "Cancel the batch's emails not yet sending",
                    "responses": {"200": _json(_ref("BatchResult"), "Cancelled the rest."), **write, **_errors(404)},
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> Any:
    """Serve the OpenAPI document (no sign-in needed)."""
    return document()
