"""The JSON API, ``/api/v1``: the dashboard's operations for scripts and other programs.

Authenticated by a personal access token (``Authorization: Bearer``) or by the
session cookie plus a CSRF token. Errors are ``{"error": {"code", "message", "field"}}``.
The OpenAPI document at ``/api/v1/openapi.json`` describes exactly this.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any

from flask import Blueprint, abort, g, request

from tasks.domain import explain
from tasks.domain.models import Email, Event, Scope

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = frozenset({"api.openapi"})


@bp.before_request
def _require_user() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    if g.get("user") is None:
        abort(401, g.get("token_problem") or "sign in, or send 'Authorization: Bearer <personal access token>'")


def scope() -> Scope:
    """Return the signed-in caller's scope (their own emails only)."""
    return Scope(owner_id=g.user.id)


def json_body() -> dict[str, Any]:
    """Return the request's JSON object, or answer 400."""
    data = request.get_json(silent=True, force=True) if request.data else None
    if not isinstance(data, dict):
        abort(400, "the body must be a JSON object")
    try:
        # JSON may spell lone surrogates (\ud800) that no UTF-8 text, and so no database, can hold.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        abort(400, "the body must be valid Unicode text (no lone surrogates)")
    return data


def idempotency_key(data: dict[str, Any]) -> Any:
    """Return the Idempotency-Key header (or the body's ``idempotency_key``)."""
    return request.headers.get("Idempotency-Key", data.get("idempotency_key"))


def _local(at: dt.datetime | None, zone: str) -> str | None:
    if at is None:
        return None
    try:
        return at.astimezone(zoneinfo.ZoneInfo(zone)).isoformat()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return at.isoformat()


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at else None


def email_json(email: Email, *, with_body: bool = False, events: list[Event] | None = None) -> dict[str, Any]:
    """Represent an email in the API (times in ISO 8601 with offset, plus the zone it was chosen in)."""
    data: dict[str, Any] = {
        "id": str(email.id),
        "status": email.status,
        "to": email.to_addrs,
        "cc": email.cc_addrs,
        "bcc": email.bcc_addrs,
        "subject": email.subject,
        "send_at": _iso(email.send_at),
        "send_at_local": _local(email.send_at, email.send_tz),
        "time_zone": email.send_tz,
        "next_attempt_at": _iso(email.next_attempt_at),
        "waiting_reason": email.waiting_reason,
        "why": explain.why(email),
        "attempts": email.attempts,
        "last_error": email.last_error,
        "message_id": email.message_id,
        "transport": email.transport,
        "provider_reply": email.provider_reply,
        "refused_recipients": email.refused_recipients,
        "batch_id": str(email.batch_id) if email.batch_id else None,
        "idempotency_key": email.idempotency_key,
        "created_at": _iso(email.created_at),
        "updated_at": _iso(email.updated_at),
        "sent_at": _iso(email.sent_at),
    }
    if with_body:
        data["body_text"] = email.body_text
        data["body_html"] = email.body_html
    if events is not None:
        data["events"] = [e.as_dict() for e in events]
    return data


from webapp.api import batches, emails, openapi  # noqa: E402,F401  (routes register on bp)
