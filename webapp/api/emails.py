"""``/api/v1/emails``: create (idempotent), list, read, edit, cancel, send now."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request, url_for

from tasks.core import errors
from tasks.domain import batches, emails, listing, validation
from tasks.domain.present import email_json
from webapp import ext
from webapp.api import bp, idempotency_key, json_body
from webapp.auth import scope, signed_in_user

CREATE_FIELDS = frozenset(
    {
        "to",
        "cc",
        "bcc",
        "subject",
        "body_text",
        "body_html",
        "send_at",
        "time_zone",
        "send_now",
        "idempotency_key",
        "list_unsubscribe",
    }
)


def _check_fields(data: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in data:
        if name not in allowed:
            raise errors.ValidationError(f"{name}: unknown field", field=name)


def _flag(raw: str | None) -> bool:
    """Read a query string's yes/no (``mine=1``); anything else is a 422."""
    if raw is None or raw in ("0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise errors.ValidationError("mine: must be true or false", field="mine")


@bp.post("/emails")
def create_email() -> Any:
    """Schedule an email; the same Idempotency-Key returns the first one."""
    data = json_body()
    _check_fields(data, CREATE_FIELDS)
    send_now = data.get("send_now", False)
    if not isinstance(send_now, bool):
        raise errors.ValidationError("send_now: must be true or false", field="send_now")
    draft = validation.validate(
        to=data.get("to"),
        cc=data.get("cc"),
        bcc=data.get("bcc"),
        subject=data.get("subject"),
        body_text=data.get("body_text"),
        body_html=data.get("body_html"),
        send_at=data.get("send_at"),
        send_tz=data.get("time_zone"),
        send_now=send_now,
        idempotency_key=idempotency_key(data),
        list_unsubscribe=data.get("list_unsubscribe", False),
    )
    email, created = emails.schedule(
        ext.conn(), owner=signed_in_user(), draft=draft, settings=ext.settings(), org_id=scope().org_id
    )
    if created:
        ext.publish_email(email)
    headers = {"Location": url_for("api.get_email", email_id=email.id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return email_json(email, with_body=True), 201 if created else 200, headers


@bp.get("/emails")
def list_emails() -> Any:
    """List the organization's emails (``mine``: the caller's own), newest first, one page at a time."""
    limit = listing.parse_limit(request.args.get("limit"))
    batch_id = None
    if "batch_id" in request.args:
        try:
            wanted = uuid.UUID(request.args["batch_id"])
        except ValueError:
            raise errors.ValidationError("batch_id: must be a batch id (a UUID)", field="batch_id") from None
        batch_id = batches.get(ext.conn(), scope(), wanted).id
    status = request.args.get("status")
    if status is not None and status not in listing.FILTERS:
        raise errors.ValidationError(f"status: must be one of {', '.join(listing.FILTERS)}", field="status")
    page = listing.emails_page(
        ext.conn(),
        scope(mine=_flag(request.args.get("mine"))),
        view=status,
        q=request.args.get("q"),
        cursor=request.args.get("cursor") or None,
        limit=limit,
        batch_id=batch_id,
        delivery=request.args.get("delivery"),
    )
    return {"emails": [email_json(e) for e in page.emails], "next_cursor": page.next_cursor}


@bp.get("/emails/<email_id>")
def get_email(email_id: str) -> Any:
    """Return one email with its body and timeline."""
    conn = ext.conn()
    email = emails.get(conn, scope(), email_id)
    return email_json(email, with_body=True, events=emails.timeline(conn, scope(), email.id))


@bp.patch("/emails/<email_id>")
def edit_email(email_id: str) -> Any:
    """Reschedule or edit an email that is still scheduled."""
    data = json_body()
    _check_fields(data, emails.EDITABLE)
    if not data:
        raise errors.ValidationError("give at least one field to change", field=None)
    conn = ext.conn()
    emails.get(conn, scope(), email_id)  # 404 before any validation message about the body
    email = emails.edit(conn, scope(), email_id, changes=data, settings=ext.settings())
    ext.publish_email(email)
    return email_json(email, with_body=True)


@bp.post("/emails/<email_id>/cancel")
def cancel_email(email_id: str) -> Any:
    """Cancel a scheduled email (cancelling a cancelled one changes nothing)."""
    email = emails.cancel(ext.conn(), scope(), email_id)
    ext.publish_email(email)
    return email_json(email)


@bp.post("/emails/<email_id>/send-now")
def send_email_now(email_id: str) -> Any:
    """Send a scheduled email at once."""
    email = emails.send_now(ext.conn(), scope(), email_id, settings=ext.settings())
    ext.publish_email(email)
    return email_json(email)
