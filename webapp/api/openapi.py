"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written by hand next to the routes it describes; tests check that every route is
documented and that the answers match these schemas. The worked examples (``examples.py``)
are sent to a running app by tests/integration/test_api_examples.py. The reference page
at ``/api/docs`` (``docs.py``) draws this document.
"""

from __future__ import annotations

from typing import Any

from tasks.domain import listing, recurrences, search
from tasks.webhooks import events as webhook_events
from webapp.api import bp, examples, schemas

R = "#/components/responses/"


def _json(
    schema: dict[str, Any],
    description: str,
    headers: dict[str, Any] | None = None,
    examples: dict[str, Any] | None = None,
) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    out: dict[str, Any] = {"description": description, "content": {"application/json": media}}
    if headers:
        out["headers"] = headers
    return out


def _body(schema: str, examples: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body; its first example is what the reference page fills in."""
    return {"required": True, "content": {"application/json": {"schema": schemas.ref(schema), "examples": examples}}}


def _error(code: int, examples: dict[str, Any]) -> dict[str, Any]:
    """An operation's own error answer, with its examples (the shared ones in components have none)."""
    return {str(code): _error_response(code, examples)}


def _links(param: str, *operations: str) -> dict[str, Any]:
    """Say where a created resource's id goes next (for clients and stateful testers)."""
    return {op: {"operationId": op, "parameters": {param: "$response.body#/id"}} for op in operations}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"{R}E{c}"} for c in codes}


#: The search language, as ``GET /emails?q=`` documents it (docs/search.md says more).
_Q_DESCRIPTION = (
    "A search: terms separated by spaces, all of which must hold. A term is free text (found in the "
    "subject or a recipient) or `qualifier:value`; `!` before a term leaves out what it matches; a value "
    'with spaces is quoted (`subject:"weekly report"`). The qualifiers:\n\n'
    + "\n".join(f"- `{k}:` {hint}" for k, hint in search.QUALIFIERS.items())
    + "\n\nTimes without an offset are UTC. An invalid query is a 422 naming `q`, the position and the reason."
)

_ID = {
    "name": "email_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "examples": examples.EMAIL_ID_PARAMETER,
}
_BATCH_ID = {
    "name": "batch_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "examples": examples.BATCH_ID_PARAMETER,
}
_BULK_ID = {
    "name": "bulk_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "examples": examples.BULK_ID_PARAMETER,
}
_RECURRENCE_ID = {
    "name": "recurrence_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "examples": examples.RECURRENCE_ID_PARAMETER,
}
_WEBHOOK_ID = {
    "name": "endpoint_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "examples": examples.WEBHOOK_ID_PARAMETER,
}
_DELIVERY_ID = {
    "name": "delivery_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "examples": examples.DELIVERY_ID_PARAMETER,
}
_N = {
    "name": "n",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": recurrences.MAX_PREVIEW, "default": 5},
}
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

_ERROR_TEXT = {
    400: "The body is not a JSON object (or the request is malformed).",
    401: "Not signed in, or the token is unknown, revoked, or its user left its organization.",
    403: "Refused, with the reason: the caller's role in the organization (viewers only read), the token's"
    " scopes (read, send), or a session request without a valid CSRF token.",
    404: "No such resource (or it belongs to another organization).",
    409: "The state does not allow it (already sent, key reused with another body).",
    413: "The request body is too large.",
    422: "Invalid input; field names the first problem.",
    429: "Too many requests; wait Retry-After seconds.",
}


_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}},
    429: {"Retry-After": {"schema": {"type": "integer"}}},
}


def _error_response(code: int, examples: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json(schemas.ref("Error"), _ERROR_TEXT[code], _ERROR_HEADERS.get(code), examples)


def document() -> dict[str, Any]:
    """Return the OpenAPI document."""
    write = _errors(400, 401, 403, 413, 429)
    admin = _errors(401, 429) | _error(403, examples.GET_ORG_SETTINGS_403)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Reach D. Box API",
            "version": "1",
            "description": "Schedule emails and follow them. Times are ISO 8601 with an offset, plus time_zone.",
        },
        "servers": [{"url": "/api/v1"}],
        "tags": [
            {"name": "emails", "description": "One email: schedule it, follow it, change or cancel it."},
            {"name": "batches", "description": "Send to a list: one email per recipient, spaced out."},
            {
                "name": "organization",
                "description": "The organization's settings and audit log: admins and owners, tokens with 'admin'.",
            },
            {
                "name": "recurrences",
                "description": "Recurring emails: a rule in a time zone; each occurrence is an ordinary email.",
            },
            {
                "name": "suppressions",
                "description": "Addresses nothing is sent to: hard bounces, complaints, unsubscribes, and those added"
                " by hand; the operators' global list is shown too.",
            },
            {
                "name": "webhooks",
                "description": "Signed HTTP notifications of the organization's events (Standard Webhooks):"
                " admins and owners, tokens with 'admin'. What is sent: the document's webhooks.",
            },
        ],
        "security": [{"bearerAuth": []}, {"sessionCookie": [], "csrfToken": []}],
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal access token (created under API tokens in the dashboard).",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "reachdbox_session",
                    "description": "The dashboard's session: on /api/docs, signed in, there is nothing to fill in.",
                },
                "csrfToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-CSRF-Token",
                    "description": "With the session, on POST and PATCH; /api/docs adds it by itself.",
                },
            },
            "schemas": schemas.SCHEMAS,
            "responses": {
                f"E{c}": _error_response(c, examples.UNKNOWN_TOKEN if c == 401 else None) for c in _ERROR_TEXT
            },
        },
        "paths": {
            "/emails": {
                "post": {
                    "operationId": "createEmail",
                    "tags": ["emails"],
                    "summary": "Schedule an email",
                    "parameters": [_IDEMPOTENCY],
                    "requestBody": _body("NewEmail", examples.CREATE_EMAIL_REQUEST),
                    "responses": {
                        "201": {
                            **_json(schemas.ref("Email"), "Scheduled.", _LOCATION, examples.CREATE_EMAIL_201),
                            "links": _links("email_id", "getEmail", "editEmail", "cancelEmail", "sendEmailNow"),
                        },
                        "200": _json(schemas.ref("Email"), "Already created with this Idempotency-Key.", _REPLAYED),
                        **write,
                        **_errors(409),
                        **_error(422, examples.CREATE_EMAIL_422),
                    },
                },
                "get": {
                    "operationId": "listEmails",
                    "tags": ["emails"],
                    "summary": "List emails, newest first",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(listing.FILTERS)},
                            "examples": examples.LIST_STATUS,
                        },
                        {
                            "name": "q",
                            "in": "query",
                            "description": _Q_DESCRIPTION,
                            "schema": {"type": "string", "maxLength": search.MAX_QUERY},
                            "examples": examples.LIST_Q,
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "schema": {"type": "string", "maxLength": listing.MAX_CURSOR},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": listing.MAX_LIMIT, "default": 50},
                            "examples": examples.LIST_LIMIT,
                        },
                        {"name": "batch_id", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                        {
                            "name": "mine",
                            "in": "query",
                            "description": "Only the caller's own emails (else the whole organization's).",
                            "schema": {"type": "boolean", "default": False},
                        },
                    ],
                    "responses": {
                        "200": _json(schemas.ref("EmailList"), "One page.", examples=examples.LIST_200),
                        **_errors(401, 403, 404, 429),
                        **_error(422, examples.LIST_422),
                    },
                },
            },
            "/emails/{email_id}": {
                "parameters": [_ID],
                "get": {
                    "operationId": "getEmail",
                    "tags": ["emails"],
                    "summary": "An email, its body and timeline",
                    "responses": {
                        "200": _json(schemas.ref("Email"), "The email.", examples=examples.GET_EMAIL_200),
                        **_errors(401, 403, 429),
                        **_error(404, examples.GET_EMAIL_404),
                    },
                },
                "patch": {
                    "operationId": "editEmail",
                    "tags": ["emails"],
                    "summary": "Reschedule or edit a scheduled email",
                    "requestBody": _body("EmailChanges", examples.EDIT_EMAIL_REQUEST),
                    "responses": {
                        "200": _json(schemas.ref("Email"), "Changed.", examples=examples.EDIT_EMAIL_200),
                        **write,
                        **_errors(409),
                        **_error(404, examples.EDIT_EMAIL_404),
                        **_error(422, examples.EDIT_EMAIL_422),
                    },
                },
            },
            "/emails/{email_id}/cancel": {
                "parameters": [_ID],
                "post": {
                    "operationId": "cancelEmail",
                    "tags": ["emails"],
                    "summary": "Cancel a scheduled email",
                    "responses": {
                        "200": _json(schemas.ref("Email"), "Cancelled.", examples=examples.CANCEL_EMAIL_200),
                        **write,
                        **_errors(409),
                        **_error(404, examples.CANCEL_EMAIL_404),
                    },
                },
            },
            "/emails/{email_id}/send-now": {
                "parameters": [_ID],
                "post": {
                    "operationId": "sendEmailNow",
                    "tags": ["emails"],
                    "summary": "Send a scheduled email at once",
                    "responses": {
                        "200": _json(schemas.ref("Email"), "Due now.", examples=examples.SEND_NOW_200),
                        **write,
                        **_errors(409),
                        **_error(404, examples.SEND_NOW_404),
                    },
                },
            },
            "/emails/bulk": {
                "post": {
                    "operationId": "createBulkAction",
                    "tags": ["emails"],
                    "summary": "Cancel, reschedule, send now or retry every email a search matches (or these ids)",
                    "description": "Count first with dry_run. Over 100 emails, confirm_count must be the count. The"
                    " emails are those matching when it is confirmed; one that changes before its turn is skipped"
                    " and reported. A cancel or a reschedule can be undone for 10 s once done (docs/bulk-actions.md).",
                    "requestBody": _body("BulkRequest", examples.CREATE_BULK_REQUEST),
                    "responses": {
                        "202": {
                            **_json(
                                schemas.ref("BulkAction"),
                                "Confirmed; a job does it. Follow it at Location.",
                                _LOCATION,
                                examples.CREATE_BULK_202,
                            ),
                            "links": {
                                op: {"operationId": op, "parameters": {"bulk_id": "$response.body#/bulk_action/id"}}
                                for op in ("getBulkAction", "undoBulkAction")
                            },
                        },
                        "200": _json(schemas.ref("BulkPreview"), "A dry run.", examples=examples.CREATE_BULK_200),
                        **write,
                        **_error(422, examples.CREATE_BULK_422),
                    },
                },
            },
            "/emails/bulk/{bulk_id}": {
                "parameters": [_BULK_ID],
                "get": {
                    "operationId": "getBulkAction",
                    "tags": ["emails"],
                    "summary": "A bulk action and its progress",
                    "responses": {
                        "200": _json(schemas.ref("BulkAction"), "The bulk action.", examples=examples.GET_BULK_200),
                        **_errors(401, 403, 429),
                        **_error(404, examples.GET_BULK_404),
                    },
                },
            },
            "/emails/bulk/{bulk_id}/undo": {
                "parameters": [_BULK_ID],
                "post": {
                    "operationId": "undoBulkAction",
                    "tags": ["emails"],
                    "summary": "Undo a finished bulk cancel or reschedule, within 10 s",
                    "responses": {
                        "200": _json(
                            schemas.ref("BulkAction"),
                            "Undone: restored, and what was left as it was.",
                            examples=examples.UNDO_BULK_200,
                        ),
                        **write,
                        **_errors(409),
                        **_error(404, examples.UNDO_BULK_404),
                    },
                },
            },
            "/batches": {
                "post": {
                    "operationId": "createBatch",
                    "tags": ["batches"],
                    "summary": "Send to a list (or preview it with dry_run)",
                    "parameters": [_IDEMPOTENCY],
                    "requestBody": _body("BatchRequest", examples.CREATE_BATCH_REQUEST),
                    "responses": {
                        "201": {
                            **_json(
                                schemas.ref("BatchPreview"),
                                "Created; rejected lines listed.",
                                _LOCATION,
                                examples.CREATE_BATCH_201,
                            ),
                            "links": {
                                op: {"operationId": op, "parameters": {"batch_id": "$response.body#/batch/id"}}
                                for op in ("getBatch", "cancelBatch")
                            },
                        },
                        "200": _json(
                            schemas.ref("BatchPreview"),
                            "A dry run, or a repeated Idempotency-Key.",
                            _REPLAYED,
                            examples.CREATE_BATCH_200,
                        ),
                        **write,
                        **_errors(409),
                        **_error(422, examples.CREATE_BATCH_422),
                    },
                },
            },
            "/batches/{batch_id}": {
                "parameters": [_BATCH_ID],
                "get": {
                    "operationId": "getBatch",
                    "tags": ["batches"],
                    "summary": "A batch and its progress",
                    "responses": {
                        "200": _json(schemas.ref("BatchResult"), "The batch.", examples=examples.GET_BATCH_200),
                        **_errors(401, 403, 429),
                        **_error(404, examples.GET_BATCH_404),
                    },
                },
            },
            "/batches/{batch_id}/cancel": {
                "parameters": [_BATCH_ID],
                "post": {
                    "operationId": "cancelBatch",
                    "tags": ["batches"],
                    "summary": "Cancel the batch's emails not yet sending",
                    "responses": {
                        "200": _json(
                            schemas.ref("BatchResult"), "Cancelled the rest.", examples=examples.CANCEL_BATCH_200
                        ),
                        **write,
                        **_error(404, examples.CANCEL_BATCH_404),
                    },
                },
            },
            "/org/settings": {
                "get": {
                    "operationId": "getOrgSettings",
                    "tags": ["organization"],
                    "summary": "The organization's settings (transports masked)",
                    "responses": {
                        "200": _json(
                            schemas.ref("OrgSettings"), "The settings.", examples=examples.GET_ORG_SETTINGS_200
                        ),
                        **admin,
                    },
                },
                "patch": {
                    "operationId": "editOrgSettings",
                    "tags": ["organization"],
                    "summary": "Change the sending identity or how the organization's transports are used",
                    "requestBody": _body("OrgSettingsChanges", examples.EDIT_ORG_SETTINGS_REQUEST),
                    "responses": {
                        "200": _json(schemas.ref("OrgSettings"), "Changed.", examples=examples.EDIT_ORG_SETTINGS_200),
                        **write,
                        **admin,
                        **_error(422, examples.EDIT_ORG_SETTINGS_422),
                    },
                },
            },
            "/org/providers": {
                "post": {
                    "operationId": "addOrgProvider",
                    "tags": ["organization"],
                    "summary": "Add a mail transport of the organization's own (stored encrypted)",
                    "requestBody": _body("NewOrgProvider", examples.ADD_ORG_PROVIDER_REQUEST),
                    "responses": {
                        "200": _json(
                            schemas.ref("OrgSettings"), "Added, last in order.", examples=examples.ADD_ORG_PROVIDER_200
                        ),
                        **write,
                        **admin,
                        **_error(422, examples.ADD_ORG_PROVIDER_422),
                    },
                },
            },
            "/org/audit": {
                "get": {
                    "operationId": "getOrgAudit",
                    "tags": ["organization"],
                    "summary": "The organization's audit log, newest first",
                    "parameters": [
                        {
                            "name": "before",
                            "in": "query",
                            "description": "The id of the last line seen: the page after it.",
                            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                            "examples": examples.ORG_AUDIT_BEFORE,
                        }
                    ],
                    "responses": {
                        "200": _json(schemas.ref("AuditLog"), "One page.", examples=examples.GET_ORG_AUDIT_200),
                        **admin,
                        **_error(422, examples.GET_ORG_AUDIT_422),
                    },
                },
            },
            **_recurrence_paths(write),
            **_suppression_paths(write, admin),
            **_webhook_paths(),
            **_insight_paths(),
        },
        "webhooks": _webhooks(),
    }


def _insight_paths() -> dict[str, Any]:
    """The paths of /failures and /upcoming: the dashboard's Failures and Upcoming views."""
    x = examples
    mine = {
        "name": "mine",
        "in": "query",
        "description": "true: only the caller's own emails (as the list's Mine).",
        "schema": {"type": "string", "enum": ["true", "false", "1", "0"], "default": "false"},
        "examples": x.MINE_BAD,
    }
    return {
        "/failures": {
            "get": {
                "operationId": "getFailures",
                "tags": ["emails"],
                "summary": "Failed, uncertain and bounced emails of the last 7 days (by creation), grouped by cause",
                "description": "Each group: what happened, the SMTP reply code and enhanced status, the error class,"
                " the transport and the first recipient's domain; its count, failures per hour over 24 hours, up to"
                " 3 examples, and the search that lists its emails. The largest group first.",
                "parameters": [mine],
                "responses": {
                    "200": _json(schemas.ref("Failures"), "The groups.", examples=x.GET_FAILURES_200),
                    **_errors(401, 429),
                    **_error(422, x.GET_FAILURES_422),
                },
            }
        },
        "/upcoming": {
            "get": {
                "operationId": "getUpcoming",
                "tags": ["emails"],
                "summary": "Scheduled emails per hour (next 24) and per UTC day (next 7), against the limits",
                "description": "Emails already due count in the current hour. An hour or a day over a limit (the first"
                " transport's rate limit, a user's, the daily quota) has over_limit true: a backlog is coming.",
                "parameters": [mine],
                "responses": {
                    "200": _json(schemas.ref("Upcoming"), "The forecast.", examples=x.GET_UPCOMING_200),
                    **_errors(401, 429),
                    **_error(422, x.GET_UPCOMING_422),
                },
            }
        },
    }


def _suppression_paths(write: dict[str, Any], admin: dict[str, Any]) -> dict[str, Any]:
    x = examples
    return {
        "/suppressions": {
            "get": {
                "operationId": "listSuppressions",
                "tags": ["suppressions"],
                "summary": "The list, newest first (the global one's too); search; all of it as CSV",
                "parameters": [
                    {"name": "q", "in": "query", "description": "Part of an address.", "schema": {"type": "string"}},
                    {
                        "name": "before",
                        "in": "query",
                        "description": "The next_before of the page before.",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
                        "examples": x.SUPPRESSIONS_LIMIT,
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "description": "csv: every line as CSV (address, reason, detail, list, created_at).",
                        "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
                        "examples": x.SUPPRESSIONS_FORMAT,
                    },
                ],
                "responses": {
                    "200": {
                        **_json(schemas.ref("SuppressionList"), "One page.", examples=x.LIST_SUPPRESSIONS_200),
                        "content": {
                            **_json(schemas.ref("SuppressionList"), "", examples=x.LIST_SUPPRESSIONS_200)["content"],
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(401, 429),
                    **_error(422, x.LIST_SUPPRESSIONS_422),
                },
            },
            "post": {
                "operationId": "addSuppression",
                "tags": ["suppressions"],
                "summary": "Stop sending to an address (one already there is left as it is)",
                "requestBody": _body("NewSuppression", x.ADD_SUPPRESSION_REQUEST),
                "responses": {
                    "200": _json(schemas.ref("SuppressionAdded"), "On the list.", examples=x.ADD_SUPPRESSION_200),
                    **write,
                    **_error(422, x.ADD_SUPPRESSION_422),
                },
            },
        },
        "/suppressions/{address}": {
            "parameters": [
                {
                    "name": "address",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "examples": x.SUPPRESSION_ADDRESS,
                }
            ],
            "delete": {
                "operationId": "removeSuppression",
                "tags": ["suppressions"],
                "summary": "Send to an address again (admins; on the audit log)",
                "responses": {
                    "200": _json(schemas.ref("SuppressionRemoved"), "Off the list.", examples=x.REMOVE_SUPPRESSION_200),
                    **admin,
                    **_error(422, x.REMOVE_SUPPRESSION_422),
                },
            },
        },
        "/suppressions/import": {
            "post": {
                "operationId": "importSuppressions",
                "tags": ["suppressions"],
                "summary": "Add the addresses of a CSV; bad lines are listed, not fatal",
                "requestBody": _body("SuppressionImport", x.IMPORT_SUPPRESSIONS_REQUEST),
                "responses": {
                    "200": _json(schemas.ref("SuppressionImported"), "Imported.", examples=x.IMPORT_SUPPRESSIONS_200),
                    **write,
                    **_error(422, x.IMPORT_SUPPRESSIONS_422),
                },
            },
        },
    }


def _recurrence_paths(write: dict[str, Any]) -> dict[str, Any]:
    """The paths of /recurrences."""
    one = schemas.ref("Recurrence")
    x = examples
    return {
        "/recurrences": {
            "post": {
                "operationId": "createRecurrence",
                "tags": ["recurrences"],
                "summary": "Create a recurring email",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body("NewRecurrence", x.CREATE_RECURRENCE_REQUEST),
                "responses": {
                    "201": {
                        **_json(
                            one,
                            "Created; occurrences are created shortly before their time.",
                            _LOCATION,
                            x.CREATE_RECURRENCE_201,
                        ),
                        "links": {
                            op: {"operationId": op, "parameters": {"recurrence_id": "$response.body#/id"}}
                            for op in ("getRecurrence", "editRecurrence", "pauseRecurrence", "deleteRecurrence")
                        },
                    },
                    "200": _json(one, "Already created with this Idempotency-Key.", _REPLAYED),
                    **write,
                    **_errors(409),
                    **_error(422, x.CREATE_RECURRENCE_422),
                },
            },
            "get": {
                "operationId": "listRecurrences",
                "tags": ["recurrences"],
                "summary": "List recurring emails, newest first",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": listing.MAX_LIMIT, "default": 50},
                        "examples": x.LIST_RECURRENCES_LIMIT,
                    },
                    {
                        "name": "mine",
                        "in": "query",
                        "description": "Only the caller's own recurrences (else the whole organization's).",
                        "schema": {"type": "boolean", "default": False},
                    },
                ],
                "responses": {
                    "200": _json(
                        schemas.ref("RecurrenceList"), "Every one not deleted.", examples=x.LIST_RECURRENCES_200
                    ),
                    **_errors(401, 429),
                    **_error(422, x.LIST_RECURRENCES_422),
                },
            },
        },
        "/recurrences/preview": {
            "post": {
                "operationId": "previewRule",
                "tags": ["recurrences"],
                "summary": "The next occurrences of a rule, without saving it",
                "parameters": [_N],
                "requestBody": _body("NewRecurrence", x.CREATE_RECURRENCE_REQUEST),
                "responses": {
                    "200": _json(
                        schemas.ref("Occurrences"),
                        "ISO 8601 instants with their zone's offset.",
                        examples=x.PREVIEW_RULE_200,
                    ),
                    **write,
                    **_error(422, x.PREVIEW_RULE_422),
                },
            },
        },
        "/recurrences/{recurrence_id}": {
            "parameters": [_RECURRENCE_ID],
            "get": {
                "operationId": "getRecurrence",
                "tags": ["recurrences"],
                "summary": "A recurring email, its next occurrences and its history",
                "responses": {
                    "200": _json(one, "The recurring email.", examples=x.GET_RECURRENCE_200),
                    **_errors(401, 429),
                    **_error(404, x.RECURRENCE_404),
                },
            },
            "patch": {
                "operationId": "editRecurrence",
                "tags": ["recurrences"],
                "summary": "Edit: applies to every occurrence not yet sent",
                "requestBody": _body("RecurrenceChanges", x.EDIT_RECURRENCE_REQUEST),
                "responses": {
                    "200": _json(one, "Changed.", examples=x.EDIT_RECURRENCE_200),
                    **write,
                    **_errors(404, 409),
                    **_error(422, x.EDIT_RECURRENCE_422),
                },
            },
            "delete": {
                "operationId": "deleteRecurrence",
                "tags": ["recurrences"],
                "summary": "Delete: what waits is cancelled, sent emails stay",
                "responses": {
                    "200": _json(schemas.ref("RecurrenceDeleted"), "Deleted.", examples=x.DELETE_RECURRENCE_200),
                    **write,
                    **_error(404, x.RECURRENCE_404),
                },
            },
        },
        "/recurrences/{recurrence_id}/pause": {
            "parameters": [_RECURRENCE_ID],
            "post": {
                "operationId": "pauseRecurrence",
                "tags": ["recurrences"],
                "summary": "Pause: nothing more goes out",
                "responses": {
                    "200": _json(one, "Paused.", examples=x.PAUSE_RECURRENCE_200),
                    **write,
                    **_errors(409),
                    **_error(404, x.RECURRENCE_404),
                },
            },
        },
        "/recurrences/{recurrence_id}/resume": {
            "parameters": [_RECURRENCE_ID],
            "post": {
                "operationId": "resumeRecurrence",
                "tags": ["recurrences"],
                "summary": "Resume from the next occurrence after now",
                "responses": {
                    "200": _json(one, "Active again (or ended).", examples=x.RESUME_RECURRENCE_200),
                    **write,
                    **_errors(409),
                    **_error(404, x.RECURRENCE_404),
                },
            },
        },
        "/recurrences/{recurrence_id}/preview": {
            "parameters": [_RECURRENCE_ID],
            "get": {
                "operationId": "previewRecurrence",
                "tags": ["recurrences"],
                "summary": "Its next n occurrences",
                "parameters": [_N],
                "responses": {
                    "200": _json(
                        schemas.ref("Occurrences"),
                        "ISO 8601 instants with their zone's offset.",
                        examples=x.PREVIEW_RECURRENCE_200,
                    ),
                    **_errors(401, 422, 429),
                    **_error(404, x.RECURRENCE_404),
                },
            },
        },
    }


def _webhook_paths() -> dict[str, Any]:
    """The paths of /webhooks (admins and owners: a token needs the 'admin' scope)."""
    x = examples
    one = schemas.ref("Webhook")
    delivery = schemas.ref("WebhookDelivery")
    admin = _errors(401, 403, 429)
    write = _errors(400, 401, 403, 413, 429)
    tag = ["webhooks"]
    return {
        "/webhooks": {
            "post": {
                "operationId": "createWebhook",
                "tags": tag,
                "summary": "Add an endpoint (its secret is in this answer only)",
                "requestBody": _body("NewWebhook", x.CREATE_WEBHOOK_REQUEST),
                "responses": {
                    "201": {
                        **_json(one, "Created, with its signing secret.", _LOCATION, x.CREATE_WEBHOOK_201),
                        "links": _links("endpoint_id", "getWebhook", "editWebhook", "testWebhook"),
                    },
                    **write,
                    **_error(422, x.CREATE_WEBHOOK_422),
                },
            },
            "get": {
                "operationId": "listWebhooks",
                "tags": tag,
                "summary": "The organization's endpoints",
                "responses": {
                    "200": _json(schemas.ref("WebhookList"), "Every endpoint.", examples=x.LIST_WEBHOOKS_200),
                    **_errors(401, 429),
                    **_error(403, x.GET_ORG_SETTINGS_403),
                },
            },
        },
        "/webhooks/{endpoint_id}": {
            "parameters": [_WEBHOOK_ID],
            "get": {
                "operationId": "getWebhook",
                "tags": tag,
                "summary": "An endpoint",
                "responses": {
                    "200": _json(one, "The endpoint.", examples=x.GET_WEBHOOK_200),
                    **admin,
                    **_error(404, x.WEBHOOK_404),
                },
            },
            "patch": {
                "operationId": "editWebhook",
                "tags": tag,
                "summary": "Change its URL, event types, description, or enable/disable it",
                "requestBody": _body("WebhookChanges", x.EDIT_WEBHOOK_REQUEST),
                "responses": {
                    "200": _json(one, "Changed.", examples=x.EDIT_WEBHOOK_200),
                    **write,
                    **_errors(404),
                    **_error(422, x.EDIT_WEBHOOK_422),
                },
            },
            "delete": {
                "operationId": "deleteWebhook",
                "tags": tag,
                "summary": "Delete it, its deliveries and their log",
                "responses": {
                    "200": _json(schemas.ref("WebhookDeleted"), "Deleted.", examples=x.DELETE_WEBHOOK_200),
                    **write,
                    **_error(404, x.WEBHOOK_404),
                },
            },
        },
        "/webhooks/{endpoint_id}/rotate": {
            "parameters": [_WEBHOOK_ID],
            "post": {
                "operationId": "rotateWebhookSecret",
                "tags": tag,
                "summary": "A new secret; the old one also signs for WEBHOOK_ROTATION_OVERLAP (a day)",
                "responses": {
                    "200": _json(one, "Rotated: the new secret, this once.", examples=x.ROTATE_WEBHOOK_200),
                    **write,
                    **_error(404, x.WEBHOOK_404),
                },
            },
        },
        "/webhooks/{endpoint_id}/test": {
            "parameters": [_WEBHOOK_ID],
            "post": {
                "operationId": "testWebhook",
                "tags": tag,
                "summary": "Send a webhook.test event to it now",
                "responses": {
                    "201": {
                        **_json(delivery, "The delivery, in its log.", _LOCATION, x.TEST_WEBHOOK_201),
                        "links": {
                            op: {
                                "operationId": op,
                                "parameters": {"delivery_id": "$response.body#/id"},
                            }
                            for op in ("getWebhookDelivery", "redeliverWebhook")
                        },
                    },
                    **write,
                    **_error(404, x.WEBHOOK_404),
                },
            },
        },
        "/webhooks/{endpoint_id}/deliveries": {
            "parameters": [_WEBHOOK_ID],
            "get": {
                "operationId": "listWebhookDeliveries",
                "tags": tag,
                "summary": "Its deliveries, newest first, 50 a page",
                "parameters": [
                    {
                        "name": "before",
                        "in": "query",
                        "description": "The id of the last delivery seen: the page after it.",
                        "schema": {"type": "string", "format": "uuid"},
                        "examples": x.LIST_DELIVERIES_BEFORE,
                    }
                ],
                "responses": {
                    "200": _json(schemas.ref("WebhookDeliveryList"), "One page.", examples=x.LIST_DELIVERIES_200),
                    **admin,
                    **_errors(404),
                    **_error(422, x.LIST_DELIVERIES_422),
                },
            },
        },
        "/webhooks/{endpoint_id}/deliveries/{delivery_id}": {
            "parameters": [_WEBHOOK_ID, _DELIVERY_ID],
            "get": {
                "operationId": "getWebhookDelivery",
                "tags": tag,
                "summary": "A delivery and each attempt: time, status code, latency, the answer's first 1 KB",
                "responses": {
                    "200": _json(delivery, "The delivery.", examples=x.GET_DELIVERY_200),
                    **admin,
                    **_error(404, x.DELIVERY_404),
                },
            },
        },
        "/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver": {
            "parameters": [_WEBHOOK_ID, _DELIVERY_ID],
            "post": {
                "operationId": "redeliverWebhook",
                "tags": tag,
                "summary": "Deliver again now (the same webhook-id, a new day of retries)",
                "responses": {
                    "200": _json(delivery, "Pending again.", examples=x.REDELIVER_200),
                    **write,
                    **_error(404, x.DELIVERY_404),
                },
            },
        },
    }


def _webhooks() -> dict[str, Any]:
    """What the product sends to endpoints (OpenAPI 3.1's webhooks): one POST per event type."""
    headers = {
        "webhook-id": {
            "description": "The delivery's id (msg_...): the same on every retry, to deduplicate.",
            "schema": {"type": "string"},
        },
        "webhook-timestamp": {"description": "Seconds since the epoch, when signed.", "schema": {"type": "string"}},
        "webhook-signature": {
            "description": "v1,<base64 HMAC-SHA256 of id.timestamp.body>, space-separated: two for a day after a"
            " rotation (Standard Webhooks). Verify with the standardwebhooks library.",
            "schema": {"type": "string"},
        },
    }
    out: dict[str, Any] = {}
    for kind, schema in (
        *((k, "EmailEvent") for k in webhook_events.EMAIL_TYPES),
        *((k, "DeliveryFeedbackEvent") for k in webhook_events.FEEDBACK_TYPES),
        ("batch.completed", "BatchCompletedEvent"),
        ("recurrence.paused", "RecurrencePausedEvent"),
        (webhook_events.TEST, "TestEvent"),
    ):
        out[kind] = {
            "post": {
                "summary": f"{kind}",
                "description": schemas.SCHEMAS[schema]["description"],
                "parameters": [{"name": n, "in": "header", "required": True, **h} for n, h in headers.items()],
                "requestBody": {"required": True, "content": {"application/json": {"schema": schemas.ref(schema)}}},
                "responses": {
                    "2XX": {"description": "Delivered (within WEBHOOK_TIMEOUT; redirects are not followed)."},
                    "default": {"description": "Retried with exponential backoff for WEBHOOK_RETRY_FOR, then failed."},
                },
            }
        }
    return out


@bp.get("/openapi.json")
def openapi() -> Any:
    """Serve the OpenAPI document (no sign-in needed)."""
    return document()
